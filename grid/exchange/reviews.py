"""Review items (核实任务): a feed disagrees with a value a grid worker collected or verified.
The grid's workers see them in their tasks (`GET /me/tasks`, `checks`) with both values
(personal data masked) and where each came from, and decide:

- keep (保留原值): the register keeps its value, now marked verified by the worker; the
  same proposal from the same system does not come back;
- replace (采用新值): the system's value goes in, through the register's own update (its
  rules, history and audit);
- edit (核实后修改): the worker's checked value goes in instead.

A decision is versioned (If-Match / `version`: 412 with the current item when stale) and
idempotent (the same decision again changes nothing; another one is a 409).
"""

from __future__ import annotations

import json
from typing import Any

import sqlalchemy as sa
from marshmallow import ValidationError
from sqlalchemy.orm import Session

from grid.areas import service as areas
from grid.exchange import schemas
from grid.exchange.merging import REVIEW_FIELD, record_sources
from grid.exchange.models import FeedRecord, FieldSource, ReviewItem
from grid.registry import people, records
from grid.registry.indicators import set_indicators
from grid.registry.models import COLLECTED
from grid.registry.schemas import parse_month
from grid.registry.scope import KINDS, get_record
from server import audit, clock, db, pii
from server.apiclients import ApiClient
from server.auth.actor import Actor
from server.errors import Conflict, Invalid, NotFound, check_version, field_errors

DECIDED = {"keep": "kept", "replace": "replaced", "edit": "edited"}
UPDATES = {"person": people.update_person, "building": records.update_building,
           "house": records.update_house, "household": records.update_household,
           "organisation": records.update_organisation}


def scoped_items(actor: Actor) -> sa.Select:
    actor.require("registry:read")
    return sa.select(ReviewItem).where(areas.in_scope(ReviewItem.area_id, actor))


def list_items(s: Session, actor: Actor, filters: dict, page: Any) -> list[ReviewItem]:
    stmt = scoped_items(actor).order_by(ReviewItem.created_at, ReviewItem.id)
    if filters.get("state"):
        stmt = stmt.where(ReviewItem.state == filters["state"])
    if filters.get("area_id") is not None:
        root = areas.get_area(s, actor, filters["area_id"])
        stmt = stmt.where(ReviewItem.area_id.in_(areas.subtree_ids(root)))
    return db.paginate(s, stmt, page)


def get_item(s: Session, actor: Actor, item_id: int, *, for_update: bool = False
             ) -> ReviewItem:
    stmt = scoped_items(actor).where(ReviewItem.id == item_id)
    item = s.scalars(stmt.with_for_update() if for_update else stmt).first()
    if item is None:
        raise NotFound("No such review item")
    return item


def _value(item: ReviewItem, decision: str, value: Any) -> Any:
    """The value to write: the system's (clear personal data decrypted) or the worker's."""
    if decision == "edit":
        return value
    if item.proposed_enc is not None:
        return json.loads(pii.decrypt(item.proposed_enc, REVIEW_FIELD))
    return (item.proposed_value or {}).get("value")


def _loaded(item: ReviewItem, name: str, value: Any) -> Any:
    """The value checked as the register checks that field (422 naming `value`)."""
    kind = "organisation_indicator" if name.startswith("indicators.") else item.object_type
    field = name.rsplit(".", 1)[-1]
    if field == "household_id":
        if not isinstance(value, int) or isinstance(value, bool):
            raise Invalid(field_errors("value", "A household id."))
        return value
    try:
        loaded = schemas.FEED_ROWS[kind]().load({field: value}, partial=True)
    except ValidationError as exc:
        messages = exc.messages.get(field, exc.messages) if isinstance(exc.messages, dict) \
            else exc.messages
        raise Invalid(field_errors("value", *messages)) from None
    return loaded.get(field)


def _write(s: Session, actor: Actor, item: ReviewItem, value: Any) -> None:
    """Through the register's own update (its checks, history and audit)."""
    if item.field.startswith("indicators."):
        _, month, name = item.field.split(".")
        set_indicators(s, actor, item.object_id, parse_month(month), {name: value})
        return
    record = get_record(s, actor, KINDS[item.object_type], item.object_id)
    if item.field == "household_id":
        people.move_person(s, actor, record.id, value, record.relation_to_head,
                           record.version)
    else:
        UPDATES[item.object_type](s, actor, record.id, {item.field: value}, record.version)


def resolve(s: Session, actor: Actor, item_id: int, data: dict, expected_version: int | None
            ) -> ReviewItem:
    actor.require("registry:write")
    item = get_item(s, actor, item_id, for_update=True)
    decision, state = data["decision"], DECIDED[data["decision"]]
    if item.state != "open":
        if item.state == state:
            return item  # a phone resending the same decision
        raise Conflict(f"This review item was already decided ({item.state})", allowed=[],
                       current=item)
    check_version(item, expected_version)
    if decision != "keep":
        _write(s, actor, item, _loaded(item, item.field, _value(item, decision, data.get("value"))))
    verdict = {"source": COLLECTED, "user_id": actor.user_id, "verified": True,
               "at": clock.now().isoformat(), "review_item_id": item.id}
    if decision == "keep":
        verdict["kept_against"] = item.proposed_source.get("value_key")
    record_sources(s, item.object_type, item.object_id, {item.field: verdict})
    item.state, item.resolved_by, item.resolved_at = state, actor.user_id, clock.now()
    item.note = data.get("note")
    s.flush()
    audit.record(s, actor, "review_item_resolved", item.object_type, item.object_id,
                 changes={"review_item_id": item.id, "field": item.field, "decision": state})
    return item


# --- what a worker's task list shows (grid.visits, wired in grid/exchange/wiring.py) -------


def task_items(s: Session, actor: Actor, limit: int) -> tuple[list[dict], int]:
    """Open review items in the actor's grids, oldest first, as `checks` of /me/tasks."""
    stmt = scoped_items(actor).where(ReviewItem.state == "open")
    total = s.scalar(sa.select(sa.func.count()).select_from(stmt.subquery()))
    items = s.scalars(stmt.order_by(ReviewItem.created_at, ReviewItem.id).limit(limit)).all()
    return [{"type": "review_item", "id": i.id, "area_id": i.area_id,
             "title": f"核实 {i.object_type}.{i.field}", "object_type": i.object_type,
             "object_id": i.object_id, "field": i.field,
             "current": (i.current_value or {}).get("value"), "current_source": i.current_source,
             "proposed": (i.proposed_value or {}).get("value"),
             "proposed_source": _public(i.proposed_source), "created_at": i.created_at,
             "version": i.version} for i in items], total or 0


def _public(source: dict | None) -> dict | None:
    return None if source is None else {k: v for k, v in source.items() if k != "value_key"}


# --- provenance ------------------------------------------------------------------------------


def provenance(s: Session, actor: Actor, kind: str, object_id: int) -> dict:
    """Where each field of a record came from (a record in scope, 404 otherwise)."""
    if kind not in KINDS:
        raise NotFound("No such record")
    record = get_record(s, actor, KINDS[kind], object_id)
    fields = s.scalar(sa.select(FieldSource.fields).where(
        FieldSource.object_type == kind, FieldSource.object_id == object_id)) or {}
    feeds = s.execute(sa.select(FeedRecord.client_id, ApiClient.name, FeedRecord.record_key,
                                FeedRecord.received_at)
                      .join(ApiClient, ApiClient.id == FeedRecord.client_id)
                      .where(FeedRecord.kind == kind, FeedRecord.object_id == object_id)).all()
    return {"object_type": kind, "object_id": object_id, "source": record.source,
            "fields": {k: _public(v) for k, v in fields.items()},
            "feeds": [{"client_id": f[0], "client": f[1], "record_key": f[2],
                       "received_at": f[3].isoformat()} for f in feeds]}


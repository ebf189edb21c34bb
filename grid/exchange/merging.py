"""Merging a feed into records the register already has (核对): per field, the same value
changes nothing; an empty field is filled; a value that came from a system is updated; a
value a grid worker collected or verified that the feed contradicts becomes a review item
(核实任务) — both values and their sources, for the grid's workers — and is not touched.
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.orm import Session

from grid.exchange.intake import (
    PARENTS,
    PII,
    SOURCE,
    Report,
    Row,
    Sender,
    remember,
    value_key,
)
from grid.exchange.models import FieldSource, ReviewItem
from grid.registry.history import _history_value
from grid.registry.models import HouseholdStay, Tombstone
from grid.registry.scope import KINDS
from server import audit, clock, pii
from server.auth.actor import Actor

REVIEW_FIELD = "review.proposed"


def same(stored: Any, new: Any) -> bool:
    """Values equal as the register means it (numbers by value, not by type)."""
    if isinstance(stored, (int, float, Decimal)) and isinstance(new, (int, float, Decimal)):
        return abs(float(stored) - float(new)) < 1e-9
    return stored == new


def _shown(kind: str, name: str, record: Any) -> Any:
    """A stored value as a review item shows it (personal data masked)."""
    if (kind, name) in PII:
        return record[PII[(kind, name)][1]]
    return _history_value(name, record[name])


def from_system(origin: dict, stored: Any) -> bool:
    """Whether a stored value is still the one a system wrote: a worker who corrected it
    since (through the register's own API) made it theirs."""
    return origin.get("source") == SOURCE and origin.get("value_key") == value_key(stored)


def sources_of(s: Session, kind: str, ids: list[int]) -> dict[int, dict]:
    return dict(s.execute(sa.select(FieldSource.object_id, FieldSource.fields).where(
        FieldSource.object_type == kind,
        FieldSource.object_id == sa.any_(sa.cast(ids, ARRAY(sa.BigInteger))))).all())


def record_sources(s: Session, kind: str, object_id: int, fields: dict) -> None:
    """Merge `fields` ({field: source}) into a record's provenance."""
    if fields:
        stmt = pg_insert(FieldSource).values(object_type=kind, object_id=object_id,
                                             fields=fields)
        s.execute(stmt.on_conflict_do_update(
            index_elements=["object_type", "object_id"],
            set_={"fields": FieldSource.fields.op("||")(stmt.excluded.fields)}))


def merge_existing(s: Session, sender: Sender, kind: str, rows: list[Row],
                   parents: dict[str, tuple[int, int]], report: Report) -> None:
    if not rows:
        return
    model = KINDS[kind]
    ids = [r.target_id for r in rows]
    records = {r["id"]: r for r in s.execute(
        sa.select(model.__table__).where(model.id == sa.any_(sa.cast(ids, ARRAY(sa.BigInteger))))
        .order_by(model.id).with_for_update()).mappings()}
    sources = sources_of(s, kind, ids)
    kept = []
    for row in rows:
        record = records[row.target_id]
        if record["ended_at"] is not None:
            report.reject(row.index, row.key, {"record_key": [
                f"This {kind} has ended in the register ({record['end_reason']}); its grid "
                "decides whether it is back."]})
            continue
        kept.append(row)
        _merge_row(s, sender, kind, row, record, sources.get(row.target_id, {}), parents,
                   report)
    remember(s, sender, kind, kept)


def _merge_row(s: Session, sender: Sender, kind: str, row: Row, record: Any, origins: dict,
               parents: dict[str, tuple[int, int]], report: Report) -> None:
    changes: dict = {}
    diff: dict = {}
    proposals: list[tuple[str, Any, Any, Any]] = []  # (field, compared, shown, clear)
    provenance: dict = {}
    for name, new in row.compare.items():
        stored = record[PII[(kind, name)][0] if (kind, name) in PII else name]
        if new is None or same(stored, new):
            continue
        origin = origins.get(name) or {"source": record["source"]}
        if origin.get("kept_against") == value_key(new):
            continue  # the worker kept their value against this very proposal
        if stored is None or stored == "" or from_system(origin, stored):
            changes.update(row.columns[name])
            diff[name] = [_history_value(name, record.get(name)),
                          _history_value(name, row.clear[name] or new)]
            provenance[name] = sender.source(row.key, new)
        else:
            proposals.append((name, new, row.shown[name], row.clear[name]))
    if row.parent_key and kind in PARENTS:
        _parent(s, kind, row, record, parents, changes, diff, proposals)
    if changes:
        _apply(s, kind, record, changes, diff)
        record_sources(s, kind, record["id"], provenance)
    for name, compared, shown, clear in proposals:
        propose(s, kind, record, name, origins.get(name) or {"source": record["source"]},
                shown, clear, compared, sender.source(row.key))
    if proposals:
        report.queued_for_review += 1
    elif changes:
        report.updated += 1
    else:
        report.unchanged += 1


def _parent(s: Session, kind: str, row: Row, record: Any, parents: dict, changes: dict,
            diff: dict, proposals: list) -> None:
    """A person's household: set when the register has none (the person follows it into
    its grid), a review item when it has another. Other kinds are not moved by feeds."""
    column = PARENTS[kind][2]
    parent_id, area_id = parents[row.parent_key]
    if record[column] == parent_id:
        return
    if record[column] is None:
        changes[column] = parent_id
        diff[column] = [None, parent_id]
        if kind == "person":
            s.add(HouseholdStay(person_id=record["id"], household_id=parent_id,
                                relation_to_head=record["relation_to_head"]))
        if area_id != record["area_id"]:
            changes["area_id"] = area_id
            s.add(Tombstone(object_type=kind, object_id=record["id"],
                            area_id=record["area_id"], reason="moved"))
    elif kind == "person":
        proposals.append((column, parent_id, parent_id, None))


def _apply(s: Session, kind: str, record: Any, changes: dict, diff: dict) -> None:
    model = KINDS[kind]
    s.execute(sa.update(model).where(model.id == record["id"])
              .values(**changes, version=model.version + 1, updated_at=clock.now(),
                      updated_by=None).execution_options(synchronize_session=False))
    audit.record(s, Actor(user_id=None), f"{kind}_updated", kind, record["id"],
                 changes={**diff, "source": SOURCE})


def propose(s: Session, kind: str, record: Any, name: str, current_source: dict,
            shown: Any, clear: Any, compared: Any, proposed_source: dict) -> None:
    """Open (or refresh) the review item of a record's field; the same proposal again
    changes nothing."""
    key = value_key(compared)
    item = s.scalars(sa.select(ReviewItem).where(
        ReviewItem.object_type == kind, ReviewItem.object_id == record["id"],
        ReviewItem.field == name, ReviewItem.state == "open").with_for_update()).first()
    proposal = {"value": shown}
    secret = pii.encrypt(json.dumps(clear, default=str), REVIEW_FIELD) if clear else None
    source = {**proposed_source, "value_key": key}
    if item is None:
        s.add(ReviewItem(area_id=record["area_id"], object_type=kind, object_id=record["id"],
                         field=name, current_value={"value": _shown(kind, name, record)},
                         current_source=current_source, proposed_value=proposal,
                         proposed_enc=secret, proposed_source=source, state="open",
                         version=1))
    elif item.proposed_source.get("value_key") != key:
        item.proposed_value, item.proposed_enc, item.proposed_source = proposal, secret, source
        item.current_value = {"value": _shown(kind, name, record)}
    s.flush()

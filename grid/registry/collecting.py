"""Collecting and correcting a record (采集与更正): the rules every register write follows
(ARCHITECTURE §3).

- GPS: a collected point must lie in one of the collector's grids (422 naming the grid it
  falls in); poor accuracy is accepted and flagged for review;
- idempotency: creates carry a client UUID (server.idempotency) and return (record,
  created), created False for a replay; updates carry the version they were based on
  (412 with the current record when stale, 428 when missing);
- duplicates (an ID number, a USCC, a room of a building) are a 409 pointing at the existing
  record, also when a concurrent request inserted it between our check and our insert;
- a record that moves to another grid leaves a tombstone in the old one (for phones).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from geoalchemy2.shape import to_shape
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from geo.fields import GpsFix
from grid.areas import service as areas
from grid.areas.models import Area
from grid.registry.history import _history_value, apply_changes, recorded
from grid.registry.models import RegisterRecord, Tombstone
from grid.registry.scope import KINDS, _singular, get_record
from server import audit, idempotency, pii
from server.auth.actor import Actor
from server.errors import Conflict, Invalid, field_errors

# GPS_REVIEW_ACCURACY_M: a fix less accurate than this (metres) flags the record for review.
_review_accuracy_m = 50.0


def configure(review_accuracy_m: float) -> None:
    """Hand the module its setting (grid/registry/wiring.py), as pii.configure does."""
    global _review_accuracy_m
    _review_accuracy_m = review_accuracy_m


def _now() -> datetime:
    return datetime.now(UTC)


def _collected_at(s: Session, actor: Actor, fix: GpsFix | None, fallback_area_id: int | None,
                  require_point: bool) -> tuple[int, list[str]]:
    """The grid a new record belongs to, and why it needs review (if it does).

    The record's own point decides, and must be in one of the collector's grids; a record
    of a known parent (a house of a building, a person of a household) takes its parent's
    grid, and a point of it outside that grid is flagged for review.
    """
    reasons: list[str] = []
    if fix is None:
        if fallback_area_id is None or require_point:
            raise Invalid(field_errors("location", "A location is required."))
        return fallback_area_id, reasons
    grid = areas.collector_grid(s, actor, fix.lon, fix.lat)
    if fix.accuracy_m is not None and fix.accuracy_m > _review_accuracy_m:
        reasons.append(f"gps_accuracy_{fix.accuracy_m:.0f}m")
    if fallback_area_id is not None and grid.id != fallback_area_id:
        reasons.append(f"gps_in_other_grid_{grid.code}")
    return (fallback_area_id if fallback_area_id is not None else grid.id), reasons


def _new(model: type[RegisterRecord], actor: Actor, area_id: int, source: str,
         fix: GpsFix | None, reasons: list[str], fields: dict) -> Any:
    record = model(area_id=area_id, source=source, created_by=actor.user_id,
                   updated_by=actor.user_id, needs_review=bool(reasons),
                   review_reasons=reasons or None, **fields)
    if fix is not None:
        record.set_gps(fix)
    return record


# A unique rule of a table: (index name, how to find the record a new one clashes with,
# the message of the 409). The service checks before writing; the index catches a
# concurrent writer that passed the same check, and turns into the same 409.
Unique = tuple[str, Callable[[], Any], str]


def _constraint_of(exc: IntegrityError) -> str | None:
    diag = getattr(exc.orig, "diag", None)
    return getattr(diag, "constraint_name", None)


def _flush(s: Session, actor: Actor, kind: str, record: Any, unique: Unique | None) -> None:
    """Flush `record` (in a savepoint when a unique rule applies, so that a violation by a
    concurrent writer becomes the 409 our own check would have given)."""
    if unique is None:
        s.add(record)
        s.flush()
        return
    index, find, message = unique
    try:
        with s.begin_nested():
            s.add(record)
            s.flush()
    except IntegrityError as exc:
        existing = find() if _constraint_of(exc) == index else None
        if existing is None:
            raise
        raise _duplicate(s, actor, kind, existing, message) from None


def _created(s: Session, actor: Actor, kind: str, record: Any, client_uuid: uuid.UUID | None,
             summary: dict, unique: Unique | None = None) -> Any:
    _flush(s, actor, kind, record, unique)
    if client_uuid is not None:
        idempotency.complete(s, client_uuid, kind, record.id)
    audit.record(s, actor, f"{kind}_created", kind, record.id,
                 changes={k: _history_value(k, v) for k, v in summary.items()})
    recorded(s, kind, record, "created", {k: _history_value(k, v) for k, v in summary.items()})
    return record


def _replayed(s: Session, actor: Actor, kind: str, client_uuid: uuid.UUID | None,
              payload: dict) -> Any | None:
    """The record an identical earlier create made, or None (new request)."""
    if client_uuid is None:
        return None
    prior = idempotency.claim(s, client_uuid, actor.user_id, f"create_{kind}", payload)
    if prior is None:
        return None
    return get_record(s, actor, KINDS[kind], int(prior[1]))


def _updated(s: Session, actor: Actor, kind: str, record: Any, diff: dict,
             old_area_id: int | None = None, unique: Unique | None = None) -> Any:
    if diff:
        record.updated_by = actor.user_id
        record.updated_at = _now()
        _flush(s, actor, kind, record, unique)
        s.refresh(record)
        audit.record(s, actor, f"{kind}_updated", kind, record.id, changes=diff)
        recorded(s, kind, record, "updated", diff)
        if old_area_id is not None and old_area_id != record.area_id:
            s.add(Tombstone(object_type=kind, object_id=record.id, area_id=old_area_id,
                            reason="moved"))
    return record


def _point_of(record: Any) -> dict | None:
    if record.location is None:
        return None
    point = to_shape(record.location)
    return {"lon": round(point.x, 7), "lat": round(point.y, 7),
            "accuracy_m": record.gps_accuracy_m}


def _relocate(s: Session, actor: Actor, record: Any, fix: GpsFix,
              parent_area_id: int | None) -> dict:
    """Set a record's new point (the same rules as on create): its grid follows the point
    unless a parent decides it. Returns the history diff."""
    old = _point_of(record)
    record.area_id, reasons = _collected_at(s, actor, fix, parent_area_id, require_point=True)
    record.set_gps(fix)
    diff = {"location": [old, _history_value("location", fix)]}
    if reasons:
        merged = list(dict.fromkeys([*(record.review_reasons or []), *reasons]))
        diff.update(apply_changes(record, {"needs_review": True, "review_reasons": merged}))
    return diff


def _duplicate(s: Session, actor: Actor, kind: str, existing: Any, message: str) -> Conflict:
    """409 pointing at the existing record when the actor may see it, else at its grid."""
    area = s.get(Area, existing.area_id)
    if areas.area_in_scope(s, actor, existing.area_id):
        return Conflict(f"{message}: update or move the existing record instead",
                        existing={"type": kind, "id": existing.id, "version": existing.version,
                                  "area_id": existing.area_id,
                                  "ended": existing.ended_at is not None})
    return Conflict(f"{message} in {area.name} ({area.code}); ask that grid to move it",
                    existing={"type": kind, "area_code": area.code, "area_name": area.name})


def _phone_changed(record: Any, prefix: str, phone: str | None) -> bool:
    """Whether `phone` differs from the stored one (compared in clear: masks collide)."""
    stored = pii.decrypt(getattr(record, f"{prefix}_phone_enc"), f"{record.__tablename__}.phone")
    return stored != phone


def _set_phone(record: Any, prefix: str, phone: str | None) -> None:
    setattr(record, f"{prefix}_phone_enc", pii.encrypt(phone, f"{record.__tablename__}.phone"))
    setattr(record, f"{prefix}_phone_masked", pii.mask_phone(phone))


def _follow(s: Session, model: type[RegisterRecord], link: Any, old_area: int,
            new_area: int) -> None:
    """Records linked to a moved parent follow it into its new grid (with tombstones in the
    old one, for phones that hold it)."""
    ids = s.scalars(sa.select(model.id).where(link, model.area_id == old_area)).all()
    if ids:
        s.execute(sa.update(model).where(model.id.in_(ids)).values(area_id=new_area)
                  .execution_options(synchronize_session=False))
        s.add_all(Tombstone(object_type=_singular(model), object_id=i, area_id=old_area,
                            reason="moved") for i in ids)

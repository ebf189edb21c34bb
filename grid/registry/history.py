"""Change history (变更记录): every change is an audit row with the fields' old and new
values, personal data masked in it, read back by `history()`."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from geo.fields import GpsFix
from grid.registry.models import KEY_TAGS
from grid.registry.scope import KINDS, get_record
from server import db
from server.audit import AuditEntry
from server.auth.actor import Actor

# Fields whose values never enter the history in clear (the history and the audit trail are
# read by actors without person:read_pii: a birth date there would unmask the ID number).
_PII_FIELDS = {"id_number", "phone", "leader_phone", "owner_phone", "birth_date"}


def _history_value(name: str, value: Any) -> Any:
    """A value as the history (JSON) keeps it: personal data never in clear."""
    if name in _PII_FIELDS:
        return "(changed)" if value is not None else None
    if isinstance(value, GpsFix):
        return {"lon": round(value.lon, 7), "lat": round(value.lat, 7),
                "accuracy_m": value.accuracy_m}
    if isinstance(value, (date, datetime)):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, list):
        return [_history_value(name, v) for v in value]
    if isinstance(value, dict):
        return {k: _history_value(k, v) for k, v in value.items()}
    return value


# Who hears of a register record created or changed, in its transaction: (session, kind,
# record, action, diff). Filled at wiring (grid/exchange/wiring.py: webhooks).
CHANGE_LISTENERS: list[Any] = []


def recorded(s: Session, kind: str, record: Any, action: str, diff: dict) -> None:
    """A change of `record` was recorded (created/updated): tell the listeners."""
    for listener in CHANGE_LISTENERS:
        listener(s, kind, record, action, diff)


def apply_changes(record: Any, changes: dict) -> dict:
    """Set plain fields; return {field: [old, new]} of what really changed."""
    diff = {}
    for name, new in changes.items():
        old = getattr(record, name)
        if old != new:
            diff[name] = [_history_value(name, old), _history_value(name, new)]
            setattr(record, name, new)
    return diff


# --- reading it back ------------------------------------------------------------------------


def history(s: Session, actor: Actor, kind: str, record_id: int, page: Any) -> list:
    """Who changed what and when, from the audit trail (reads, and refused ones, are in the
    audit trail, not here). Key-person tag events only for roles that may see key-person groups."""
    get_record(s, actor, KINDS[kind], record_id)
    stmt = (sa.select(AuditEntry).where(AuditEntry.object_type == kind,
                                        AuditEntry.object_id == str(record_id),
                                        AuditEntry.action.not_like(r"%\_read"),
                                        AuditEntry.action.not_like(r"%\_refused"))
            .order_by(AuditEntry.id))
    if not actor.can("person:read_key_tags"):
        tag = sa.func.coalesce(AuditEntry.changes["tag"].astext, "")
        stmt = stmt.where(tag.not_in(list(KEY_TAGS)))
    return db.paginate(s, stmt, page)

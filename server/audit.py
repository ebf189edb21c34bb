"""The append-only audit trail (数据使用留痕): writes of registry and case data and every
unmasked read of personal data.

Rows are written in the same transaction as the change they describe. The database role
the app connects as has no UPDATE/DELETE/TRUNCATE on the table (granted by
`flask bootstrap-db`), and a trigger refuses both for everyone else too.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from marshmallow import ValidationError, fields, validate
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, Session, mapped_column

from server import db
from server.api import Blueprint, Schema, UtcDateTime
from server.auth.actor import Actor, current_actor, login_required
from server.db import Base
from server.errors import DomainError


class AuditEntry(Base):
    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(sa.BigInteger, sa.Identity(), primary_key=True)
    at: Mapped[datetime] = mapped_column(
        sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False, index=True
    )
    actor_id: Mapped[int | None] = mapped_column(sa.BigInteger, index=True)
    action: Mapped[str] = mapped_column(sa.String(64), nullable=False)
    object_type: Mapped[str] = mapped_column(sa.String(64), nullable=False)
    object_id: Mapped[str | None] = mapped_column(sa.String(64))
    ip: Mapped[str | None] = mapped_column(sa.String(64))
    request_id: Mapped[str | None] = mapped_column(sa.String(64))
    purpose: Mapped[str | None] = mapped_column(sa.Text)
    purpose_code: Mapped[str | None] = mapped_column(sa.String(32))
    changes: Mapped[dict | None] = mapped_column(JSONB)

    __table_args__ = (
        sa.Index("ix_audit_log_object", "object_type", "object_id"),
        sa.Index("ix_audit_log_purpose_code", "purpose_code",
                 postgresql_where=sa.text("purpose_code IS NOT NULL")),
    )


# --- purposes of unmasked reads (数据使用目的) -----------------------------------------------

# The short list an unmasked read states its purpose from; the text says more (for `other`
# it is the whole explanation). The auditor filters by code.
PURPOSE_CODES = {
    "verify_identity": "核实身份",
    "visit_contact": "走访联系",
    "case_handling": "案件办理",
    "emergency": "应急处置",
    "other": "其他",
}
PURPOSE_MIN_LENGTH = 4
PURPOSE_MAX_LENGTH = 200


class PurposeText(fields.String):
    """A purpose's text: trimmed (inner runs of blanks made one), then at least
    PURPOSE_MIN_LENGTH characters: "  " or "ok" does not say why."""

    def _deserialize(self, value: Any, attr: Any, data: Any, **kwargs: Any) -> str:
        text = " ".join(super()._deserialize(value, attr, data, **kwargs).split())
        if len(text) < PURPOSE_MIN_LENGTH:
            raise ValidationError(f"Say why, in at least {PURPOSE_MIN_LENGTH} characters.")
        return text


def purpose_code_field(required: bool = True) -> fields.String:
    return fields.String(required=required, validate=validate.OneOf(list(PURPOSE_CODES)),
                         metadata={"description": "; ".join(
                             f"{k}: {v}" for k, v in PURPOSE_CODES.items())})


def purpose_text_field(required: bool = True) -> PurposeText:
    return PurposeText(required=required, validate=validate.Length(max=PURPOSE_MAX_LENGTH),
                       metadata={"description": "Why, in words (trimmed, at least "
                                                f"{PURPOSE_MIN_LENGTH} characters; for "
                                                "`other` the whole explanation)",
                                 "example": "核实来电人身份"})


class PurposeSchema(Schema):
    """The purpose every unmasked read states (the registry's `/persons/{id}/pii` and the
    profile's reveal in the query, a case's contact in the body): a code from the short
    list and a text. `purpose_of` makes a Purpose of what it loaded."""

    purpose_code = purpose_code_field()
    purpose = purpose_text_field()


@dataclass(frozen=True)
class Purpose:
    """A stated purpose, validated (PurposeSchema)."""

    code: str
    text: str


def purpose_of(data: dict) -> Purpose:
    """The Purpose of arguments loaded with PurposeSchema (or a schema that includes it)."""
    return Purpose(data["purpose_code"], data["purpose"])


def record(
    s: Session,
    actor: Actor,
    action: str,
    object_type: str,
    object_id: Any = None,
    *,
    purpose: Purpose | str | None = None,
    changes: dict | None = None,
) -> None:
    """Append one audit row in the caller's transaction. `purpose`: an unmasked read's
    Purpose (its code is kept for the auditor's filter)."""
    code = purpose.code if isinstance(purpose, Purpose) else None
    text = purpose.text if isinstance(purpose, Purpose) else purpose
    s.add(
        AuditEntry(
            actor_id=actor.user_id,
            action=action,
            object_type=object_type,
            object_id=None if object_id is None else str(object_id),
            ip=actor.ip,
            request_id=actor.request_id,
            purpose=text,
            purpose_code=code,
            changes=changes,
        )
    )


def refused(s: Session, actor: Actor, action: str, object_type: str, object_id: Any,
            purpose: Purpose | None, error: DomainError) -> DomainError:
    """Record an unmasked read that was refused (no permission, out of scope: `error`) as
    `<action>_refused`, and make the error keep that row when the unit of work rolls back
    the rest. Returns the error, for `raise audit.refused(...) from None`."""
    record(s, actor, f"{action}_refused", object_type, object_id, purpose=purpose,
           changes={"status": error.status, "reason": error.message})
    error.keep_changes = True
    return error


# Values older rows may hold in clear that are never shown in clear now (a birth date next
# to a masked ID number gives the number away): the history and the audit list hide them.
_HIDDEN_VALUES = frozenset({"birth_date"})


def shown_changes(changes: dict | None) -> dict | None:
    """A row's `changes` as the history and the audit list show them."""
    if not changes:
        return changes
    return {k: (_hide(v) if k in _HIDDEN_VALUES else v) for k, v in changes.items()}


def _hide(value: Any) -> Any:
    if isinstance(value, list):
        return [_hide(v) for v in value]
    return None if value is None else "(changed)"


def list_entries(s: Session, actor: Actor, filters: dict, page: Any) -> list[AuditEntry]:
    actor.require("audit:read")
    stmt = sa.select(AuditEntry).order_by(AuditEntry.id.desc())
    for name in ("actor_id", "action", "object_type", "object_id", "purpose", "purpose_code"):
        if filters.get(name) is not None:
            stmt = stmt.where(getattr(AuditEntry, name) == filters[name])
    if filters.get("since"):
        stmt = stmt.where(AuditEntry.at >= filters["since"])
    if filters.get("until"):
        stmt = stmt.where(AuditEntry.at < filters["until"])
    return db.paginate(s, stmt, page)


class AuditEntrySchema(Schema):
    id = fields.Integer()
    at = fields.AwareDateTime()
    actor_id = fields.Integer(allow_none=True)
    action = fields.String()
    object_type = fields.String()
    object_id = fields.String(allow_none=True)
    ip = fields.String(allow_none=True)
    request_id = fields.String(allow_none=True)
    purpose = fields.String(allow_none=True)
    purpose_code = fields.String(allow_none=True)
    changes = fields.Function(lambda e: shown_changes(e.changes), allow_none=True,
                              metadata={"type": "object"})


class AuditQuerySchema(Schema):
    actor_id = fields.Integer()
    action = fields.String()
    object_type = fields.String()
    object_id = fields.String()
    purpose = fields.String()
    purpose_code = fields.String(validate=validate.OneOf(list(PURPOSE_CODES)),
                                 metadata={"description": "Unmasked reads of this purpose"})
    since = UtcDateTime(metadata={"description": "Inclusive, ISO-8601 with offset"})
    until = UtcDateTime(metadata={"description": "Exclusive"})


blp = Blueprint("audit", __name__, url_prefix="/audit", description="Audit trail (审计)")


@blp.route("")
@blp.arguments(AuditQuerySchema, location="query")
@blp.response(200, AuditEntrySchema(many=True))
@blp.paginate()
@login_required
def get_audit(filters: dict, pagination_parameters):
    """Who did what to which record, newest first (auditors)."""
    return list_entries(db.session(), current_actor(), filters, pagination_parameters)

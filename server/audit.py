"""The append-only audit trail (数据使用留痕): writes of registry and case data and every
unmasked read of personal data.

Rows are written in the same transaction as the change they describe. The database role
the app connects as has no UPDATE/DELETE/TRUNCATE on the table (granted by
`flask bootstrap-db`), and a trigger refuses both for everyone else too.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from marshmallow import fields
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, Session, mapped_column

from server import db
from server.api import Blueprint, Schema, UtcDateTime
from server.auth.actor import Actor, current_actor, login_required
from server.db import Base


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
    changes: Mapped[dict | None] = mapped_column(JSONB)

    __table_args__ = (sa.Index("ix_audit_log_object", "object_type", "object_id"),)


def record(
    s: Session,
    actor: Actor,
    action: str,
    object_type: str,
    object_id: Any = None,
    *,
    purpose: str | None = None,
    changes: dict | None = None,
) -> None:
    """Append one audit row in the caller's transaction."""
    s.add(
        AuditEntry(
            actor_id=actor.user_id,
            action=action,
            object_type=object_type,
            object_id=None if object_id is None else str(object_id),
            ip=actor.ip,
            request_id=actor.request_id,
            purpose=purpose,
            changes=changes,
        )
    )


def list_entries(s: Session, actor: Actor, filters: dict, page: Any) -> list[AuditEntry]:
    actor.require("audit:read")
    stmt = sa.select(AuditEntry).order_by(AuditEntry.id.desc())
    for name in ("actor_id", "action", "object_type", "object_id", "purpose"):
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
    changes = fields.Dict(allow_none=True)


class AuditQuerySchema(Schema):
    actor_id = fields.Integer()
    action = fields.String()
    object_type = fields.String()
    object_id = fields.String()
    purpose = fields.String()
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

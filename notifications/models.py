"""Devices, the inbox (every notification a user got) and the outbox (pushes still to send).

`notify()` writes an inbox row and, per recipient, one outbox row in the caller's
transaction: a rolled-back change sends nothing, a committed one is sent by the worker.
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from server.db import Base

PLATFORMS = {"android": "Android", "ios": "iOS", "web": "Web"}
OUTBOX_STATES = {"pending": "待发送", "sent": "已发送", "failed": "发送失败", "dead": "死信"}


class Device(Base):
    """A phone (or browser) that receives pushes: its FCM registration token."""

    __tablename__ = "devices"

    id: Mapped[int] = mapped_column(sa.BigInteger, sa.Identity(), primary_key=True)
    user_id: Mapped[int] = mapped_column(
        sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False, index=True
    )
    token: Mapped[str] = mapped_column(sa.Text, nullable=False, unique=True)
    platform: Mapped[str] = mapped_column(sa.String(16), nullable=False)
    app_version: Mapped[str | None] = mapped_column(sa.String(32))
    locale: Mapped[str] = mapped_column(sa.String(16), nullable=False, server_default="zh-CN")
    # Set when FCM says the token is gone (UNREGISTERED, SENDER_ID_MISMATCH).
    disabled_at: Mapped[datetime | None] = mapped_column(sa.DateTime(timezone=True))
    disabled_reason: Mapped[str | None] = mapped_column(sa.String(64))
    created_at: Mapped[datetime] = mapped_column(
        sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
    )
    last_seen_at: Mapped[datetime] = mapped_column(
        sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
    )

    __table_args__ = (
        sa.CheckConstraint("platform IN ('android', 'ios', 'web')", name="platform"),
    )


class Notification(Base):
    """An inbox row (站内消息): what a push said, kept so the app can always catch up."""

    __tablename__ = "notifications"

    id: Mapped[int] = mapped_column(sa.BigInteger, sa.Identity(), primary_key=True)
    user_id: Mapped[int] = mapped_column(
        sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False
    )
    kind: Mapped[str] = mapped_column(sa.String(64), nullable=False)
    data: Mapped[dict] = mapped_column(JSONB, nullable=False, server_default=sa.text("'{}'"))
    urgent: Mapped[bool] = mapped_column(sa.Boolean, nullable=False, server_default=sa.false())
    # Pushes of one thread (one case) replace each other on the phone.
    collapse_key: Mapped[str | None] = mapped_column(sa.String(128))
    created_at: Mapped[datetime] = mapped_column(
        sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
    )
    read_at: Mapped[datetime | None] = mapped_column(sa.DateTime(timezone=True))

    __table_args__ = (
        sa.Index("ix_notifications_user_id", "user_id", "id"),
        sa.Index("ix_notifications_unread", "user_id", postgresql_where=sa.text("read_at IS NULL")),
    )


class OutboxMessage(Base):
    """A push to send (or sent): claimed by the worker with FOR UPDATE SKIP LOCKED."""

    __tablename__ = "outbox"

    id: Mapped[int] = mapped_column(sa.BigInteger, sa.Identity(), primary_key=True)
    notification_id: Mapped[int] = mapped_column(
        sa.ForeignKey("notifications.id", ondelete="CASCADE"), nullable=False, index=True
    )
    user_id: Mapped[int] = mapped_column(sa.BigInteger, nullable=False)
    state: Mapped[str] = mapped_column(sa.String(16), nullable=False, server_default="pending")
    due_at: Mapped[datetime] = mapped_column(
        sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
    )
    attempts: Mapped[int] = mapped_column(sa.SmallInteger, nullable=False, server_default="0")
    last_error: Mapped[str | None] = mapped_column(sa.Text)
    created_at: Mapped[datetime] = mapped_column(
        sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
    )
    sent_at: Mapped[datetime | None] = mapped_column(sa.DateTime(timezone=True))

    __table_args__ = (
        sa.CheckConstraint("state IN ('pending', 'sent', 'failed', 'dead')", name="state"),
        sa.Index("ix_outbox_due", "due_at", postgresql_where=sa.text("state = 'pending'")),
    )

"""Devices, the inbox (every notification a user got) and the outbox (pushes still to send).

`notify()` writes an inbox row and, per recipient, one outbox row in the caller's
transaction: a rolled-back change sends nothing, a committed one is sent by the worker.
"""

from __future__ import annotations

import uuid
from datetime import datetime, time

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, UUID
from sqlalchemy.orm import Mapped, mapped_column

from server.db import Base

PLATFORMS = {"android": "Android", "ios": "iOS", "web": "Web"}
# Push channels (推送通道) a device registers with: FCM (Google; iOS through APNs too) and
# Huawei Push Kit. Xiaomi, OPPO, vivo, Honor add a key here and a module in providers/.
PROVIDERS = {"fcm": "Firebase Cloud Messaging", "hms": "华为推送 Huawei Push Kit"}
TOPIC_ACTIONS = {"send": "发送", "subscribe": "订阅", "unsubscribe": "退订"}
OUTBOX_STATES = {"pending": "待发送", "sent": "已发送", "failed": "发送失败", "dead": "死信"}
BROADCAST_LEVELS = {"info": "通知", "warning": "预警", "emergency": "紧急"}
BROADCAST_STATES = {"pending": "待展开", "done": "已展开"}


class Device(Base):
    """A phone (or browser) that receives pushes: its FCM registration token."""

    __tablename__ = "devices"

    id: Mapped[int] = mapped_column(sa.BigInteger, sa.Identity(), primary_key=True)
    user_id: Mapped[int] = mapped_column(
        sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False, index=True
    )
    token: Mapped[str] = mapped_column(sa.Text, nullable=False, unique=True)
    platform: Mapped[str] = mapped_column(sa.String(16), nullable=False)
    provider: Mapped[str] = mapped_column(sa.String(16), nullable=False, server_default="fcm")
    app_version: Mapped[str | None] = mapped_column(sa.String(32))
    locale: Mapped[str] = mapped_column(sa.String(16), nullable=False, server_default="zh-CN")
    # The login the token was registered under: when it ends (logout, password change,
    # disabled account) the device gets no more pushes, and the worker deletes it.
    session_id: Mapped[uuid.UUID | None] = mapped_column(
        UUID(as_uuid=True), sa.ForeignKey("auth_sessions.id", ondelete="CASCADE"), index=True
    )
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
        sa.CheckConstraint("provider ~ '^[a-z][a-z0-9_]{1,15}$'", name="provider"),
    )


class Notification(Base):
    """An inbox row (站内消息): what a push said, kept so the app can always catch up.

    A row is one person's (`user_id`) or an area's (`area_id`: a broadcast, shown to everyone
    whose memberships it covers, fan-out on read; their reads are `NotificationRead` rows).
    Both share one id sequence, so the inbox is one list in id order."""

    __tablename__ = "notifications"

    id: Mapped[int] = mapped_column(sa.BigInteger, sa.Identity(), primary_key=True)
    user_id: Mapped[int | None] = mapped_column(sa.ForeignKey("users.id", ondelete="CASCADE"))
    area_id: Mapped[int | None] = mapped_column(sa.ForeignKey("areas.id", ondelete="CASCADE"))
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
        sa.Index("ix_notifications_area", "area_id", "id",
                 postgresql_where=sa.text("area_id IS NOT NULL")),
        sa.CheckConstraint("(user_id IS NULL) <> (area_id IS NULL)", name="person_or_area"),
    )


class NotificationRead(Base):
    """One person's read mark on an area's inbox row (a broadcast): fan-out on read writes
    nothing per person until they read it."""

    __tablename__ = "notification_reads"

    user_id: Mapped[int] = mapped_column(
        sa.ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    notification_id: Mapped[int] = mapped_column(
        sa.ForeignKey("notifications.id", ondelete="CASCADE"), primary_key=True, index=True)
    read_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True), nullable=False)


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
    # Counted when claimed, so a row that kills its worker still ends in the dead letters.
    attempts: Mapped[int] = mapped_column(sa.SmallInteger, nullable=False, server_default="0")
    # The lease: a claim not recorded by then (the worker died) is claimed again; results
    # are recorded only under the claim's own token.
    claimed_until: Mapped[datetime | None] = mapped_column(sa.DateTime(timezone=True))
    claim_token: Mapped[uuid.UUID | None] = mapped_column(UUID(as_uuid=True))
    # Devices this row is finished with (delivered, disabled or rejected): a retry goes
    # only to the others.
    done_device_ids: Mapped[list[int]] = mapped_column(
        ARRAY(sa.BigInteger), nullable=False, server_default="{}"
    )
    last_error: Mapped[str | None] = mapped_column(sa.Text)
    # What happened without an error: inbox only (no device, FCM not configured), superseded…
    note: Mapped[str | None] = mapped_column(sa.Text)
    created_at: Mapped[datetime] = mapped_column(
        sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
    )
    sent_at: Mapped[datetime | None] = mapped_column(sa.DateTime(timezone=True))

    __table_args__ = (
        sa.CheckConstraint("state IN ('pending', 'sent', 'failed', 'dead')", name="state"),
        sa.Index("ix_outbox_due", "due_at", postgresql_where=sa.text("state = 'pending'")),
        # The dead letters admins look at (a handful among millions of sent rows).
        sa.Index("ix_outbox_undelivered", "id",
                 postgresql_where=sa.text("state IN ('failed', 'dead')")),
    )


class Preference(Base):
    """A user's push settings (推送设置): muted kinds and quiet hours (免打扰时段) in their
    zone. The inbox gets every notification regardless; urgent pushes ignore both."""

    __tablename__ = "notification_preferences"

    user_id: Mapped[int] = mapped_column(
        sa.ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    muted_kinds: Mapped[list[str]] = mapped_column(
        ARRAY(sa.String(64)), nullable=False, server_default="{}"
    )
    quiet_start: Mapped[time | None] = mapped_column(sa.Time)
    quiet_end: Mapped[time | None] = mapped_column(sa.Time)
    timezone: Mapped[str | None] = mapped_column(sa.String(64))  # None: DEFAULT_TIMEZONE
    updated_at: Mapped[datetime] = mapped_column(
        sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
    )

    __table_args__ = (
        sa.CheckConstraint("(quiet_start IS NULL) = (quiet_end IS NULL)", name="quiet_pair"),
    )


class Broadcast(Base):
    """An alert or notice (通知/预警/紧急) to everyone with a membership in an area subtree.

    The request writes this row, its area inbox row (`notification_id`: in every covered
    inbox at once) and one topic message per provider and language (`TopicTask`). The
    worker then walks the members in batches of user id (`cursor_user_id`, moved with the
    batch it covers, so a crash repeats nothing) to count them and, for an emergency, to
    queue an SMS to each one without an active device.
    """

    __tablename__ = "broadcasts"

    id: Mapped[int] = mapped_column(sa.BigInteger, sa.Identity(), primary_key=True)
    sender_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("users.id", ondelete="SET NULL"), index=True
    )
    area_id: Mapped[int] = mapped_column(
        sa.ForeignKey("areas.id", ondelete="CASCADE"), nullable=False, index=True
    )
    level: Mapped[str] = mapped_column(sa.String(16), nullable=False)
    title: Mapped[str] = mapped_column(sa.String(100), nullable=False)
    text: Mapped[str] = mapped_column(sa.Text, nullable=False)
    link: Mapped[str | None] = mapped_column(sa.String(500))
    # None: sent before fan-out on read (its inbox rows are per person).
    notification_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("notifications.id", ondelete="SET NULL"))
    state: Mapped[str] = mapped_column(sa.String(16), nullable=False, server_default="pending")
    cursor_user_id: Mapped[int] = mapped_column(sa.BigInteger, nullable=False,
                                                server_default="0")
    recipients: Mapped[int] = mapped_column(sa.Integer, nullable=False, server_default="0")
    created_at: Mapped[datetime] = mapped_column(
        sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
    )
    done_at: Mapped[datetime | None] = mapped_column(sa.DateTime(timezone=True))

    __table_args__ = (
        sa.CheckConstraint("level IN ('info', 'warning', 'emergency')", name="level"),
        sa.CheckConstraint("state IN ('pending', 'done')", name="state"),
        sa.Index("ix_broadcasts_pending", "id", postgresql_where=sa.text("state = 'pending'")),
    )


class DeviceTopic(Base):
    """A topic a device is subscribed to (or being subscribed to) at its provider: one per
    area on the paths of its user's memberships, level not muted, and language."""

    __tablename__ = "device_topics"

    device_id: Mapped[int] = mapped_column(
        sa.ForeignKey("devices.id", ondelete="CASCADE"), primary_key=True)
    topic: Mapped[str] = mapped_column(sa.String(200), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(
        sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False)


class _Leased:
    """The outbox columns every queue of the worker shares (claim, lease, backoff)."""

    state: Mapped[str] = mapped_column(sa.String(16), nullable=False, server_default="pending")
    due_at: Mapped[datetime] = mapped_column(
        sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False)
    attempts: Mapped[int] = mapped_column(sa.SmallInteger, nullable=False, server_default="0")
    claimed_until: Mapped[datetime | None] = mapped_column(sa.DateTime(timezone=True))
    claim_token: Mapped[uuid.UUID | None] = mapped_column(UUID(as_uuid=True))
    last_error: Mapped[str | None] = mapped_column(sa.Text)
    note: Mapped[str | None] = mapped_column(sa.Text)
    created_at: Mapped[datetime] = mapped_column(
        sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False)
    sent_at: Mapped[datetime | None] = mapped_column(sa.DateTime(timezone=True))


class TopicTask(_Leased, Base):
    """A request to a provider about a topic: send a broadcast to it (one per provider and
    language), or (un)subscribe tokens (≤ 1,000). Retried from here like any push."""

    __tablename__ = "topic_tasks"

    id: Mapped[int] = mapped_column(sa.BigInteger, sa.Identity(), primary_key=True)
    provider: Mapped[str] = mapped_column(sa.String(16), nullable=False)
    action: Mapped[str] = mapped_column(sa.String(16), nullable=False)
    topic: Mapped[str] = mapped_column(sa.String(200), nullable=False)
    tokens: Mapped[list[str]] = mapped_column(ARRAY(sa.Text), nullable=False,
                                              server_default="{}")
    # send: the broadcast's area inbox row and the language of the text
    notification_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("notifications.id", ondelete="CASCADE"), index=True)
    locale: Mapped[str | None] = mapped_column(sa.String(16))

    __table_args__ = (
        sa.CheckConstraint("state IN ('pending', 'sent', 'failed', 'dead')", name="state"),
        sa.CheckConstraint("action IN ('send', 'subscribe', 'unsubscribe')", name="action"),
        sa.Index("ix_topic_tasks_due", "due_at", postgresql_where=sa.text("state = 'pending'")),
    )


class SmsMessage(_Leased, Base):
    """An SMS (短信) of a notification to a person without the app. The number is read and
    decrypted by the worker only, when it sends."""

    __tablename__ = "sms_outbox"

    id: Mapped[int] = mapped_column(sa.BigInteger, sa.Identity(), primary_key=True)
    notification_id: Mapped[int] = mapped_column(
        sa.ForeignKey("notifications.id", ondelete="CASCADE"), nullable=False, index=True)
    user_id: Mapped[int] = mapped_column(
        sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False)

    __table_args__ = (
        sa.CheckConstraint("state IN ('pending', 'sent', 'failed', 'dead')", name="state"),
        sa.Index("ix_sms_outbox_due", "due_at", postgresql_where=sa.text("state = 'pending'")),
        # the per-number cap counts one person's messages of the last day
        sa.Index("ix_sms_outbox_user_sent", "user_id", "sent_at"),
        sa.Index("ix_sms_outbox_sent", "sent_at"),  # and the daily cap all of them
        sa.UniqueConstraint("notification_id", "user_id", name="uq_sms_once"),
    )

"""Exchange tables. Each helper's part is one block headed by its branch."""

from __future__ import annotations

import uuid
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.orm import Mapped, mapped_column

from server.db import Base

# --- webhooks: subscriptions, the delivery outbox and its log, open-data snapshots ---


class WebhookSubscription(Base):
    """An API client's subscription (订阅) to events: where they go, which types, and the
    filters (an area subtree, categories). The signing secret is shown once, kept
    encrypted (it must be readable to sign). `personal_data`: the client is granted
    personal data in clear (an admin's explicit, audited grant); masked otherwise."""

    __tablename__ = "webhook_subscriptions"

    id: Mapped[int] = mapped_column(sa.BigInteger, sa.Identity(), primary_key=True)
    client_id: Mapped[int] = mapped_column(
        sa.ForeignKey("api_clients.id", ondelete="CASCADE"), nullable=False, index=True)
    url: Mapped[str] = mapped_column(sa.String(500), nullable=False)
    event_types: Mapped[list[str]] = mapped_column(ARRAY(sa.String(40)), nullable=False)
    area_id: Mapped[int | None] = mapped_column(sa.ForeignKey("areas.id", ondelete="RESTRICT"))
    category_ids: Mapped[list[int]] = mapped_column(
        ARRAY(sa.BigInteger), nullable=False, server_default="{}")
    personal_data: Mapped[bool] = mapped_column(sa.Boolean, nullable=False,
                                                server_default=sa.false())
    secret_enc: Mapped[str] = mapped_column(sa.Text, nullable=False)
    description: Mapped[str | None] = mapped_column(sa.String(200))
    active: Mapped[bool] = mapped_column(sa.Boolean, nullable=False, server_default=sa.true())
    created_by: Mapped[int | None] = mapped_column(sa.BigInteger)
    created_at: Mapped[datetime] = mapped_column(
        sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False)


class WebhookDelivery(Base):
    """One event for one subscription: the outbox row, written in the transaction of the
    change, and then the delivery log (投递记录). `body` is the exact CloudEvents JSON that
    is signed and sent. `ordering_key` (e.g. `case:42`): a row is not sent while an earlier
    row of the same key and subscription is pending."""

    __tablename__ = "webhook_deliveries"

    id: Mapped[int] = mapped_column(sa.BigInteger, sa.Identity(), primary_key=True)
    subscription_id: Mapped[int] = mapped_column(
        sa.ForeignKey("webhook_subscriptions.id", ondelete="CASCADE"), nullable=False)
    event_id: Mapped[uuid.UUID] = mapped_column(sa.UUID, nullable=False)
    event_type: Mapped[str] = mapped_column(sa.String(40), nullable=False)
    subject: Mapped[str | None] = mapped_column(sa.String(120))
    ordering_key: Mapped[str | None] = mapped_column(sa.String(64))
    body: Mapped[str] = mapped_column(sa.Text, nullable=False)
    state: Mapped[str] = mapped_column(sa.String(16), nullable=False, server_default="pending")
    attempts: Mapped[int] = mapped_column(sa.Integer, nullable=False, server_default="0")
    due_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True), nullable=False,
                                             server_default=sa.func.now())
    claimed_until: Mapped[datetime | None] = mapped_column(sa.DateTime(timezone=True))
    claim_token: Mapped[uuid.UUID | None] = mapped_column(sa.UUID)
    last_status: Mapped[int | None] = mapped_column(sa.SmallInteger)
    last_error: Mapped[str | None] = mapped_column(sa.Text)
    sent_at: Mapped[datetime | None] = mapped_column(sa.DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(
        sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False)

    __table_args__ = (
        sa.CheckConstraint("state IN ('pending', 'sent', 'dead')", name="state"),
        sa.UniqueConstraint("subscription_id", "event_id"),
        sa.Index("ix_webhook_deliveries_due", "due_at", "id",
                 postgresql_where=sa.text("state = 'pending'")),
        sa.Index("ix_webhook_deliveries_order", "subscription_id", "ordering_key", "id",
                 postgresql_where=sa.text("state = 'pending'")),
        sa.Index("ix_webhook_deliveries_log", "subscription_id", "id"),
    )


class WebhookAttempt(Base):
    """One attempt to deliver: when, the receiver's HTTP status or the network error, and
    how long it took."""

    __tablename__ = "webhook_attempts"

    id: Mapped[int] = mapped_column(sa.BigInteger, sa.Identity(), primary_key=True)
    delivery_id: Mapped[int] = mapped_column(
        sa.ForeignKey("webhook_deliveries.id", ondelete="CASCADE"), nullable=False)
    attempt: Mapped[int] = mapped_column(sa.Integer, nullable=False)
    at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True), nullable=False)
    status_code: Mapped[int | None] = mapped_column(sa.SmallInteger)
    error: Mapped[str | None] = mapped_column(sa.Text)
    duration_ms: Mapped[float | None] = mapped_column(sa.Float)

    __table_args__ = (sa.Index("ix_webhook_attempts_delivery", "delivery_id", "id"),)


class OpenDataSnapshot(Base):
    """The latest computed rows of an open dataset (数据开放), refreshed by the worker, with
    the ETag the public endpoints answer with."""

    __tablename__ = "open_data_snapshots"

    dataset: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    generated_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True), nullable=False)
    rows: Mapped[list] = mapped_column(JSONB, nullable=False)
    etag: Mapped[str] = mapped_column(sa.String(64), nullable=False)

# --- end webhooks ---

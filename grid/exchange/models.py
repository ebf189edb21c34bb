"""Exchange tables. Each helper's part is one block headed by its branch."""

from __future__ import annotations

import uuid
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.orm import Mapped, mapped_column

from server.db import Base, GpsTaggedMixin, TimestampMixin, VersionedMixin

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


def _check_in(column: str, values: dict | tuple) -> str:
    return f"{column} IN (" + ", ".join(f"'{v}'" for v in values) + ")"


# --- feeds: feeds in (1+N 多源), review items (核实任务), declarations, break-the-glass ---

FEED_KINDS = {"person": "实有人口", "household": "户", "house": "房屋", "building": "楼栋",
              "organisation": "实有单位", "organisation_indicator": "单位月度指标"}
REVIEW_STATES = {"open": "待核实", "kept": "保留原值", "replaced": "采用新值",
                 "edited": "核实后修改"}
DECLARATION_KINDS = {"moving_in": "迁入登记", "tenant": "租户登记", "newborn": "新生儿登记",
                     "phone_change": "联系电话变更", "elderly_alone": "独居老人申报"}
DECLARATION_STATES = {"submitted": "已提交", "accepted": "已采纳", "refused": "未采纳",
                      "withdrawn": "已撤回"}
GRANT_STATES = {"open": "待审查", "closed": "已审查"}
GRANT_FINDINGS = {"justified": "使用正当", "unjustified": "使用不当", "unclear": "存疑"}


class FeedRecord(Base):
    """A record of another system (its own key) and the register record it became."""

    __tablename__ = "feed_records"

    client_id: Mapped[int] = mapped_column(sa.ForeignKey("api_clients.id", ondelete="RESTRICT"),
                                           primary_key=True)
    kind: Mapped[str] = mapped_column(sa.String(24), primary_key=True)
    record_key: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    object_id: Mapped[int] = mapped_column(sa.BigInteger, nullable=False)
    received_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True), nullable=False,
                                                  server_default=sa.func.now())

    __table_args__ = (sa.CheckConstraint(_check_in("kind", FEED_KINDS), name="kind"),
                      sa.Index("ix_feed_records_object", "kind", "object_id"))


class FieldSource(Base):
    """Where each field of a register record came from (数据来源): {field: {source, client_id,
    record_key, user_id, at}}. A field without an entry has its record's `source`."""

    __tablename__ = "register_field_sources"

    object_type: Mapped[str] = mapped_column(sa.String(24), primary_key=True)
    object_id: Mapped[int] = mapped_column(sa.BigInteger, primary_key=True)
    fields: Mapped[dict] = mapped_column(JSONB, nullable=False, server_default="{}")


class ReviewItem(TimestampMixin, VersionedMixin, Base):
    """核实任务: another system disagrees with a value a grid worker collected or verified.
    Both values and their sources are shown; the worker keeps, replaces or edits."""

    __tablename__ = "register_review_items"

    id: Mapped[int] = mapped_column(sa.BigInteger, sa.Identity(), primary_key=True)
    area_id: Mapped[int] = mapped_column(sa.ForeignKey("areas.id", ondelete="RESTRICT"),
                                         nullable=False)
    object_type: Mapped[str] = mapped_column(sa.String(24), nullable=False)
    object_id: Mapped[int] = mapped_column(sa.BigInteger, nullable=False)
    field: Mapped[str] = mapped_column(sa.String(64), nullable=False)
    # As shown (personal data masked); the proposed value in clear is kept encrypted.
    current_value: Mapped[dict | None] = mapped_column(JSONB)
    current_source: Mapped[dict | None] = mapped_column(JSONB)
    proposed_value: Mapped[dict | None] = mapped_column(JSONB)
    proposed_enc: Mapped[str | None] = mapped_column(sa.Text)
    proposed_source: Mapped[dict] = mapped_column(JSONB, nullable=False)
    state: Mapped[str] = mapped_column(sa.String(16), nullable=False, default="open")
    resolved_by: Mapped[int | None] = mapped_column(sa.BigInteger)
    resolved_at: Mapped[datetime | None] = mapped_column(sa.DateTime(timezone=True))
    note: Mapped[str | None] = mapped_column(sa.Text)

    __table_args__ = (
        sa.CheckConstraint(_check_in("state", REVIEW_STATES), name="state"),
        # one open question per field: a newer disagreement replaces the proposal
        sa.Index("uq_register_review_items_open", "object_type", "object_id", "field",
                 unique=True, postgresql_where=sa.text("state = 'open'")),
        sa.Index("ix_register_review_items_area_open", "area_id",
                 postgresql_where=sa.text("state = 'open'")),
    )


class Declaration(TimestampMixin, VersionedMixin, GpsTaggedMixin, Base):
    """自主申报: a resident's statement about their own household, checked by the grid
    worker; only an accepted one changes the register."""

    __tablename__ = "declarations"

    id: Mapped[int] = mapped_column(sa.BigInteger, sa.Identity(), primary_key=True)
    area_id: Mapped[int] = mapped_column(sa.ForeignKey("areas.id", ondelete="RESTRICT"),
                                         nullable=False)
    resident_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id", ondelete="RESTRICT"),
                                             nullable=False, index=True)
    kind: Mapped[str] = mapped_column(sa.String(24), nullable=False)
    state: Mapped[str] = mapped_column(sa.String(16), nullable=False, default="submitted")
    address: Mapped[str] = mapped_column(sa.String(200), nullable=False)
    # What was declared, without personal numbers; those are in `pii_enc` (encrypted JSON).
    facts: Mapped[dict] = mapped_column(JSONB, nullable=False)
    pii_enc: Mapped[str | None] = mapped_column(sa.Text)
    note: Mapped[str | None] = mapped_column(sa.Text)
    photo_ids: Mapped[list[int]] = mapped_column(
        ARRAY(sa.BigInteger), nullable=False, server_default=sa.text("'{}'::bigint[]"))
    needs_visit: Mapped[bool] = mapped_column(sa.Boolean, nullable=False, default=False)
    decided_by: Mapped[int | None] = mapped_column(sa.BigInteger)
    decided_at: Mapped[datetime | None] = mapped_column(sa.DateTime(timezone=True))
    refusal_reason: Mapped[str | None] = mapped_column(sa.Text)
    visit_id: Mapped[int | None] = mapped_column(sa.BigInteger)
    # What the acceptance changed: {"type": "person", "id": …}
    result: Mapped[dict | None] = mapped_column(JSONB)

    __table_args__ = (
        sa.CheckConstraint(_check_in("kind", DECLARATION_KINDS), name="kind"),
        sa.CheckConstraint(_check_in("state", DECLARATION_STATES), name="state"),
        sa.Index("ix_declarations_area_submitted", "area_id",
                 postgresql_where=sa.text("state = 'submitted'")),
    )


class AccessGrant(TimestampMixin, VersionedMixin, Base):
    """紧急授权: one actor may read one register record outside their scope, for a limited
    time, for a stated reason; every read is audited; an auditor closes it with a finding."""

    __tablename__ = "access_grants"

    id: Mapped[int] = mapped_column(sa.BigInteger, sa.Identity(), primary_key=True)
    user_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id", ondelete="RESTRICT"),
                                         nullable=False)
    object_type: Mapped[str] = mapped_column(sa.String(24), nullable=False)
    object_id: Mapped[int] = mapped_column(sa.BigInteger, nullable=False)
    area_id: Mapped[int] = mapped_column(sa.ForeignKey("areas.id", ondelete="RESTRICT"),
                                         nullable=False)
    reason: Mapped[str] = mapped_column(sa.Text, nullable=False)
    expires_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True), nullable=False)
    reads: Mapped[int] = mapped_column(sa.Integer, nullable=False, default=0)
    state: Mapped[str] = mapped_column(sa.String(16), nullable=False, default="open")
    finding: Mapped[str | None] = mapped_column(sa.String(16))
    finding_note: Mapped[str | None] = mapped_column(sa.Text)
    closed_by: Mapped[int | None] = mapped_column(sa.BigInteger)
    closed_at: Mapped[datetime | None] = mapped_column(sa.DateTime(timezone=True))

    __table_args__ = (
        sa.CheckConstraint(_check_in("state", GRANT_STATES), name="state"),
        sa.CheckConstraint(f"finding IS NULL OR {_check_in('finding', GRANT_FINDINGS)}",
                           name="finding"),
        sa.Index("ix_access_grants_user_object", "user_id", "object_type", "object_id",
                 "expires_at"),
        sa.Index("ix_access_grants_open", "id", postgresql_where=sa.text("state = 'open'")),
    )

# --- end feeds ---

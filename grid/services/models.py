"""Service categories, services (办事指南 and bookable services), weekly schedules, slots,
and bookings (a slot booking or a request-type service's request).

No overbooking is the database's job: a slot row carries `capacity` and `booked` with
CHECK (booked <= capacity), and a booking moves `booked` with one conditional UPDATE in the
booking's transaction; a partial unique index keeps one active booking per resident per
slot.
"""

from __future__ import annotations

from datetime import date, datetime, time

import sqlalchemy as sa
from geoalchemy2 import Geometry
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.orm import Mapped, mapped_column

from server.db import Base, TimestampMixin, VersionedMixin

BOOKING_MODES = {"none": "无需预约", "slots": "按时段预约", "request": "上门/申请服务"}
SLOT_STATES = {"open": "可预约", "closed": "已关闭"}
# Slot bookings: booked → attended | no_show | cancelled (by the resident, or by staff who
# closed the slot). Requests: requested → accepted → scheduled → completed; declined or
# cancelled on the way.
BOOKING_STATES = {"booked": "已预约", "attended": "已到场", "no_show": "爽约",
                  "cancelled": "已取消", "requested": "待受理", "accepted": "已受理",
                  "scheduled": "已安排", "completed": "已完成", "declined": "不予受理"}
ACTIVE_STATES = ("booked", "requested", "accepted", "scheduled")


class ServiceCategory(Base):
    """家政, 就诊, 养老助餐, 法律援助, 出行, 社区活动, 场地预约, 办事指南 (reference data)."""

    __tablename__ = "service_categories"

    id: Mapped[int] = mapped_column(sa.BigInteger, sa.Identity(), primary_key=True)
    code: Mapped[str] = mapped_column(sa.String(32), nullable=False, unique=True)
    name: Mapped[str] = mapped_column(sa.String(64), nullable=False)
    name_en: Mapped[str | None] = mapped_column(sa.String(100))
    sort_order: Mapped[int] = mapped_column(sa.SmallInteger, nullable=False, server_default="0")


class Service(TimestampMixin, VersionedMixin, Base):
    """One service at one service point, provided for an area (a community or a street):
    the guide (materials, hours, fee, online or on-site) and how it is booked."""

    __tablename__ = "services"

    id: Mapped[int] = mapped_column(sa.BigInteger, sa.Identity(), primary_key=True)
    category_id: Mapped[int] = mapped_column(
        sa.ForeignKey("service_categories.id", ondelete="RESTRICT"), nullable=False, index=True)
    # The community or street that provides it: it serves that subtree, its staff manage it.
    area_id: Mapped[int] = mapped_column(sa.ForeignKey("areas.id", ondelete="RESTRICT"),
                                         nullable=False, index=True)
    name: Mapped[str] = mapped_column(sa.String(100), nullable=False)
    provider: Mapped[str | None] = mapped_column(sa.String(100))
    description: Mapped[str | None] = mapped_column(sa.Text)
    location = mapped_column(Geometry("POINT", srid=4326, spatial_index=True))
    address: Mapped[str | None] = mapped_column(sa.String(200))
    phone: Mapped[str | None] = mapped_column(sa.String(32))  # the service point's line
    # [{"days": [1..7 ISO weekdays], "open": "HH:MM", "close": "HH:MM"}], local time
    opening_hours: Mapped[list] = mapped_column(JSONB, nullable=False,
                                                server_default=sa.text("'[]'"))
    closed_on_holidays: Mapped[bool] = mapped_column(sa.Boolean, nullable=False,
                                                     server_default=sa.true())
    fee: Mapped[str | None] = mapped_column(sa.String(100))  # 免费 / 每次20元 …
    online: Mapped[bool] = mapped_column(sa.Boolean, nullable=False, server_default=sa.false())
    online_url: Mapped[str | None] = mapped_column(sa.String(500))
    materials: Mapped[list[str]] = mapped_column(
        ARRAY(sa.Text), nullable=False, server_default=sa.text("'{}'::text[]"))
    steps: Mapped[str | None] = mapped_column(sa.Text)  # 办理流程
    max_trips: Mapped[int | None] = mapped_column(sa.SmallInteger)  # 最多跑一次 → 1
    booking_mode: Mapped[str] = mapped_column(sa.String(16), nullable=False,
                                              server_default="none")
    # Active bookings one resident may hold for this service at a time.
    max_active_per_resident: Mapped[int] = mapped_column(sa.SmallInteger, nullable=False,
                                                         server_default="2")
    # Minutes before the start after which a booking can no longer be cancelled or moved
    # (null: SERVICE_CANCEL_CUTOFF_MINUTES).
    cancel_cutoff_minutes: Mapped[int | None] = mapped_column(sa.Integer)
    active: Mapped[bool] = mapped_column(sa.Boolean, nullable=False, server_default=sa.true())

    __table_args__ = (
        sa.CheckConstraint("booking_mode IN ('none', 'slots', 'request')", name="booking_mode"),
        sa.CheckConstraint("max_active_per_resident >= 1", name="max_active"),
        # Text search on Chinese names and descriptions (ILIKE '%…%' through pg_trgm).
        sa.Index("ix_services_name_trgm", "name", postgresql_using="gin",
                 postgresql_ops={"name": "gin_trgm_ops"}),
        # Nearest first in metres: KNN (<->) and ST_DWithin on geography use this index.
        sa.Index("ix_services_location_geography", sa.text("(location::geography)"),
                 postgresql_using="gist"),
        sa.Index("ix_services_description_trgm", "description", postgresql_using="gin",
                 postgresql_ops={"description": "gin_trgm_ops"}),
    )

    @property
    def point(self):
        """The service point as a GpsFix (WGS-84) for the one Point field."""
        if self.location is None:
            return None
        from geoalchemy2.shape import to_shape

        from geo.fields import GpsFix

        shape = to_shape(self.location)
        return GpsFix(lon=shape.x, lat=shape.y)


class Schedule(TimestampMixin, Base):
    """A weekly rule that generates slots ahead: on these weekdays, from `start` to `end`
    (local time of the service's area), slots of `slot_minutes` for `capacity` people."""

    __tablename__ = "service_schedules"

    id: Mapped[int] = mapped_column(sa.BigInteger, sa.Identity(), primary_key=True)
    service_id: Mapped[int] = mapped_column(sa.ForeignKey("services.id", ondelete="CASCADE"),
                                            nullable=False, index=True)
    weekdays: Mapped[list[int]] = mapped_column(ARRAY(sa.SmallInteger), nullable=False)
    start_time: Mapped[time] = mapped_column(sa.Time, nullable=False)
    end_time: Mapped[time] = mapped_column(sa.Time, nullable=False)
    slot_minutes: Mapped[int] = mapped_column(sa.SmallInteger, nullable=False)
    capacity: Mapped[int] = mapped_column(sa.Integer, nullable=False)
    # Only on the calendar's working days: public holidays skipped, make-up days (调休) kept.
    working_days_only: Mapped[bool] = mapped_column(sa.Boolean, nullable=False,
                                                    server_default=sa.true())
    valid_from: Mapped[date | None] = mapped_column(sa.Date)
    valid_until: Mapped[date | None] = mapped_column(sa.Date)
    active: Mapped[bool] = mapped_column(sa.Boolean, nullable=False, server_default=sa.true())

    __table_args__ = (
        sa.CheckConstraint("start_time < end_time", name="times"),
        sa.CheckConstraint("slot_minutes BETWEEN 5 AND 720", name="slot_minutes"),
        sa.CheckConstraint("capacity >= 1", name="capacity"),
    )


class Slot(Base):
    """A bookable time slot. `booked` counts active bookings; the CHECK is the last word on
    overbooking whatever the code does."""

    __tablename__ = "service_slots"

    id: Mapped[int] = mapped_column(sa.BigInteger, sa.Identity(), primary_key=True)
    service_id: Mapped[int] = mapped_column(sa.ForeignKey("services.id", ondelete="CASCADE"),
                                            nullable=False)
    schedule_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("service_schedules.id", ondelete="SET NULL"), index=True)
    starts_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True), nullable=False)
    ends_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True), nullable=False)
    capacity: Mapped[int] = mapped_column(sa.Integer, nullable=False)
    booked: Mapped[int] = mapped_column(sa.Integer, nullable=False, server_default="0")
    state: Mapped[str] = mapped_column(sa.String(16), nullable=False, server_default="open")
    closed_reason: Mapped[str | None] = mapped_column(sa.Text)

    __table_args__ = (
        sa.CheckConstraint("booked >= 0 AND booked <= capacity", name="not_overbooked"),
        sa.CheckConstraint("starts_at < ends_at", name="times"),
        sa.CheckConstraint("state IN ('open', 'closed')", name="state"),
        # One slot per service and start (schedule generation is re-runnable).
        sa.UniqueConstraint("service_id", "starts_at", name="uq_service_slots_service_start"),
    )


class Booking(TimestampMixin, VersionedMixin, Base):
    """A resident's booking of a slot, or their request to a request-type service."""

    __tablename__ = "service_bookings"

    id: Mapped[int] = mapped_column(sa.BigInteger, sa.Identity(), primary_key=True)
    service_id: Mapped[int] = mapped_column(sa.ForeignKey("services.id", ondelete="CASCADE"),
                                            nullable=False)
    slot_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("service_slots.id", ondelete="RESTRICT"), index=True)
    resident_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id", ondelete="CASCADE"),
                                             nullable=False)
    kind: Mapped[str] = mapped_column(sa.String(16), nullable=False)  # slot | request
    state: Mapped[str] = mapped_column(sa.String(16), nullable=False)
    # The slot's start (copied, so reminders and statistics read one table), or the time
    # staff scheduled a request for.
    starts_at: Mapped[datetime | None] = mapped_column(sa.DateTime(timezone=True))
    note: Mapped[str | None] = mapped_column(sa.Text)
    address: Mapped[str | None] = mapped_column(sa.String(200))  # where, for home services
    preferred_at: Mapped[datetime | None] = mapped_column(sa.DateTime(timezone=True))
    handled_by: Mapped[int | None] = mapped_column(sa.ForeignKey("users.id", ondelete="SET NULL"))
    reason: Mapped[str | None] = mapped_column(sa.Text)  # why declined / cancelled / closed
    result: Mapped[str | None] = mapped_column(sa.Text)
    rating: Mapped[int | None] = mapped_column(sa.SmallInteger)
    rating_comment: Mapped[str | None] = mapped_column(sa.Text)
    reminded_day_at: Mapped[datetime | None] = mapped_column(sa.DateTime(timezone=True))
    reminded_hour_at: Mapped[datetime | None] = mapped_column(sa.DateTime(timezone=True))

    __table_args__ = (
        sa.CheckConstraint("kind IN ('slot', 'request')", name="kind"),
        sa.CheckConstraint("state IN (" + ", ".join(f"'{s}'" for s in BOOKING_STATES) + ")",
                           name="state"),
        sa.CheckConstraint("rating BETWEEN 1 AND 5", name="rating"),
        sa.Index("uq_service_bookings_active_slot", "slot_id", "resident_id", unique=True,
                 postgresql_where=sa.text("state = 'booked'")),
        sa.Index("ix_service_bookings_resident", "resident_id", "service_id", "state"),
        sa.Index("ix_service_bookings_service_start", "service_id", "starts_at"),
        # The reminder sweep reads only bookings still waiting for a reminder.
        sa.Index("ix_service_bookings_reminders", "starts_at",
                 postgresql_where=sa.text(
                     "state IN ('booked', 'scheduled') AND reminded_hour_at IS NULL")),
    )

"""A district's working calendar: daily working windows in its zone, and the days that
differ from the Monday–Friday rule (public holidays 法定节假日, make-up working days 调休)."""

from __future__ import annotations

from datetime import date

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from server.db import Base, TimestampMixin, VersionedMixin

DAY_KINDS = {"holiday": "节假日", "workday": "调休上班"}
DEFAULT_WINDOWS = [["08:30", "12:00"], ["13:30", "17:30"]]


class WorkCalendar(TimestampMixin, VersionedMixin, Base):
    """One per district (`area_id`); the row with no area is the default for the rest."""

    __tablename__ = "work_calendars"

    id: Mapped[int] = mapped_column(sa.BigInteger, sa.Identity(), primary_key=True)
    area_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("areas.id", ondelete="CASCADE"), unique=True
    )
    name: Mapped[str] = mapped_column(sa.String(100), nullable=False)
    timezone: Mapped[str] = mapped_column(sa.String(64), nullable=False,
                                          server_default="Asia/Shanghai")
    # [["08:30", "12:00"], ["13:30", "17:30"]]: local times, in order, not overlapping.
    windows: Mapped[list] = mapped_column(JSONB, nullable=False)


class CalendarDay(Base):
    __tablename__ = "calendar_days"

    calendar_id: Mapped[int] = mapped_column(
        sa.ForeignKey("work_calendars.id", ondelete="CASCADE"), primary_key=True
    )
    day: Mapped[date] = mapped_column(sa.Date, primary_key=True)
    kind: Mapped[str] = mapped_column(sa.String(16), nullable=False)
    name: Mapped[str | None] = mapped_column(sa.String(64))

    __table_args__ = (sa.CheckConstraint("kind IN ('holiday', 'workday')", name="kind"),)

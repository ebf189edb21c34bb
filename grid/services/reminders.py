"""The worker's reminders (预约提醒) the day and the hour before a booking, and the
package's periodic tasks (reminders every minute, the slots' top-up every hour)."""

from __future__ import annotations

from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.orm import Session

from grid.services.models import Booking, Service
from notifications.service import NoticeTemplate, notify_each
from server import clock

NOTICE_TEMPLATES: tuple[NoticeTemplate, ...] = (
    NoticeTemplate("service_reminder_day", ("预约提醒：明天{time}", "{service}，地点：{address}"),
                      ("Booking tomorrow at {time}", "{service}, {address}")),
    NoticeTemplate("service_reminder_hour", ("预约提醒：{time}开始", "{service}，地点：{address}"),
                      ("Booking at {time}", "{service}, {address}")),
)


def send_reminders(s: Session, at: datetime | None = None) -> dict:
    """The day-before and hour-before reminders, each exactly once: the flag is set by the
    same UPDATE that picks the bookings (set-based; two workers cannot both pick one)."""
    at = at or clock.now()
    due = sa.and_(Booking.state.in_(("booked", "scheduled")), Booking.starts_at > at)
    picked = {}
    for kind, column, ahead in (("service_reminder_hour", Booking.reminded_hour_at, 1),
                                ("service_reminder_day", Booking.reminded_day_at, 24)):
        values = {column.key: at}
        if kind == "service_reminder_hour":  # the hour reminder makes the day one moot
            values["reminded_day_at"] = sa.func.coalesce(Booking.reminded_day_at, at)
        picked[kind] = s.execute(
            sa.update(Booking).where(due, column.is_(None),
                                     Booking.starts_at <= at + timedelta(hours=ahead))
            .values(**values)
            .returning(Booking.id, Booking.resident_id, Booking.service_id, Booking.starts_at)
            .execution_options(synchronize_session=False)).all()
    ids = {r.service_id for rows in picked.values() for r in rows}
    if not ids:
        return {}
    names = {r.id: r for r in s.execute(sa.select(Service.id, Service.name, Service.address)
                                        .where(Service.id.in_(ids)))}
    zone = clock.local_zone()
    messages = []
    for kind, rows in picked.items():
        for r in rows:
            svc = names[r.service_id]
            messages.append(([r.resident_id], kind, {
                "booking_id": r.id, "service_id": svc.id, "service": svc.name,
                "address": svc.address or "", "time": r.starts_at.astimezone(zone)
                .strftime("%H:%M"), "starts_at": r.starts_at.isoformat()},
                f"service_booking:{r.id}"))
    notify_each(s, messages)
    return {k: len(v) for k, v in picked.items() if v}


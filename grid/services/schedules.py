"""Weekly schedules (排班) and the time slots they generate: slot generation for a
schedule, the worker's daily top-up up to the horizon, listing slots by local day, and
closing a slot (its bookings cancelled, their residents told)."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from grid.areas.models import Area
from grid.calendar import service as calendar
from grid.services.catalogue import get_service, managed_service, setting
from grid.services.models import Booking, Schedule, Service, Slot
from notifications.service import NoticeTemplate, notify
from server import audit, clock
from server.auth.actor import Actor
from server.errors import Conflict, Invalid, NotFound, field_errors

NOTICE_TEMPLATES: tuple[NoticeTemplate, ...] = (
    NoticeTemplate("service_slot_closed", ("预约已取消", "{service} {time} 时段已关闭：{reason}"),
                      ("Booking cancelled", "{service} at {time} was closed: {reason}")),
)


def _slot_days(schedule: Schedule, wt: calendar.WorkingTime, first: date, last: date):
    """The local days in [first, last] on which a schedule opens slots."""
    day = first
    while day <= last:
        in_range = (schedule.valid_from is None or day >= schedule.valid_from) and \
            (schedule.valid_until is None or day <= schedule.valid_until)
        if schedule.working_days_only:
            # Holidays are skipped; a make-up working day (调休) opens like a weekday.
            ok = wt.is_working_day(day) and (day.isoweekday() in schedule.weekdays
                                             or day in wt.workdays)
        else:
            ok = day.isoweekday() in schedule.weekdays
        if in_range and ok:
            yield day
        day += timedelta(days=1)


def _slot_rows(schedule: Schedule, zone: ZoneInfo, wt: calendar.WorkingTime, first: date,
               last: date) -> list[dict]:
    """The slots of `schedule` on the local days [first, last], as rows to insert."""
    step = timedelta(minutes=schedule.slot_minutes)
    rows = []
    for day in _slot_days(schedule, wt, first, last):
        start = datetime.combine(day, schedule.start_time, zone)
        end = datetime.combine(day, schedule.end_time, zone)
        while start + step <= end:
            rows.append({"service_id": schedule.service_id, "schedule_id": schedule.id,
                         "starts_at": start, "ends_at": start + step,
                         "capacity": schedule.capacity})
            start += step
    return rows


# Rows a slot INSERT carries at most: a top-up of many schedules is not one statement of
# hundreds of thousands of parameters (5 a row).
_SLOT_BATCH = 2000


def _insert_slots(s: Session, rows: list[dict]) -> int:
    """Insert slots; those that exist already are kept as they are. Returns how many new."""
    created = 0
    for i in range(0, len(rows), _SLOT_BATCH):
        created += len(s.execute(insert(Slot).values(rows[i:i + _SLOT_BATCH])
                                 .on_conflict_do_nothing(
                                     constraint="uq_service_slots_service_start")
                                 .returning(Slot.id)).all())
    return created


def generate_slots(s: Session, schedule: Schedule, first: date, last: date) -> int:
    """Create the slots of `schedule` for the local days [first, last]; slots that exist
    already are kept as they are (re-runnable). Returns how many were created."""
    area = s.scalars(sa.select(Area).join(Service, Service.area_id == Area.id)
                     .where(Service.id == schedule.service_id)).one()
    wt = calendar.working_time(s, area)
    return _insert_slots(s, _slot_rows(schedule, ZoneInfo(area.timezone), wt, first, last))


def add_schedule(s: Session, actor: Actor, service_id: int, data: dict,
                 today: date | None = None) -> tuple[Schedule, int]:
    """A weekly schedule; its slots are generated at once for SERVICE_SLOT_DAYS_AHEAD."""
    service = managed_service(s, actor, service_id)
    if service.booking_mode != "slots":
        raise Conflict("This service is not booked by time slots (booking_mode)")
    if data["start_time"] >= data["end_time"]:
        raise Invalid(field_errors("end_time", "Must be after start_time."))
    schedule = Schedule(service_id=service.id, **data)
    s.add(schedule)
    s.flush()
    today = today or clock.local_today()
    created = generate_slots(s, schedule, today, today + timedelta(
        days=setting("SERVICE_SLOT_DAYS_AHEAD")))
    audit.record(s, actor, "service_schedule_added", "service", service.id,
                 changes={**{k: str(v) for k, v in data.items()}, "slots": created})
    return schedule, created


def list_schedules(s: Session, actor: Actor, service_id: int) -> list[Schedule]:
    service = get_service(s, actor, service_id)
    return list(s.scalars(sa.select(Schedule).where(Schedule.service_id == service.id)
                          .order_by(Schedule.id)))


def end_schedule(s: Session, actor: Actor, service_id: int, schedule_id: int) -> int:
    """Stop a schedule: no new slots; its future slots without bookings are removed (those
    with bookings stay, for staff to close if they must). Returns the slots removed."""
    service = managed_service(s, actor, service_id)
    schedule = s.scalars(sa.select(Schedule).where(Schedule.id == schedule_id,
                                                   Schedule.service_id == service.id)).first()
    if schedule is None:
        raise NotFound("No such schedule")
    schedule.active = False
    removed = s.execute(sa.delete(Slot).where(
        Slot.schedule_id == schedule.id, Slot.starts_at > clock.now(), Slot.booked == 0,
        ~sa.exists().where(Booking.slot_id == Slot.id))
        .execution_options(synchronize_session=False)).rowcount
    audit.record(s, actor, "service_schedule_ended", "service", service.id,
                 changes={"schedule_id": schedule.id, "slots_removed": removed})
    return removed


def generate_ahead(s: Session) -> dict:
    """The worker's daily top-up: every active schedule's slots up to the horizon, in at most
    three statements whatever the number of schedules (the schedules with their areas, the
    uncached calendars of those areas) plus one INSERT per _SLOT_BATCH slots."""
    today = clock.local_today()
    last = today + timedelta(days=setting("SERVICE_SLOT_DAYS_AHEAD"))
    schedules = s.execute(sa.select(Schedule, Area.path, Area.timezone).select_from(Schedule)
                          .join(Service).join(Area, Service.area_id == Area.id)
                          .where(Schedule.active, Service.active,
                                 Service.booking_mode == "slots")).all()
    working = calendar.working_times(s, {path for _, path, _ in schedules})
    rows = [row for schedule, path, timezone in schedules
            for row in _slot_rows(schedule, ZoneInfo(timezone), working[path], today, last)]
    created = _insert_slots(s, rows)
    return {"slots_created": created} if created else {}


def _local_range(day_from: date, day_to: date, zone: ZoneInfo) -> tuple[datetime, datetime]:
    """[first local midnight, the midnight after the last day)."""
    return (datetime.combine(day_from, time.min, zone),
            datetime.combine(day_to + timedelta(days=1), time.min, zone))


def list_slots(s: Session, actor: Actor, service_id: int, day_from: date | None,
               day_to: date | None) -> list[Slot]:
    """A service's slots by start time, over local days (today and the next 6 by default)."""
    service = get_service(s, actor, service_id)
    day_from = day_from or clock.local_today()
    day_to = day_to or day_from + timedelta(days=6)
    if (day_to - day_from).days > 62 or day_to < day_from:
        raise Invalid(field_errors("to", "At most 62 days after `from`.", location="query"))
    start, end = _local_range(day_from, day_to, clock.local_zone())
    return list(s.scalars(sa.select(Slot).where(
        Slot.service_id == service.id, Slot.starts_at >= start, Slot.starts_at < end)
        .order_by(Slot.starts_at)))


def _local_text(at: datetime | None) -> str:
    return "" if at is None else at.astimezone(clock.local_zone()).strftime("%m-%d %H:%M")


def close_slot(s: Session, actor: Actor, slot_id: int, reason: str) -> Slot:
    """Close a slot (staff): its bookings are cancelled and their residents told."""
    slot = s.scalars(sa.select(Slot).where(Slot.id == slot_id).with_for_update()).first()
    if slot is None:
        raise NotFound("No such slot")
    service = managed_service(s, actor, slot.service_id)  # 404 outside the actor's scope
    if slot.state == "closed":
        raise Conflict("The slot is already closed")
    residents = list(s.scalars(
        sa.update(Booking).where(Booking.slot_id == slot.id, Booking.state == "booked")
        .values(state="cancelled", reason=reason, version=Booking.version + 1)
        .returning(Booking.resident_id).execution_options(synchronize_session=False)))
    slot.state, slot.closed_reason, slot.booked = "closed", reason, 0
    s.flush()
    notify(s, residents, "service_slot_closed",
           {"service_id": service.id, "service": service.name, "slot_id": slot.id,
            "time": _local_text(slot.starts_at), "reason": reason},
           collapse_key=f"service_slot:{slot.id}")
    audit.record(s, actor, "service_slot_closed", "service", service.id,
                 changes={"slot_id": slot.id, "reason": reason, "cancelled": len(residents)})
    return slot

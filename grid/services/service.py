"""Resident services (便民服务): the catalogue and guide (办事指南), search, weekly schedules
that generate slots, bookings (never overbooked: the database decides), requests to
request-type services, reminders, and the staff's figures.

Staff (service:manage) manage the services of the areas in their scope (`areas.in_scope`,
404 outside); residents (service:book) see the active catalogue — by default only what
serves their community — and their own bookings.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from flask import current_app
from geoalchemy2 import Geography
from geoalchemy2.shape import from_shape
from shapely.geometry import Point as ShapelyPoint
from sqlalchemy.dialects.postgresql import ARRAY, insert
from sqlalchemy.orm import Session

from grid.areas import service as areas
from grid.areas.models import Area, Membership
from grid.calendar import service as calendar
from grid.services import schemas
from grid.services.models import (
    ACTIVE_STATES,
    Booking,
    Schedule,
    Service,
    ServiceCategory,
    Slot,
)
from notifications.service import notify, notify_each, register_template
from server import audit, clock, db, idempotency
from server.auth.actor import Actor
from server.errors import (
    Conflict,
    Forbidden,
    Invalid,
    NotFound,
    check_version,
    field_errors,
)

# Who hears about requests to a service: the staff of the area that provides it.
PROVIDER_ROLES = ("community_staff", "street_dispatcher")
MAX_STATS_DAYS = 366

# --- notification texts (zh-CN, en) --------------------------------------------------------

register_template("service_reminder_day", ("预约提醒：明天{time}", "{service}，地点：{address}"),
                  ("Booking tomorrow at {time}", "{service}, {address}"))
register_template("service_reminder_hour", ("预约提醒：{time}开始", "{service}，地点：{address}"),
                  ("Booking at {time}", "{service}, {address}"))
register_template("service_slot_closed", ("预约已取消", "{service} {time} 时段已关闭：{reason}"),
                  ("Booking cancelled", "{service} at {time} was closed: {reason}"))
register_template("service_request_new", ("新的服务申请", "{service}：{note}"),
                  ("New service request", "{service}: {note}"))
register_template("service_request_changed", ("服务申请{state}", "{service}：{detail}"),
                  ("Service request {state_en}", "{service}: {detail}"))


def _setting(name: str) -> Any:
    return current_app.config[name]


def _hhmm(text: str) -> str:
    """"8:30" → "08:30" (zero-padded, so that times compare as text in SQL)."""
    try:
        hour, minute = (int(p) for p in text.split(":"))
        return time(hour, minute).strftime("%H:%M")
    except (ValueError, TypeError) as exc:
        raise Invalid(field_errors("opening_hours", f"{text!r} is not HH:MM.")) from exc


def _check_hours(hours: list[dict]) -> list[dict]:
    out = []
    for h in hours:
        opens, closes = _hhmm(h["open"]), _hhmm(h["close"])
        if opens >= closes:
            raise Invalid(field_errors("opening_hours", f"{opens}–{closes}: open before close."))
        out.append({"days": sorted(set(h["days"])), "open": opens, "close": closes})
    return out


# --- catalogue -----------------------------------------------------------------------------


def list_categories(s: Session) -> list[ServiceCategory]:
    return list(s.scalars(sa.select(ServiceCategory)
                          .order_by(ServiceCategory.sort_order, ServiceCategory.id)))


def _manages(actor: Actor) -> sa.ColumnElement[bool]:
    """Services the actor manages: those of areas in their scope (with service:manage)."""
    if not actor.can("service:manage"):  # an admin's reach is no permission (the role table)
        return sa.false()
    return areas.in_scope(Service.area_id, actor)


def get_service(s: Session, actor: Actor, service_id: int) -> Service:
    """An active service (anyone signed in), or an inactive one its managers see."""
    service = s.scalars(sa.select(Service).where(
        Service.id == service_id, sa.or_(Service.active, _manages(actor)))).first()
    if service is None:
        raise NotFound("No such service")
    return service


def managed_service(s: Session, actor: Actor, service_id: int, *,
                    for_update: bool = False) -> Service:
    """A service the actor may change (service:manage, its area in scope), else 403/404."""
    actor.require("service:manage")
    stmt = sa.select(Service).where(Service.id == service_id, _manages(actor))
    service = s.scalars(stmt.with_for_update() if for_update else stmt).first()
    if service is None:
        raise NotFound("No such service")
    return service


def _apply(service: Service, data: dict) -> None:
    for key, value in data.items():
        if key == "location":
            service.location = None if value is None else \
                from_shape(ShapelyPoint(value.lon, value.lat), srid=4326)
        elif key == "opening_hours":
            service.opening_hours = _check_hours(value)
        else:
            setattr(service, key, value)


def _audit_changes(data: dict) -> dict:
    return {k: ([v.lon, v.lat] if k == "location" and v is not None else v)
            for k, v in data.items()}


def create_service(s: Session, actor: Actor, data: dict) -> Service:
    """A new service of an area in the actor's scope (a community's or street's staff)."""
    actor.require("service:manage")
    if not areas.area_in_scope(s, actor, data["area_id"]):
        raise NotFound("No such area")
    if s.get(ServiceCategory, data["category_id"]) is None:
        raise Invalid(field_errors("category_id", "No such service category."))
    service = Service()
    _apply(service, data)
    s.add(service)
    s.flush()
    audit.record(s, actor, "service_created", "service", service.id,
                 changes=_audit_changes(data))
    return service


def update_service(s: Session, actor: Actor, service_id: int, data: dict,
                   expected: int | None) -> Service:
    service = managed_service(s, actor, service_id, for_update=True)
    check_version(service, expected, lambda r: {"version": r.version})
    if "area_id" in data and not areas.area_in_scope(s, actor, data["area_id"]):
        raise NotFound("No such area")
    if "category_id" in data and s.get(ServiceCategory, data["category_id"]) is None:
        raise Invalid(field_errors("category_id", "No such service category."))
    _apply(service, data)
    s.flush()
    audit.record(s, actor, "service_updated", "service", service.id,
                 changes=_audit_changes(data))
    return service


# --- search --------------------------------------------------------------------------------


def _serves_home(actor: Actor) -> sa.ColumnElement[bool]:
    """Services of an area that contains one of the resident's homes (their community, its
    street, the district…): the ids on their materialized paths. A list of ids, not a join
    on the paths, so that the planner sees how many services match and keeps the KNN."""
    ids = {i for p in actor.area_paths for i in areas.ids_on_path(p)}
    return Service.area_id.in_(sorted(ids))


def _open_now(s: Session, at: datetime) -> sa.ColumnElement[bool]:
    """Open at `at` by the opening hours (local time), holidays closing those that close."""
    local = at.astimezone(clock.local_zone())
    hours = sa.func.jsonb_to_recordset(Service.opening_hours).table_valued(
        sa.column("days", ARRAY(sa.Integer)), sa.column("open", sa.Text),
        sa.column("close", sa.Text)).render_derived(with_types=True)
    now_text = local.strftime("%H:%M")
    is_open = sa.exists(sa.select(1).select_from(hours).where(
        sa.literal(local.isoweekday()) == sa.any_(hours.c.days),
        hours.c.open <= now_text, hours.c.close > now_text))
    if local.date() in calendar.working_time(s, None).holidays:
        return sa.and_(is_open, sa.not_(Service.closed_on_holidays))
    return is_open


def _geography(column: Any) -> sa.ColumnElement:
    """`column::geography` exactly as the index ix_services_location_geography has it (a
    CAST to geography(GEOMETRY,-1) would be another expression, not using the index)."""
    return sa.func.geography(column, type_=Geography)


def search_services(s: Session, actor: Actor, f: dict, page: Any) -> list[Service]:
    """The catalogue: text (pg_trgm), category, mode, open now, nearest first from a point
    (KNN on the service point). A resident sees what serves their community unless they ask
    for `everywhere`; `mine` lists the services the actor manages (inactive ones too)."""
    distance = sa.null()
    point = None
    if f.get("near") is not None:
        lon, lat, _ = f["near"]
        point = sa.func.geography(sa.func.ST_SetSRID(sa.func.ST_MakePoint(lon, lat), 4326))
        # KNN on geography (the GiST index on location::geography, spelled the same way):
        # nearest first in metres — on geometry a degree of longitude would count as much
        # as one of latitude.
        distance = _geography(Service.location).op("<->", return_type=sa.Float)(point)
    stmt = sa.select(Service, distance.label("distance_m"))
    if f.get("mine"):
        stmt = stmt.where(_manages(actor))
    else:
        stmt = stmt.where(Service.active)
        if "resident" in actor.roles and actor.area_paths and not f.get("everywhere"):
            stmt = stmt.where(_serves_home(actor))
    if f.get("q"):
        pattern = "%" + f["q"].replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        stmt = stmt.where(sa.or_(Service.name.ilike(pattern, escape="\\"),
                                 Service.description.ilike(pattern, escape="\\"),
                                 Service.provider.ilike(pattern, escape="\\")))
    if f.get("category_id") is not None:
        stmt = stmt.where(Service.category_id == f["category_id"])
    if f.get("booking_mode"):
        stmt = stmt.where(Service.booking_mode == f["booking_mode"])
    if f.get("online") is not None:
        stmt = stmt.where(Service.online == f["online"])
    if f.get("area_id") is not None:
        stmt = stmt.where(Service.area_id == f["area_id"])
    if f.get("open_now"):
        stmt = stmt.where(_open_now(s, clock.now()))
    if point is not None:
        radius = f["near"][2]
        if radius is not None:
            stmt = stmt.where(sa.func.ST_DWithin(_geography(Service.location), point, radius))
        stmt = stmt.order_by(distance)  # alone: a second key would forgo the index scan
    elif f.get("q"):
        stmt = stmt.order_by(sa.func.similarity(Service.name, f["q"]).desc(), Service.id)
    else:
        stmt = stmt.order_by(Service.name, Service.id)
    rows = db.paginate(s, stmt, page)
    out = []
    for service, meters in rows:
        service.distance_m = None if meters is None else round(meters, 1)
        out.append(service)
    return out


# --- schedules and slots -------------------------------------------------------------------


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
        days=_setting("SERVICE_SLOT_DAYS_AHEAD")))
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
    last = today + timedelta(days=_setting("SERVICE_SLOT_DAYS_AHEAD"))
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


# --- bookings ------------------------------------------------------------------------------


def _lock_resident(s: Session, resident_id: int) -> None:
    """Serialize one resident's bookings (limits are counted, then acted on)."""
    s.execute(sa.select(sa.func.pg_advisory_xact_lock(
        sa.func.hashtextextended(f"service_booking:{resident_id}", 0))))


def blocked_until(s: Session, resident_id: int, at: datetime) -> datetime | None:
    """When a resident may book again after SERVICE_NO_SHOW_LIMIT no-shows within
    SERVICE_NO_SHOW_WINDOW_DAYS (None: not blocked)."""
    limit, window = _setting("SERVICE_NO_SHOW_LIMIT"), timedelta(
        days=_setting("SERVICE_NO_SHOW_WINDOW_DAYS"))
    if limit <= 0:
        return None
    times = s.scalars(sa.select(Booking.starts_at).where(
        Booking.resident_id == resident_id, Booking.state == "no_show",
        Booking.starts_at > at - window).order_by(Booking.starts_at.desc()).limit(limit)).all()
    return times[-1] + window if len(times) >= limit else None


def _check_limits(s: Session, resident_id: int, service: Service, at: datetime) -> None:
    active = s.scalar(sa.select(sa.func.count()).select_from(Booking).where(
        Booking.resident_id == resident_id, Booking.service_id == service.id,
        Booking.state.in_(ACTIVE_STATES),
        sa.or_(Booking.starts_at.is_(None), Booking.starts_at > at)))
    if active >= service.max_active_per_resident:
        raise Conflict(f"You already hold {active} active booking(s) of this service "
                       f"(at most {service.max_active_per_resident})")


def _reminders_due(starts_at: datetime | None, at: datetime) -> dict:
    """A booking made (or moved) within 24 h / 1 h of its start needs no such reminder."""
    if starts_at is None:
        return {"reminded_day_at": None, "reminded_hour_at": None}
    return {"reminded_day_at": at if starts_at - at <= timedelta(hours=24) else None,
            "reminded_hour_at": at if starts_at - at <= timedelta(hours=1) else None}


def _take_seat(s: Session, slot_id: int, at: datetime) -> None:
    """THE overbooking guard: one conditional UPDATE; PostgreSQL re-checks `booked <
    capacity` on the latest row version after waiting for a concurrent booker's commit."""
    taken = s.execute(sa.update(Slot).where(
        Slot.id == slot_id, Slot.booked < Slot.capacity, Slot.state == "open",
        Slot.starts_at > at).values(booked=Slot.booked + 1).returning(Slot.id)
        .execution_options(synchronize_session=False)).first()
    if taken is None:
        raise Conflict("This slot is full (or closed, or already started)")


def _release_seat(s: Session, slot_id: int) -> None:
    s.execute(sa.update(Slot).where(Slot.id == slot_id, Slot.booked > 0)
              .values(booked=Slot.booked - 1).execution_options(synchronize_session=False))


def book_slot(s: Session, actor: Actor, slot_id: int, note: str | None,
              client_uuid: uuid.UUID | None = None, at: datetime | None = None
              ) -> tuple[Booking, bool]:
    """A resident books a slot. Returns the booking and whether this call created it
    (False: a replay of the same client_uuid). 409 when full, closed, started, already
    booked by them, or over the service's limit; 403 while no-shows block them."""
    actor.require("service:book")
    at = at or clock.now()
    if client_uuid is not None:
        prior = idempotency.claim(s, client_uuid, actor.user_id, "book_slot",
                                  {"slot_id": slot_id, "note": note})
        if prior is not None:
            return get_booking(s, actor, int(prior[1])), False
    found = s.execute(sa.select(Slot, Service).join(Service, Service.id == Slot.service_id)
                      .where(Slot.id == slot_id, Service.active)).first()
    if found is None:
        raise NotFound("No such slot")
    slot, service = found
    if service.booking_mode != "slots":
        raise Conflict("This service is not booked by time slots")
    if slot.state != "open" or slot.starts_at <= at:
        raise Conflict("This slot is closed or has started")
    until = blocked_until(s, actor.user_id, at)
    if until is not None:
        raise Forbidden("Booking is blocked after repeated no-shows (爽约) until "
                        f"{until.astimezone(clock.local_zone()):%Y-%m-%d %H:%M}")
    _lock_resident(s, actor.user_id)
    mine = s.scalar(sa.select(Booking.id).where(
        Booking.slot_id == slot.id, Booking.resident_id == actor.user_id,
        Booking.state == "booked"))
    if mine is not None:
        raise Conflict("You have already booked this slot", existing={"id": mine})
    _check_limits(s, actor.user_id, service, at)
    booking = Booking(service_id=service.id, slot_id=slot.id, resident_id=actor.user_id,
                      kind="slot", state="booked", starts_at=slot.starts_at, note=note,
                      **_reminders_due(slot.starts_at, at))
    s.add(booking)
    s.flush()
    _take_seat(s, slot.id, at)  # last: the slot's row lock is held only until commit
    if client_uuid is not None:
        idempotency.complete(s, client_uuid, "service_booking", booking.id)
    return booking, True


def create_request(s: Session, actor: Actor, service_id: int, data: dict,
                   client_uuid: uuid.UUID | None = None) -> tuple[Booking, bool]:
    """A request to a request-type service (e.g. 上门维修 for an elderly resident); the
    providing staff are notified."""
    actor.require("service:book")
    if client_uuid is not None:
        prior = idempotency.claim(s, client_uuid, actor.user_id, "service_request",
                                  {"service_id": service_id, **data})
        if prior is not None:
            return get_booking(s, actor, int(prior[1])), False
    service = get_service(s, actor, service_id)
    if not service.active or service.booking_mode != "request":
        raise Conflict("This service does not take requests")
    _lock_resident(s, actor.user_id)
    _check_limits(s, actor.user_id, service, clock.now())
    booking = Booking(service_id=service.id, resident_id=actor.user_id, kind="request",
                      state="requested", **data)
    s.add(booking)
    s.flush()
    notify(s, _providers(s, service), "service_request_new",
           {"service_id": service.id, "service": service.name, "booking_id": booking.id,
            "note": data.get("note") or "", "address": data.get("address") or ""},
           collapse_key=f"service_booking:{booking.id}")
    if client_uuid is not None:
        idempotency.complete(s, client_uuid, "service_booking", booking.id)
    return booking, True


def _providers(s: Session, service: Service) -> list[int]:
    return list(s.scalars(sa.select(Membership.user_id).where(
        Membership.area_id == service.area_id, Membership.role.in_(PROVIDER_ROLES))))


def _visible_booking(actor: Actor) -> sa.ColumnElement[bool]:
    """A resident's own bookings, and the bookings of services the actor manages."""
    managed = sa.select(Service.id).where(_manages(actor))
    return sa.or_(Booking.resident_id == actor.user_id, Booking.service_id.in_(managed))


def get_booking(s: Session, actor: Actor, booking_id: int, *,
                for_update: bool = False) -> Booking:
    stmt = sa.select(Booking).where(Booking.id == booking_id, _visible_booking(actor))
    booking = s.scalars(stmt.with_for_update() if for_update else stmt).first()
    if booking is None:
        raise NotFound("No such booking")
    return booking


def list_my_bookings(s: Session, actor: Actor, f: dict, page: Any) -> list[Booking]:
    stmt = sa.select(Booking).where(Booking.resident_id == actor.user_id)
    if f.get("state"):
        stmt = stmt.where(Booking.state.in_(f["state"]))
    if f.get("service_id") is not None:
        stmt = stmt.where(Booking.service_id == f["service_id"])
    if f.get("upcoming"):
        stmt = stmt.where(Booking.state.in_(ACTIVE_STATES), sa.or_(
            Booking.starts_at.is_(None), Booking.starts_at > clock.now()))
    return db.paginate(s, stmt.order_by(Booking.starts_at.desc().nulls_first(),
                                        Booking.id.desc()), page)


def service_bookings(s: Session, actor: Actor, service_id: int, f: dict,
                     page: Any) -> list[Booking]:
    """Staff: a service's bookings on a local day (or its open requests), by time."""
    service = managed_service(s, actor, service_id)
    stmt = sa.select(Booking).where(Booking.service_id == service.id)
    if f.get("day") is not None:
        start, end = _local_range(f["day"], f["day"], clock.local_zone())
        stmt = stmt.where(Booking.starts_at >= start, Booking.starts_at < end)
    if f.get("state"):
        stmt = stmt.where(Booking.state.in_(f["state"]))
    return db.paginate(s, stmt.order_by(Booking.starts_at.nulls_last(), Booking.id), page)


# --- booking actions -----------------------------------------------------------------------

# action → (states it applies to, who: "resident" (the booker) or "staff" (a manager))
ACTIONS: dict[str, tuple[tuple[str, ...], str]] = {
    "cancel": (("booked", "requested", "accepted", "scheduled"), "resident"),
    "reschedule": (("booked",), "resident"),
    "rate": (("attended", "completed"), "resident"),
    "attend": (("booked",), "staff"),
    "no_show": (("booked",), "staff"),
    "accept": (("requested",), "staff"),
    "schedule": (("requested", "accepted", "scheduled"), "staff"),
    "complete": (("accepted", "scheduled"), "staff"),
    "decline": (("requested", "accepted"), "staff"),
}
_SLOT_ONLY = {"reschedule", "attend", "no_show"}
_REQUEST_ONLY = {"accept", "schedule", "complete", "decline"}


@dataclass(frozen=True)
class Parties:
    resident: bool
    staff: bool


def _parties(s: Session, actor: Actor, booking: Booking) -> Parties:
    staff = s.scalar(sa.select(Service.id).where(Service.id == booking.service_id,
                                                 _manages(actor))) is not None
    return Parties(resident=booking.resident_id == actor.user_id, staff=staff)


def allowed_actions(booking: Booking, parties: Parties) -> list[str]:
    out = []
    for action, (states, who) in ACTIONS.items():
        if booking.state not in states or not getattr(parties, who):
            continue
        if (action in _SLOT_ONLY and booking.kind != "slot") or \
                (action in _REQUEST_ONLY and booking.kind != "request"):
            continue
        if action == "rate" and booking.rating is not None:
            continue
        out.append(action)
    return out


def actions_for(s: Session, actor: Actor, booking: Booking) -> list[str]:
    return allowed_actions(booking, _parties(s, actor, booking))


def _cutoff(s: Session, booking: Booking) -> timedelta:
    minutes = s.scalar(sa.select(Service.cancel_cutoff_minutes)
                       .where(Service.id == booking.service_id))
    return timedelta(minutes=_setting("SERVICE_CANCEL_CUTOFF_MINUTES")
                     if minutes is None else minutes)


def _check_cutoff(s: Session, booking: Booking, at: datetime, what: str) -> None:
    if booking.starts_at is not None and at > booking.starts_at - _cutoff(s, booking):
        raise Conflict(f"Too late to {what}: the cut-off before the start has passed")


def act(s: Session, actor: Actor, booking_id: int, action: str, data: dict,
        expected: int | None, at: datetime | None = None) -> Booking:
    """One step on a booking (see ACTIONS), with the version the client saw (428 without,
    412 stale); 409 with `allowed` when not possible in this state; 403 for the wrong party."""
    if action not in ACTIONS:
        raise NotFound(f"No such action {action!r}")
    at = at or clock.now()
    booking = get_booking(s, actor, booking_id, for_update=True)
    parties = _parties(s, actor, booking)
    states, who = ACTIONS[action]
    if not getattr(parties, who):
        raise Forbidden(f"Only the {who} may {action} this booking")
    check_version(booking, expected,
                           lambda r: {"version": r.version, "state": r.state})
    allowed = allowed_actions(booking, parties)
    if action not in allowed:
        raise Conflict(f"Cannot {action} a booking that is {booking.state}", allowed=allowed)
    service = s.get(Service, booking.service_id)
    handler = _HANDLERS[action]
    handler(s, actor, booking, service, data, at)
    s.flush()  # the version moves with the change (version_id_col)
    return booking


def _cancel(s: Session, actor: Actor, b: Booking, service: Service, data: dict,
            at: datetime) -> None:
    if b.kind == "slot" or b.state == "scheduled":
        _check_cutoff(s, b, at, "cancel")
    if b.slot_id is not None and b.state == "booked":
        _release_seat(s, b.slot_id)
    b.state, b.reason = "cancelled", data.get("reason")
    if b.kind == "request":
        notify(s, [b.handled_by] if b.handled_by else _providers(s, service),
               "service_request_changed", _request_data(service, b, "已撤回", "cancelled",
                                                        data.get("reason") or ""),
               collapse_key=f"service_booking:{b.id}")


def _reschedule(s: Session, actor: Actor, b: Booking, service: Service, data: dict,
                at: datetime) -> None:
    _check_cutoff(s, b, at, "reschedule")
    slot_id = data.get("slot_id")
    if slot_id is None:
        raise Invalid(field_errors("slot_id", "The slot to move to is required."))
    target = s.scalars(sa.select(Slot).where(Slot.id == slot_id,
                                             Slot.service_id == b.service_id)).first()
    if target is None:
        raise Invalid(field_errors("slot_id", "No such slot of this service."))
    if target.id == b.slot_id:
        raise Conflict("The booking is already in this slot")
    if s.scalar(sa.select(Booking.id).where(Booking.slot_id == target.id,
                                            Booking.resident_id == b.resident_id,
                                            Booking.state == "booked")) is not None:
        raise Conflict("You have already booked that slot")
    # Both rows locked in id order first: two residents swapping slots cannot deadlock.
    s.execute(sa.select(Slot.id).where(Slot.id.in_((target.id, b.slot_id)))
              .order_by(Slot.id).with_for_update())
    _take_seat(s, target.id, at)
    _release_seat(s, b.slot_id)
    b.slot_id, b.starts_at = target.id, target.starts_at
    for key, value in _reminders_due(target.starts_at, at).items():
        setattr(b, key, value)


def _rate(s: Session, actor: Actor, b: Booking, service: Service, data: dict,
          at: datetime) -> None:
    if data.get("rating") is None:
        raise Invalid(field_errors("rating", "A rating of 1 to 5 is required."))
    b.rating, b.rating_comment = data["rating"], data.get("comment")


def _attend(s: Session, actor: Actor, b: Booking, service: Service, data: dict,
            at: datetime) -> None:
    b.state, b.handled_by = "attended", actor.user_id
    _staff_audit(s, actor, b, "attend")


def _no_show(s: Session, actor: Actor, b: Booking, service: Service, data: dict,
             at: datetime) -> None:
    if b.starts_at is not None and at < b.starts_at:
        raise Conflict("The slot has not started yet: a no-show is marked after the start")
    b.state, b.handled_by = "no_show", actor.user_id
    _staff_audit(s, actor, b, "no_show")


def _request_data(service: Service, b: Booking, state: str, state_en: str,
                  detail: str) -> dict:
    return {"service_id": service.id, "service": service.name, "booking_id": b.id,
            "state": state, "state_en": state_en, "detail": detail}


def _tell_resident(s: Session, b: Booking, service: Service, state: str, state_en: str,
                   detail: str) -> None:
    notify(s, [b.resident_id], "service_request_changed",
           _request_data(service, b, state, state_en, detail),
           collapse_key=f"service_booking:{b.id}")


def _accept(s: Session, actor: Actor, b: Booking, service: Service, data: dict,
            at: datetime) -> None:
    b.state, b.handled_by = "accepted", actor.user_id
    _tell_resident(s, b, service, "已受理", "accepted", data.get("note") or "工作人员将与您联系")
    _staff_audit(s, actor, b, "accept")


def _schedule(s: Session, actor: Actor, b: Booking, service: Service, data: dict,
              at: datetime) -> None:
    when = data.get("scheduled_at")
    if when is None or when <= at:
        raise Invalid(field_errors("scheduled_at", "A time in the future is required."))
    b.state, b.starts_at, b.handled_by = "scheduled", when, b.handled_by or actor.user_id
    for key, value in _reminders_due(when, at).items():
        setattr(b, key, value)
    _tell_resident(s, b, service, "已安排", "scheduled", f"上门时间 {_local_text(when)}")
    _staff_audit(s, actor, b, "schedule")


def _complete(s: Session, actor: Actor, b: Booking, service: Service, data: dict,
              at: datetime) -> None:
    b.state, b.result = "completed", data.get("result")
    _tell_resident(s, b, service, "已完成", "completed", data.get("result") or "请对本次服务评价")
    _staff_audit(s, actor, b, "complete")


def _decline(s: Session, actor: Actor, b: Booking, service: Service, data: dict,
             at: datetime) -> None:
    if not data.get("reason"):
        raise Invalid(field_errors("reason", "A reason is required."))
    b.state, b.reason, b.handled_by = "declined", data["reason"], actor.user_id
    _tell_resident(s, b, service, "未受理", "declined", data["reason"])
    _staff_audit(s, actor, b, "decline")


def _staff_audit(s: Session, actor: Actor, b: Booking, action: str) -> None:
    audit.record(s, actor, f"service_booking_{action}", "service_booking", b.id,
                 changes={"state": b.state})


_HANDLERS = {"cancel": _cancel, "reschedule": _reschedule, "rate": _rate, "attend": _attend,
             "no_show": _no_show, "accept": _accept, "schedule": _schedule,
             "complete": _complete, "decline": _decline}


# --- reminders (worker) --------------------------------------------------------------------


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


def register_tasks() -> None:
    from server.cli import PeriodicTask, periodic_tasks

    names = {t.name for t in periodic_tasks}
    if "service_reminders" not in names:
        periodic_tasks.append(PeriodicTask("service_reminders", 60, send_reminders))
    if "service_slots" not in names:
        periodic_tasks.append(PeriodicTask("service_slots", 3600, generate_ahead))


register_tasks()


# --- staff figures -------------------------------------------------------------------------

_STATS = sa.text("""
WITH days AS (
    SELECT d::date AS day FROM generate_series(CAST(:day_from AS date), CAST(:day_to AS date),
                                               interval '1 day') AS d
), slots AS (
    SELECT (starts_at AT TIME ZONE :tz)::date AS day, count(*) AS slots,
           sum(capacity) FILTER (WHERE state = 'open') AS capacity
    FROM service_slots WHERE service_id = :service_id AND starts_at >= :start AND starts_at < :end
    GROUP BY 1
), bookings AS (
    SELECT (starts_at AT TIME ZONE :tz)::date AS day,
           count(*) FILTER (WHERE state IN ('booked', 'attended', 'no_show', 'scheduled',
                                            'completed')) AS bookings,
           count(*) FILTER (WHERE state IN ('attended', 'completed')) AS attended,
           count(*) FILTER (WHERE state = 'no_show') AS no_shows,
           count(*) FILTER (WHERE state = 'cancelled') AS cancelled,
           count(rating) AS rated, avg(rating)::float AS mean_rating
    FROM service_bookings WHERE service_id = :service_id AND starts_at >= :start
                                AND starts_at < :end
    GROUP BY 1
)
SELECT days.day, coalesce(slots.slots, 0) AS slots, coalesce(slots.capacity, 0) AS capacity,
       coalesce(b.bookings, 0) AS bookings, coalesce(b.attended, 0) AS attended,
       coalesce(b.no_shows, 0) AS no_shows, coalesce(b.cancelled, 0) AS cancelled,
       coalesce(b.rated, 0) AS rated, b.mean_rating
FROM days LEFT JOIN slots USING (day) LEFT JOIN bookings b USING (day)
ORDER BY days.day
""")


def _rates(row: dict) -> dict:
    judged = row["attended"] + row["no_shows"]
    row["utilization"] = round(row["bookings"] / row["capacity"], 4) if row["capacity"] else None
    row["no_show_rate"] = round(row["no_shows"] / judged, 4) if judged else None
    if row.get("mean_rating") is not None:
        row["mean_rating"] = round(row["mean_rating"], 2)
    return row


def stats(s: Session, actor: Actor, service_id: int, day_from: date, day_to: date) -> dict:
    """Per local day: slots, capacity, bookings, attended, no-shows, cancelled,
    utilization (bookings ÷ capacity), no-show rate, mean rating; and the totals."""
    service = managed_service(s, actor, service_id)
    if day_to < day_from or (day_to - day_from).days >= MAX_STATS_DAYS:
        raise Invalid(field_errors("to", f"`to` within {MAX_STATS_DAYS} days after `from`.",
                                   location="query"))
    zone = clock.local_zone()
    start, end = _local_range(day_from, day_to, zone)
    rows = [dict(r._mapping) for r in s.execute(_STATS, {
        "day_from": day_from, "day_to": day_to, "tz": zone.key, "service_id": service.id,
        "start": start, "end": end})]
    keys = ("slots", "capacity", "bookings", "attended", "no_shows", "cancelled", "rated")
    total = {k: sum(r[k] for r in rows) for k in keys}
    rated = [(r["mean_rating"], r["rated"]) for r in rows if r["rated"]]
    total["mean_rating"] = sum(m * n for m, n in rated) / total["rated"] if rated else None
    return {"service_id": service.id, "start": day_from, "end": day_to,
            "days": [_rates(r) for r in rows], "total": _rates(total)}


# --- on the map (grid.maps): service points are public information (办事指南) ------------


def _service_points_tile(ctx: Any) -> sa.Select:
    from grid.maps import tiles

    rows = (sa.select(Service.id, Service.name, Service.booking_mode, Service.fee,
                      ServiceCategory.code.label("category"),
                      ctx.mvt_geom(Service.location).label("geom"))
            .join(ServiceCategory, ServiceCategory.id == Service.category_id)
            .where(Service.active, Service.location.op("&&")(ctx.bbox))
            .order_by(Service.id).limit(ctx.max_features))
    return tiles.mvt(rows, "service_points")


def _service_points_collection(actor: Actor, subtree: sa.Select, limit: int) -> sa.Select:
    """Active service points standing inside the area (whoever provides them)."""
    inside = sa.select(Area.id).where(Area.id.in_(subtree),
                                      sa.func.ST_Covers(Area.boundary, Service.location))
    return (sa.select(Service.id, Service.name, Service.address, Service.phone, Service.fee,
                      Service.booking_mode, Service.area_id,
                      Service.location.label("geom"))
            .where(Service.active, Service.location.is_not(None), inside.exists())
            .order_by(Service.id).limit(limit))


def register_map_layers() -> None:
    from grid.maps import service as maps
    from grid.maps import tiles

    tiles.register(tiles.Layer(
        "service_points", "Service points (便民服务点): public", _service_points_tile,
        {"id": "Service id", "name": "Name", "booking_mode": "none/slots/request",
         "fee": "Fee", "category": "Service category code"}, public=True))
    maps.collections["service_points"] = _service_points_collection


register_map_layers()


# --- in the person profile (grid.profiles) -------------------------------------------------


def _profile_bookings(s: Session, actor: Actor, person: Any) -> list[dict]:
    """人员画像's bookings: those of the person's resident account that the actor may see
    (the booking rule: staff who manage the service), newest first, capped like the
    profile's other lists; no notes or addresses. One statement."""
    from grid.profiles import service as profiles

    accounts = profiles.resident_accounts(person)
    if accounts is None:
        return []
    rows = s.execute(
        sa.select(Booking.id, Booking.service_id, Service.name.label("service"),
                  ServiceCategory.code.label("category"), Booking.kind, Booking.state,
                  Booking.starts_at, Slot.ends_at, Booking.created_at)
        .join(Service, Service.id == Booking.service_id)
        .join(ServiceCategory, ServiceCategory.id == Service.category_id)
        .outerjoin(Slot, Slot.id == Booking.slot_id)
        .where(Booking.resident_id.in_(accounts), _visible_booking(actor))
        .order_by(sa.func.coalesce(Booking.starts_at, Booking.created_at).desc(),
                  Booking.id.desc())
        .limit(profiles.LIST_LIMIT))
    # the profile's `bookings` is a raw field: this section gives its JSON shape
    return schemas.ProfileBookingSchema(many=True).dump([r._mapping for r in rows])


def register_profile_section() -> None:
    from grid.profiles import service as profiles

    profiles.profile_sections["person"].append(("bookings", _profile_bookings))


register_profile_section()

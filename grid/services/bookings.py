"""Bookings (预约) of time slots: booking a slot (never overbooked: the database
decides), the resident's limits and the block after repeated no-shows (爽约), seats taken
and released, and reading bookings (the resident's own, a service's for its staff)."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from grid.services.catalogue import _manages, managed_service, setting
from grid.services.models import ACTIVE_STATES, Booking, Service, Slot
from grid.services.schedules import _local_range
from server import clock, db, idempotency
from server.auth.actor import Actor
from server.errors import Conflict, Forbidden, NotFound


def _lock_resident(s: Session, resident_id: int) -> None:
    """Serialize one resident's bookings (limits are counted, then acted on)."""
    s.execute(sa.select(sa.func.pg_advisory_xact_lock(
        sa.func.hashtextextended(f"service_booking:{resident_id}", 0))))


def blocked_until(s: Session, resident_id: int, at: datetime) -> datetime | None:
    """When a resident may book again after SERVICE_NO_SHOW_LIMIT no-shows within
    SERVICE_NO_SHOW_WINDOW_DAYS (None: not blocked)."""
    limit, window = setting("SERVICE_NO_SHOW_LIMIT"), timedelta(
        days=setting("SERVICE_NO_SHOW_WINDOW_DAYS"))
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

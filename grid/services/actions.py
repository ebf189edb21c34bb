"""Steps on a booking or request on the action engine (server/actions.py): the table
ACTIONS (who may take which step in which state), the named predicates it composes, and
the handlers — the resident's cancel, reschedule and rate, the staff's attended and
no-show (爽约) on slot bookings. The staff's steps on requests are in `requests`.

The engine checks in its one order (404 → 403 → 428 → 412 → 409 → 422) and writes the
audit row (`service_booking_<action>`) of every step; a booking keeps no timeline of its
own, the audit rows are its history.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.orm import Session

from grid.services.bookings import _release_seat, _reminders_due, _take_seat, get_booking
from grid.services.catalogue import _manages, setting
from grid.services.models import Booking, Service, Slot
from grid.services.requests import (
    _accept,
    _complete,
    _decline,
    _providers,
    _request_data,
    _schedule,
)
from notifications.service import notify
from server import actions
from server.actions import Context, Lifecycle, Result, Step, Transition, relation
from server.auth.actor import Actor
from server.errors import Conflict, Invalid, field_errors

# --- who may act, and when -----------------------------------------------------------------


@relation
def is_booker(c: Context, booking: Booking) -> bool:
    """The resident who booked (or requested) it."""
    return booking.resident_id == c.actor.user_id


@relation
def is_service_manager(c: Context, booking: Booking) -> bool:
    """Staff who manage the booking's service (service:manage, its area in scope)."""
    return c.once("manages", lambda: c.s.scalar(sa.select(Service.id).where(
        Service.id == booking.service_id, _manages(c.actor))) is not None)


@relation
def is_slot_booking(c: Context, booking: Booking) -> bool:
    return booking.kind == "slot"


@relation
def is_request(c: Context, booking: Booking) -> bool:
    return booking.kind == "request"


@relation
def not_rated_yet(c: Context, booking: Booking) -> bool:
    return booking.rating is None


BOOK, MANAGE = "service:book", "service:manage"
# fmt: off
ACTIONS: tuple[Transition, ...] = (
    Transition("cancel",     "取消",     ("booked", "requested", "accepted", "scheduled"), "cancelled", BOOK, is_booker),
    Transition("reschedule", "改约",     ("booked",),                 None,        BOOK,   is_booker, ("slot_id",), is_slot_booking),
    Transition("rate",       "评价",     ("attended", "completed"),   None,        BOOK,   is_booker, ("rating",), not_rated_yet),
    Transition("attend",     "已到场",   ("booked",),                 "attended",  MANAGE, is_service_manager, (), is_slot_booking),
    Transition("no_show",    "爽约",     ("booked",),                 "no_show",   MANAGE, is_service_manager, (), is_slot_booking),
    Transition("accept",     "受理",     ("requested",),              "accepted",  MANAGE, is_service_manager, (), is_request),
    Transition("schedule",   "安排上门", ("requested", "accepted", "scheduled"), "scheduled", MANAGE, is_service_manager, ("scheduled_at",), is_request),
    Transition("complete",   "完成",     ("accepted", "scheduled"),   "completed", MANAGE, is_service_manager, (), is_request),
    Transition("decline",    "不予受理", ("requested", "accepted"),   "declined",  MANAGE, is_service_manager, ("reason",), is_request),
)
# fmt: on


def actions_for(s: Session, actor: Actor, booking: Booking) -> list[str]:
    """What this actor may do to this booking now (its `actions`, the 409 body)."""
    return actions.allowed(s, actor, LIFECYCLE, booking)


def act(s: Session, actor: Actor, booking_id: int, action: str, data: dict,
        expected: int | None, at: datetime | None = None) -> Booking:
    """One step on a booking (see ACTIONS), in the engine's order of checks: 404 not yours
    to see, 403 the wrong party, 428 without a version, 412 stale, 409 not possible now
    (with `allowed`), 422 missing data."""
    return actions.run(s, actor, LIFECYCLE, booking_id, action, data, expected, at).record


def _cutoff(s: Session, booking: Booking) -> timedelta:
    minutes = s.scalar(sa.select(Service.cancel_cutoff_minutes)
                       .where(Service.id == booking.service_id))
    return timedelta(minutes=setting("SERVICE_CANCEL_CUTOFF_MINUTES")
                     if minutes is None else minutes)


def _check_cutoff(s: Session, booking: Booking, at: datetime, what: str) -> None:
    if booking.starts_at is not None and at > booking.starts_at - _cutoff(s, booking):
        raise Conflict(f"Too late to {what}: the cut-off before the start has passed")


# --- handlers ------------------------------------------------------------------------------


def _cancel(step: Step) -> Result:
    s, b, at, reason = step.s, step.record, step.at, step.data.get("reason")
    if b.kind == "slot" or b.state == "scheduled":
        _check_cutoff(s, b, at, "cancel")
    if b.slot_id is not None and b.state == "booked":
        _release_seat(s, b.slot_id)
    b.reason = reason
    if b.kind == "request":
        service = s.get(Service, b.service_id)
        notify(s, [b.handled_by] if b.handled_by else _providers(s, service),
               "service_request_changed", _request_data(service, b, "已撤回", "cancelled",
                                                        reason or ""),
               collapse_key=f"service_booking:{b.id}")
    return Result(reason)


def _reschedule(step: Step) -> Result:
    s, b, at = step.s, step.record, step.at
    _check_cutoff(s, b, at, "reschedule")
    target = s.scalars(sa.select(Slot).where(Slot.id == step.data["slot_id"],
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
    moved_from = b.slot_id
    b.slot_id, b.starts_at = target.id, target.starts_at
    for key, value in _reminders_due(target.starts_at, at).items():
        setattr(b, key, value)
    return Result(facts={"from_slot_id": moved_from, "slot_id": target.id})


def _rate(step: Step) -> Result:
    b = step.record
    b.rating, b.rating_comment = step.data["rating"], step.data.get("comment")
    return Result(b.rating_comment, facts={"rating": b.rating})


def _attend(step: Step) -> Result:
    step.record.handled_by = step.actor.user_id
    return Result()


def _no_show(step: Step) -> Result:
    b = step.record
    if b.starts_at is not None and step.at < b.starts_at:
        raise Conflict("The slot has not started yet: a no-show is marked after the start")
    b.handled_by = step.actor.user_id
    return Result()


def _load(s: Session, actor: Actor, booking_id: int) -> Booking:
    return get_booking(s, actor, booking_id, for_update=True)


LIFECYCLE = Lifecycle(
    kind="service_booking", noun="booking", transitions=ACTIONS, load=_load,
    handlers={"cancel": _cancel, "reschedule": _reschedule, "rate": _rate, "attend": _attend,
              "no_show": _no_show, "accept": _accept, "schedule": _schedule,
              "complete": _complete, "decline": _decline})

"""Steps on a booking or request (the transition table ACTIONS and `act`): who may take
which step in which state, the version check, the cut-off before the start, and the
resident's steps — cancel, reschedule, rate — and the staff's on slot bookings — attended,
no-show (爽约). The staff's steps on requests are in `requests`."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.orm import Session

from grid.services.bookings import (
    _release_seat,
    _reminders_due,
    _staff_audit,
    _take_seat,
    get_booking,
)
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
from server import clock
from server.auth.actor import Actor
from server.errors import Conflict, Forbidden, Invalid, NotFound, check_version, field_errors

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
    return timedelta(minutes=setting("SERVICE_CANCEL_CUTOFF_MINUTES")
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


_HANDLERS = {"cancel": _cancel, "reschedule": _reschedule, "rate": _rate, "attend": _attend,
             "no_show": _no_show, "accept": _accept, "schedule": _schedule,
             "complete": _complete, "decline": _decline}

"""Requests to request-type services (上门服务, e.g. 上门维修 for an elderly resident):
making a request (the providing staff told), and the staff's steps on it — accept,
schedule a visit, complete, decline — each told to the resident."""

from __future__ import annotations

import uuid

import sqlalchemy as sa
from sqlalchemy.orm import Session

from grid.areas.models import Membership
from grid.services.bookings import _check_limits, _lock_resident, _reminders_due, get_booking
from grid.services.catalogue import get_service
from grid.services.models import Booking, Service
from grid.services.schedules import _local_text
from notifications.service import NoticeTemplate, notify
from server import clock, idempotency
from server.actions import Result, Step
from server.auth import permissions
from server.auth.actor import Actor
from server.errors import Conflict, Invalid, field_errors

NOTICE_TEMPLATES: tuple[NoticeTemplate, ...] = (
    NoticeTemplate("service_request_new", ("新的服务申请", "{service}：{note}"),
                      ("New service request", "{service}: {note}")),
    NoticeTemplate("service_request_changed", ("服务申请{state}", "{service}：{detail}"),
                      ("Service request {state_en}", "{service}: {detail}")),
)


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
        Membership.area_id == service.area_id,
        Membership.role.in_(permissions.SERVICE_PROVIDER_ROLES))))


def _request_data(service: Service, b: Booking, state: str, state_en: str,
                  detail: str) -> dict:
    return {"service_id": service.id, "service": service.name, "booking_id": b.id,
            "state": state, "state_en": state_en, "detail": detail}


def _tell_resident(s: Session, b: Booking, service: Service, state: str, state_en: str,
                   detail: str) -> None:
    notify(s, [b.resident_id], "service_request_changed",
           _request_data(service, b, state, state_en, detail),
           collapse_key=f"service_booking:{b.id}")


def _service(step: Step) -> Service:
    return step.s.get(Service, step.record.service_id)  # loaded with the booking's check


def _accept(step: Step) -> Result:
    b, data = step.record, step.data
    b.handled_by = step.actor.user_id
    _tell_resident(step.s, b, _service(step), "已受理", "accepted",
                   data.get("note") or "工作人员将与您联系")
    return Result(data.get("note"))


def _schedule(step: Step) -> Result:
    b, when, at = step.record, step.data["scheduled_at"], step.at
    if when <= at:
        raise Invalid(field_errors("scheduled_at", "A time in the future is required."))
    b.starts_at, b.handled_by = when, b.handled_by or step.actor.user_id
    for key, value in _reminders_due(when, at).items():
        setattr(b, key, value)
    _tell_resident(step.s, b, _service(step), "已安排", "scheduled",
                   f"上门时间 {_local_text(when)}")
    return Result(step.data.get("note"), facts={"scheduled_at": when.isoformat()})


def _complete(step: Step) -> Result:
    b, result = step.record, step.data.get("result")
    b.result = result
    _tell_resident(step.s, b, _service(step), "已完成", "completed", result or "请对本次服务评价")
    return Result(result)


def _decline(step: Step) -> Result:
    b, reason = step.record, step.data["reason"]
    b.reason, b.handled_by = reason, step.actor.user_id
    _tell_resident(step.s, b, _service(step), "未受理", "declined", reason)
    return Result(reason)

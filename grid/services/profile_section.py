"""Bookings in the person profile (人员画像, grid.profiles): the section that lists a
person's bookings to staff who manage the service. Added at wiring (grid/services/wiring.py)."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from grid.services import schemas
from grid.services.bookings import _visible_booking
from grid.services.models import Booking, Service, ServiceCategory, Slot
from server.auth.actor import Actor


def profile_bookings(s: Session, actor: Actor, person: Any) -> list[dict]:
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


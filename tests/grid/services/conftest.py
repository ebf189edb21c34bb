"""Service fixtures: the area tree of tests/fixtures/areas.py (communities C11, C12 of street
S1, C21 of street S2), staff and residents per community; the helpers that make services,
slots and bookings are in tests/fixtures/services.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from grid.services.models import Booking, Slot
from notifications.models import OutboxMessage
from tests.fixtures.areas import C11, C21, S1
from tests.fixtures.http import Api
from tests.fixtures.users import make_user  # noqa: F401 - fixture


@dataclass
class People:
    staff: Api  # community_staff of C11
    staff21: Api  # community_staff of C21
    dispatcher: Api  # street_dispatcher of S1
    resident: Api  # resident of C11
    resident2: Api  # resident of C11
    resident21: Api  # resident of C21


@pytest.fixture
def people(api) -> People:
    return People(staff=api("community_staff", C11), staff21=api("community_staff", C21),
                  dispatcher=api("street_dispatcher", S1), resident=api("resident", C11),
                  resident2=api("resident", C11), resident21=api("resident", C21))


def act(who: Api, booking: dict, action: str, status: int = 200, **fields) -> dict:
    response = who.post(f"/bookings/{booking['id']}/actions/{action}",
                        {"version": booking["version"], **fields})
    assert response.status_code == status, (action, response.get_json())
    return response.get_json()


def move_to_past(db_session, booking_id: int, ago: timedelta = timedelta(hours=2)) -> None:
    """Pretend the booking's slot (and so its other bookings) has already begun."""
    booking = db_session.get(Booking, booking_id)
    when = datetime.now(UTC) - ago
    db_session.execute(sa.update(Slot).where(Slot.id == booking.slot_id)
                       .values(starts_at=when, ends_at=when + timedelta(minutes=30)))
    db_session.execute(sa.update(Booking).where(Booking.slot_id == booking.slot_id)
                       .values(starts_at=when))
    db_session.commit()


def slot_row(db_session, slot_id: int) -> Slot:
    return db_session.get(Slot, slot_id, populate_existing=True)


def outbox(db_session, user) -> list[OutboxMessage]:
    return list(db_session.scalars(sa.select(OutboxMessage).where(
        OutboxMessage.user_id == user.id)))

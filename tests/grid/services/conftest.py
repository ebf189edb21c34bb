"""Service fixtures: the area tree of tests/grid/areas (communities C11, C12 of street S1,
C21 of street S2), staff and residents per community, and helpers that make services,
slots and bookings.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from grid.services.models import Booking, ServiceCategory, Slot
from notifications.models import OutboxMessage
from tests.grid.areas.conftest import C11, C12, C21, S1  # noqa: F401
from tests.grid.registry import conftest as registry_conftest
from tests.grid.registry.conftest import Api, at, new_uuid, total  # noqa: F401

tree = registry_conftest.tree
member = registry_conftest.member
make_user = registry_conftest.make_user
api = registry_conftest.api


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


def category_id(db_session, code: str) -> int:
    return db_session.scalar(sa.select(ServiceCategory.id).where(ServiceCategory.code == code))


def make_service(who: Api, tree: dict, db_session, code: str = C11, category: str = "clinic",
                 status: int = 201, **fields) -> dict:
    body = {"category_id": category_id(db_session, category), "area_id": tree[code],
            "name": "社区卫生服务站全科门诊", "provider": "北社区卫生服务站",
            "description": "全科诊疗、慢病随访、预约挂号", "location": at(code),
            "address": "北社区文化路8号", "phone": "0571-63300000",
            "opening_hours": [{"days": [1, 2, 3, 4, 5], "open": "08:00", "close": "17:00"}],
            "fee": "挂号费5元", "materials": ["身份证", "医保卡"], "max_trips": 1,
            "booking_mode": "slots", **fields}
    response = who.post("/services", body)
    assert response.status_code == status, response.get_json()
    return response.get_json()


def add_slot(db_session, service_id: int, starts_in: timedelta, capacity: int = 5,
             minutes: int = 30) -> int:
    """A slot starting `starts_in` from now (committed to the test's savepoint)."""
    start = datetime.now(UTC).replace(microsecond=0) + starts_in
    slot = Slot(service_id=service_id, starts_at=start,
                ends_at=start + timedelta(minutes=minutes), capacity=capacity)
    db_session.add(slot)
    db_session.commit()
    return slot.id


def book(who: Api, slot_id: int, status: int = 201, **fields) -> dict:
    response = who.post("/bookings", {"slot_id": slot_id, **fields})
    assert response.status_code == status, response.get_json()
    return response.get_json()


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

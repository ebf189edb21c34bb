"""No overbooking under concurrency, proven with real concurrent connections over committed
rows: 200 residents press "book" on a slot of capacity 10 at the same moment → exactly 10
bookings, 190 answers 409. And one resident pressing 20 times gets one booking."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session

from grid.services import bookings
from server.auth.actor import Actor
from server.auth.permissions import permissions_for
from server.errors import Conflict

RESIDENTS, CAPACITY = 200, 10
# PostgreSQL's max_connections is 200 on the test cluster (a few are the suite's own):
# at most this many attempts hold a connection at once; the rest queue behind them.
MAX_CONNECTIONS = 150


@pytest.fixture
def committed_slot(engine) -> Iterator[dict]:
    """A community, a service with one slot of capacity 10 tomorrow, and 200 residents."""
    code = f"9{uuid.uuid4().int % 10**8:08d}"
    start = datetime.now(UTC) + timedelta(days=1)
    with engine.begin() as conn:
        area = conn.scalar(sa.text(
            "INSERT INTO areas (code, name, level, path, version) "
            "VALUES (:c, '并发测试社区', 'community', '', 1) RETURNING id"), {"c": code + "001"})
        conn.execute(sa.text("UPDATE areas SET path = id || '.' WHERE id = :id"), {"id": area})
        category = conn.scalar(sa.text("SELECT id FROM service_categories WHERE code = 'venues'"))
        svc = conn.scalar(sa.text(
            "INSERT INTO services (category_id, area_id, name, booking_mode, version) "
            "VALUES (:cat, :a, '并发测试场地', 'slots', 1) RETURNING id"),
            {"cat": category, "a": area})
        slot = conn.scalar(sa.text(
            "INSERT INTO service_slots (service_id, starts_at, ends_at, capacity) "
            "VALUES (:s, :t, :t + interval '1 hour', :cap) RETURNING id"),
            {"s": svc, "t": start, "cap": CAPACITY})
        users = list(conn.scalars(sa.text(
            "INSERT INTO users (username, display_name, password_hash, is_active, "
            "failed_logins, version) SELECT :p || n, '并发居民', 'x', true, 0, 1 "
            "FROM generate_series(1, :n) AS n RETURNING id"), {"p": f"c{code}-", "n": RESIDENTS}))
    try:
        yield {"slot": slot, "service": svc, "users": users}
    finally:
        with engine.begin() as conn:
            conn.execute(sa.text("DELETE FROM service_bookings WHERE service_id = :s"), {"s": svc})
            conn.execute(sa.text("DELETE FROM services WHERE id = :s"), {"s": svc})
            conn.execute(sa.text("DELETE FROM users WHERE id = ANY(:u)"), {"u": users})
            conn.execute(sa.text("DELETE FROM areas WHERE id = :a"), {"a": area})


def _resident(user_id: int) -> Actor:
    roles = frozenset({"resident"})
    return Actor(user_id=user_id, roles=roles, permissions=permissions_for(roles))


def _attempt_all(app, engine, slot_id: int, user_ids: list[int]) -> list[str]:
    barrier = threading.Barrier(len(user_ids))
    gate = threading.BoundedSemaphore(MAX_CONNECTIONS)
    outcomes: list[str] = []

    def attempt(user_id: int) -> None:
        barrier.wait()
        with gate, app.app_context(), Session(engine, expire_on_commit=False) as s:
            try:
                bookings.book_slot(s, _resident(user_id), slot_id, None)
                s.commit()
                outcomes.append("201")
            except Conflict:
                s.rollback()
                outcomes.append("409")
            except Exception as exc:  # noqa: BLE001 - anything else is the bug to report
                s.rollback()
                outcomes.append(repr(exc))

    threads = [threading.Thread(target=attempt, args=(u,)) for u in user_ids]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    return outcomes


def test_200_residents_on_a_slot_of_10_make_exactly_10_bookings(app, engine, committed_slot):
    outcomes = _attempt_all(app, engine, committed_slot["slot"], committed_slot["users"])
    assert sorted(set(outcomes)) == ["201", "409"], [o for o in outcomes if len(o) > 3][:3]
    assert outcomes.count("201") == CAPACITY and outcomes.count("409") == RESIDENTS - CAPACITY
    with engine.connect() as conn:
        booked = conn.scalar(sa.text("SELECT booked FROM service_slots WHERE id = :id"),
                             {"id": committed_slot["slot"]})
        rows = conn.scalar(sa.text(
            "SELECT count(*) FROM service_bookings WHERE slot_id = :id AND state = 'booked'"),
            {"id": committed_slot["slot"]})
    assert booked == rows == CAPACITY


def test_one_resident_pressing_twenty_times_books_once(app, engine, committed_slot):
    one = committed_slot["users"][0]
    outcomes = _attempt_all(app, engine, committed_slot["slot"], [one] * 20)
    assert outcomes.count("201") == 1 and outcomes.count("409") == 19, outcomes
    with engine.connect() as conn:
        assert conn.scalar(sa.text("SELECT booked FROM service_slots WHERE id = :id"),
                           {"id": committed_slot["slot"]}) == 1

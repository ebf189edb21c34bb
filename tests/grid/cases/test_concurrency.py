"""Two dispatchers press "dispatch" on the same case at the same moment: the case is
dispatched once, and the second gets 412 with the case as it now is. Proven with real
concurrent transactions on committed rows (a street and grid of their own, removed after)."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session

from grid.cases import actions
from server.auth.actor import Actor
from server.auth.permissions import permissions_for
from server.errors import Stale


@pytest.fixture
def committed_case(engine) -> Iterator[dict]:
    """An accepted case in a grid of a street of their own, and two departments."""
    code = f"8{uuid.uuid4().int % 10**8:08d}"
    with engine.begin() as conn:
        street = conn.scalar(sa.text(
            "INSERT INTO areas (code, name, level, path, version) "
            "VALUES (:c, '并发测试街道', 'street', '', 1) RETURNING id"), {"c": code})
        conn.execute(sa.text("UPDATE areas SET path = id || '.' WHERE id = :id"), {"id": street})
        grid = conn.scalar(sa.text(
            "INSERT INTO areas (code, name, level, parent_id, path, version) "
            "VALUES (:c, '并发测试网格', 'grid', :p, '', 1) RETURNING id"),
            {"c": code + "001001", "p": street})
        conn.execute(sa.text("UPDATE areas SET path = :sp || id || '.' WHERE id = :id"),
                     {"id": grid, "sp": f"{street}."})
        departments = [conn.scalar(sa.text(
            "INSERT INTO departments (code, name, service_area_id, version) "
            "VALUES (:c, :n, :a, 1) RETURNING id"), {"c": f"{code}-{i}", "n": f"部门{i}",
                                                     "a": street}) for i in (1, 2)]
        category = conn.scalar(sa.text("SELECT id FROM case_categories WHERE code = '0102'"))
        case = conn.scalar(sa.text(
            "INSERT INTO cases (code, category_id, channel, state, area_id, description, "
            "version, location) VALUES (:c, :cat, 'console', 'accepted', :g, '并发', 1, "
            "ST_SetSRID(ST_MakePoint(119.9, 30.0), 4326)) RETURNING id"),
            {"c": f"T{code}", "cat": category, "g": grid})
    try:
        yield {"case": case, "street": street, "departments": departments}
    finally:
        with engine.begin() as conn:
            conn.execute(sa.text("DELETE FROM cases WHERE id = :id"), {"id": case})
            conn.execute(sa.text("DELETE FROM departments WHERE id = ANY(:ids)"),
                         {"ids": departments})
            conn.execute(sa.text("DELETE FROM areas WHERE id IN (:g, :s)"),
                         {"g": grid, "s": street})


def test_two_simultaneous_dispatches_make_one_dispatch_and_one_412(app, engine,
                                                                   committed_case):
    roles = frozenset({"street_dispatcher"})
    actor = Actor(user_id=0, roles=roles, permissions=permissions_for(roles),
                  area_paths=(f"{committed_case['street']}.",))
    barrier = threading.Barrier(2)
    outcomes: list = []

    def dispatch(department_id: int) -> None:
        with app.app_context(), Session(engine, expire_on_commit=False) as s:
            barrier.wait()
            try:
                case = actions.act(s, actor, committed_case["case"], "dispatch",
                                   {"department_id": department_id}, 1)
                s.commit()
                outcomes.append(("ok", case.department_id))
            except Stale as exc:  # the API shows exc.record in the case's schema
                s.rollback()
                outcomes.append(("412", exc.record.department_id))

    threads = [threading.Thread(target=dispatch, args=(d,))
               for d in committed_case["departments"]]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    kinds = sorted(kind for kind, _ in outcomes)
    assert kinds == ["412", "ok"], outcomes
    winner = next(d for kind, d in outcomes if kind == "ok")
    assert next(d for kind, d in outcomes if kind == "412") == winner  # told who won
    with engine.connect() as conn:
        events = conn.execute(sa.text(
            "SELECT action, data->>'department_id' FROM case_events WHERE case_id = :id"),
            {"id": committed_case["case"]}).all()
    assert events == [("dispatch", str(winner))]

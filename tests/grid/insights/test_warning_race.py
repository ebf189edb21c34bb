"""Two workers evaluate the same indicator at the same moment: one warning, raised once
(the partial unique index of open warnings and the evaluation's ON CONFLICT), proven with
real concurrent transactions on committed rows (a street and grid of their own, removed
after)."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session

from grid.insights import warnings
from grid.insights.models import Indicator


@pytest.fixture
def committed(engine) -> Iterator[dict]:
    code = f"7{uuid.uuid4().int % 10**8:08d}"
    with engine.begin() as conn:
        street = conn.scalar(sa.text(
            "INSERT INTO areas (code, name, level, path, version) "
            "VALUES (:c, '并发预警街道', 'street', '', 1) RETURNING id"), {"c": code})
        conn.execute(sa.text("UPDATE areas SET path = id || '.' WHERE id = :id"), {"id": street})
        grid = conn.scalar(sa.text(
            "INSERT INTO areas (code, name, level, parent_id, path, version) "
            "VALUES (:c, '并发预警网格', 'grid', :p, '', 1) RETURNING id"),
            {"c": code + "001001", "p": street})
        conn.execute(sa.text("UPDATE areas SET path = :sp || id || '.' WHERE id = :id"),
                     {"id": grid, "sp": f"{street}."})
        category = conn.scalar(sa.text("SELECT id FROM case_categories WHERE code = '0102'"))
        cases = [conn.scalar(sa.text(
            "INSERT INTO cases (code, category_id, channel, state, area_id, description, "
            "version) VALUES (:c, :cat, 'console', 'accepted', :g, '并发', 1) RETURNING id"),
            {"c": f"W{code}{i}", "cat": category, "g": grid}) for i in range(3)]
        indicator = conn.scalar(sa.text(
            "INSERT INTO indicators (code, name, kind, area_id, area_level, window_hours, "
            "every_minutes, thresholds, version) VALUES (:c, '并发', 'new_cases', :s, "
            "'grid', 24, 60, '{\"yellow\": 2}', 1) RETURNING id"), {"c": f"race{code}",
                                                                     "s": street})
    try:
        yield {"indicator": indicator, "grid": grid}
    finally:
        with engine.begin() as conn:
            conn.execute(sa.text("DELETE FROM warnings WHERE indicator_id = :i"),
                         {"i": indicator})
            conn.execute(sa.text("DELETE FROM indicators WHERE id = :i"), {"i": indicator})
            conn.execute(sa.text("DELETE FROM cases WHERE id = ANY(:ids)"), {"ids": cases})
            conn.execute(sa.text("DELETE FROM areas WHERE id IN (:g, :s)"),
                         {"g": grid, "s": street})


def test_two_simultaneous_evaluations_raise_one_warning(app, engine, committed):
    barrier = threading.Barrier(2)
    results: list = []

    def run() -> None:
        with app.app_context(), Session(engine, expire_on_commit=False) as s:
            indicator = s.get(Indicator, committed["indicator"])
            barrier.wait()
            results.append(warnings.evaluate(s, indicator))
            s.commit()

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(results) == 2
    assert sorted(r["raised"] for r in results) == [0, 1]
    with engine.connect() as conn:
        rows = conn.execute(sa.text(
            "SELECT state, value FROM warnings WHERE indicator_id = :i"),
            {"i": committed["indicator"]}).all()
        events = conn.scalar(sa.text(
            "SELECT count(*) FROM warning_events e JOIN warnings w ON w.id = e.warning_id "
            "WHERE w.indicator_id = :i"), {"i": committed["indicator"]})
    assert [tuple(r) for r in rows] == [("raised", 3.0)]
    assert events == 1  # one "raised" line on the timeline

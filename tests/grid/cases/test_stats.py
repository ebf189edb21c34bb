"""The evaluation (综合评价, GET /stats/performance) against hand-computed values.

Ten cases are reported through the API and their milestones set to known values: two
departments, three grids in two streets, a returned case, a late one, a rework, a
self-handled one, a merged one (never counted) and one reported outside the period. Every
figure of the total, of each department and of each grid is computed by hand below:
上报数, 立案数, 派遣数, 准确派遣率, 处置数, 按期处置率, 结案数, 结案率 (closed ÷ accepted),
按期结案率, 返工数, 平均处置时长 (working hours), 满意率 (rating ≥ 4 ÷ rated), and the
composite score 立案数分值×0.1 + 结案率×0.3 + 按期处置率×0.3 + (1−返工率)×0.3 with its grade.
Also: stats:read is needed, a dispatcher counts only their street, `from` < `to`.
"""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from hypothesis import given, settings
from hypothesis import strategies as st

from grid.areas.models import Department
from grid.cases import stats
from grid.cases.models import STAT_COUNTS, Case, CaseFollower
from tests.conftest import assert_error_shape
from tests.fixtures.areas import C11, G111, G112, G211, D
from tests.fixtures.cases import report, set_case_times, utc

PERIOD = "from=2026-06-01T00:00:00%2B08:00&to=2026-07-01T00:00:00%2B08:00"
H = 3600.0


@pytest.fixture
def water(db_session, tree) -> Department:
    dept = Department(code="T-SW", name="测试水务局", kind="水务", service_area_id=tree[D])
    db_session.add(dept)
    db_session.commit()
    return dept


def _case(db_session, who, category, grid: str, *parts: dict, day: int = 10, month: int = 6,
          **milestones) -> int:
    """A case reported through the API, then given known milestones (all in `month`);
    later parts override earlier ones."""
    case = report(who, category, grid)
    when = utc(f"2026-{month:02d}-{day:02d}T09:00:00+08:00")
    values = {"reported_at": when}
    for part in (*parts, milestones):
        values.update(part)
    for name in ("accepted_at", "dispatched_at", "handled_at", "closed_at"):
        if values.get(name) is True:
            values[name] = when
    set_case_times(db_session, case["id"], **values)
    return case["id"]


def _done(dept, hours, in_time, **more) -> dict:
    """Accepted, dispatched to `dept`, handled in `hours` working hours."""
    return {"accepted_at": True, "dispatched_at": True, "handled_at": True,
            "department_id": dept.id, "handling_working_s": hours * H,
            "handled_in_time": in_time, "state": "handled", **more}


def _closed(in_time: bool, rating: int | None = None) -> dict:
    return {"closed_at": True, "closed_in_time": in_time, "rating": rating,
            "state": "evaluated" if rating else "closed"}


@pytest.fixture
def fixture_cases(db_session, people, category, department, water):
    p, cg, sw = people, department, water
    c = {}
    c[1] = _case(db_session, p.resident, category, G111, _done(cg, 2, True), _closed(True, 5))
    c[2] = _case(db_session, p.resident, category, G111, _done(cg, 10, False),
                 _closed(False, 3), rework_count=1)
    c[3] = _case(db_session, p.resident, category, G112, _done(cg, 4, True), return_count=1)
    c[4] = _case(db_session, p.resident, category, G112, _done(sw, 8, False))
    c[5] = _case(db_session, p.resident, category, G111, _done(sw, 6, True), _closed(True, 4))
    c[6] = _case(db_session, p.resident, category, G111)  # reported, not yet accepted
    c[7] = _case(db_session, p.worker, category, G112, _closed(True), accepted_at=True,
                 dispatched_at=True, handled_at=True, self_handled=True, handled_in_time=True,
                 handling_working_s=0.0)  # 自行处置: solved on the spot
    c[8] = _case(db_session, p.resident, category, G111, state="merged", accepted_at=True)
    c[9] = _case(db_session, p.resident, category, G111, _done(cg, 1, True), _closed(True, 5),
                 month=7, day=2)
    c[10] = _case(db_session, p.worker2, category, G211, _done(cg, 3, True), _closed(True))
    return c


def _perf(who, query: str = PERIOD) -> dict:
    return who.ok(who.get(f"/stats/performance?{query}"))


def _pick(row: dict, *names: str) -> tuple:
    return tuple(row[n] for n in names)


COUNTS = ("reported", "accepted", "dispatched", "correctly_dispatched", "handled",
          "handled_in_time", "handled_late", "due_for_closure", "closed", "closed_in_time",
          "self_handled", "reworks", "rated")
RATES = ("correct_dispatch_rate", "on_time_handling_rate", "closure_rate",
         "on_time_closure_rate", "rework_rate", "mean_handling_hours", "satisfaction_rate")


def test_the_district_figures_by_hand(api, fixture_cases, department, water, app):
    leader = api("district_admin", D)
    body = _perf(leader)
    assert body["weights"] == app.config["CASE_SCORE_WEIGHTS"] == {
        "accepted": 0.1, "closure_rate": 0.3, "on_time_handling_rate": 0.3, "no_rework": 0.3}
    total = body["total"]
    # cases 1–7 and 10 (8 is merged, 9 was reported in July)
    assert _pick(total, *COUNTS) == (8, 7, 6, 5, 7, 5, 2, 7, 5, 4, 1, 1, 3)
    # 5/6 dispatched right; 5/7 in time; 5 closed of 7 accepted; 4/5 closed in time;
    # 1 reworked of 7 handled; (2+10+4+8+6+0+3)/7 h; 2 of 3 ratings ≥ 4
    assert _pick(total, *RATES) == (83.33, 71.43, 71.43, 80.0, 14.29, 4.71, 66.67)
    # 10 + 0.3 × (71.43 + 71.43 + 85.71)
    assert (total["score"], total["grade"]) == (78.57, "B")

    departments = {d["code"]: d for d in body["departments"]}
    assert list(departments) == ["T-CG", "T-SW"]
    cg, sw = departments["T-CG"], departments["T-SW"]
    assert (cg["id"], cg["name"]) == (department.id, "测试城管局")
    # 城管: cases 1, 2, 3 (returned once), 10
    assert _pick(cg, *COUNTS) == (4, 4, 4, 3, 4, 3, 1, 4, 3, 2, 0, 1, 2)
    assert _pick(cg, *RATES) == (75.0, 75.0, 75.0, 66.67, 25.0, 4.75, 50.0)
    assert (cg["score"], cg["grade"]) == (77.5, "B")  # 10 + 0.3 × (75 + 75 + 75)
    # 水务: cases 4 (late, open) and 5
    assert _pick(sw, *COUNTS) == (2, 2, 2, 2, 2, 1, 1, 2, 1, 1, 0, 0, 1)
    assert _pick(sw, *RATES) == (100.0, 50.0, 50.0, 100.0, 0.0, 7.0, 100.0)
    # 立案数分值 relative to the busiest department: 2/4 → 50 × 0.1
    assert (sw["score"], sw["grade"]) == (65.0, "C")

    grids = {g["code"]: g for g in body["grids"]}
    assert list(grids) == [G111, G112, G211]
    g111, g112, g211 = grids[G111], grids[G112], grids[G211]
    assert _pick(g111, *COUNTS) == (4, 3, 3, 3, 3, 2, 1, 3, 3, 2, 0, 1, 3)
    assert _pick(g111, *RATES) == (100.0, 66.67, 100.0, 66.67, 33.33, 6.0, 66.67)
    assert (g111["score"], g111["grade"]) == (80.0, "B")
    assert _pick(g112, *COUNTS) == (3, 3, 2, 1, 3, 2, 1, 3, 1, 1, 1, 0, 0)
    assert _pick(g112, *RATES) == (50.0, 66.67, 33.33, 100.0, 0.0, 4.0, None)
    assert (g112["score"], g112["grade"]) == (70.0, "C")
    assert _pick(g211, "reported", "accepted", "closed", "closure_rate") == (1, 1, 1, 100.0)
    # 立案数分值 1/3 of the busiest grid: 3.33 + 0.3 × 300
    assert (g211["score"], g211["grade"]) == (93.33, "A")


def test_a_dispatcher_counts_their_street_only(fixture_cases, people):
    body = _perf(people.dispatcher)
    total = body["total"]
    assert _pick(total, "reported", "accepted", "dispatched", "handled", "closed") == \
        (7, 6, 5, 6, 4)
    assert _pick(total, "correct_dispatch_rate", "closure_rate", "mean_handling_hours") == \
        (80.0, 66.67, 5.0)
    assert [g["code"] for g in body["grids"]] == [G111, G112]
    assert {d["code"]: d["reported"] for d in body["departments"]} == {"T-CG": 3, "T-SW": 2}
    other = _perf(people.dispatcher2)
    assert _pick(other["total"], "reported", "closed") == (1, 1)
    assert [g["code"] for g in other["grids"]] == [G211]


def test_filters_by_area_and_department(api, fixture_cases, department, tree):
    leader = api("district_admin", D)
    community = _perf(leader, f"{PERIOD}&area_id={tree[C11]}")
    assert [g["code"] for g in community["grids"]] == [G111, G112]
    assert community["total"]["reported"] == 7
    only_cg = _perf(leader, f"{PERIOD}&department_id={department.id}")
    assert [d["code"] for d in only_cg["departments"]] == ["T-CG"]
    assert only_cg["total"]["reported"] == 4


def test_an_empty_period_has_no_score(api, fixture_cases):
    leader = api("district_admin", D)
    body = _perf(leader, "from=2025-01-01T00:00:00Z&to=2025-02-01T00:00:00Z")
    assert body["total"]["reported"] == 0 and body["total"]["score"] is None
    assert body["departments"] == [] and body["grids"] == []


def test_the_grade_follows_the_score_shown(api, db_session, people, category, department):
    """Six cases of one department: all handled, five in time, five closed, no rework.
    结案率 = 按期处置率 = 5/6, so the score is 10 + 0.3 × (500/6 + 500/6 + 100) = 90: an A.
    (From the rounded rates 83.33 it comes to 89.998 — shown as 90.0 — which must not be
    graded B.)"""
    for i in range(6):
        _case(db_session, people.resident, category, G111, _done(department, 1, i > 0),
              _closed(True) if i > 0 else {}, day=i + 1)
    body = _perf(api("district_admin", D))
    row = body["departments"][0]
    assert _pick(row, "closure_rate", "on_time_handling_rate", "rework_rate") == \
        (83.33, 83.33, 0.0)
    assert (row["score"], row["grade"]) == (90.0, "A")
    assert (body["total"]["score"], body["total"]["grade"]) == (90.0, "A")


def test_who_may_read_the_statistics_and_the_period(api, people):
    assert_error_shape(people.resident.get(f"/stats/performance?{PERIOD}"), 403)
    leader = api("district_admin", D)
    body = assert_error_shape(leader.get(
        "/stats/performance?from=2026-07-01T00:00:00Z&to=2026-06-01T00:00:00Z"), 422)
    assert "to" in str(body["errors"])
    assert_error_shape(leader.get(
        "/stats/performance?from=2026-07-01T00:00:00Z&to=2026-07-01T00:00:00Z"), 422)
    assert_error_shape(leader.get("/stats/performance?from=2026-07-01T00:00:00Z"), 422)
    assert_error_shape(leader.get("/stats/performance?from=yesterday&to=today"), 422)


_rate = st.integers(min_value=0, max_value=10_000).map(lambda n: n / 100)


@settings(max_examples=300, deadline=None)
@given(accepted=st.integers(min_value=1, max_value=500), busiest=st.integers(0, 500),
       closure=_rate, on_time=_rate, rework=_rate)
def test_the_score_and_grade_of_any_row(accepted, busiest, closure, on_time, rework):
    """The composite score is the weighted sum of its four parts, each on 0–100, shown to
    0.01; the grade is read off the score as shown (A ≥ 90, B ≥ 75, C ≥ 60, D ≥ 40)."""
    busiest = max(busiest, accepted)
    weights = {"accepted": 0.1, "closure_rate": 0.3, "on_time_handling_rate": 0.3,
               "no_rework": 0.3}
    row = {"accepted": accepted, "closure_rate": closure, "on_time_handling_rate": on_time,
           "rework_rate": rework}
    stats._score(row, busiest, weights)
    expected = 10 * accepted / busiest + 0.3 * (closure + on_time + 100 - rework)
    assert row["score"] == pytest.approx(expected, abs=0.006)
    assert 0 <= row["score"] <= 100
    floors = [("A", 90), ("B", 75), ("C", 60), ("D", 40)]
    assert row["grade"] == next((g for g, f in floors if row["score"] >= f), "E")


# --- the daily roll-up (case_stats_daily) ----------------------------------------------------

ROLLUP_COLUMNS = ", ".join(f"sum({n})" for n in (*STAT_COUNTS, "handling_s"))


def _rollup(db_session) -> list[tuple]:
    """The roll-up added up per key, and the same computed from the cases themselves."""
    kept = db_session.execute(sa.text(
        f"SELECT day, area_id, department_id, {ROLLUP_COLUMNS} FROM case_stats_daily "
        "GROUP BY 1, 2, 3 HAVING sum(reported) <> 0 ORDER BY 1, 2, 3")).all()
    contributions = sa.select(
        sa.cast(sa.func.timezone("UTC", Case.reported_at), sa.Date).label("day"),
        Case.area_id, Case.department_id, *stats._contributions()
    ).where(Case.state != "merged").subquery()
    scanned = db_session.execute(
        sa.select(contributions.c.day, contributions.c.area_id, contributions.c.department_id,
                  *[sa.func.sum(contributions.c[n]) for n in (*STAT_COUNTS, "handling_s")])
        .group_by(contributions.c.day, contributions.c.area_id,
                  contributions.c.department_id)
        .order_by(contributions.c.day, contributions.c.area_id,
                  contributions.c.department_id)).all()
    return [tuple(r) for r in kept], [tuple(r) for r in scanned]


def test_the_daily_rollup_follows_every_change(api, db_session, fixture_cases, people,
                                               department):
    """The triggers keep the roll-up equal to the cases, through inserts, updates of
    counted columns (milestones, department, merge), deletes and the worker's folding;
    the figures read from it stay the hand-computed ones."""
    kept, scanned = _rollup(db_session)
    assert kept == scanned and len(kept) == 8  # (day, grid, department) keys of the cases
    before = _perf(api("district_admin", D))
    assert stats.compact_stats(db_session)["folded_keys"] >= 1
    db_session.commit()
    keys = db_session.execute(sa.text(
        "SELECT count(*), count(DISTINCT (day, area_id, department_id)) "
        "FROM case_stats_daily")).one()
    assert keys[0] == keys[1]
    assert _perf(api("district_admin", D)) == before

    # case 6 accepted and dispatched, case 1 re-rated, case 4 merged, case 10 deleted
    set_case_times(db_session, fixture_cases[6], accepted_at=utc("2026-06-11T10:00:00Z"),
                   dispatched_at=utc("2026-06-11T11:00:00Z"), department_id=department.id)
    set_case_times(db_session, fixture_cases[1], rating=2)
    set_case_times(db_session, fixture_cases[4], state="merged")
    db_session.execute(sa.delete(Case).where(Case.id == fixture_cases[10]))
    db_session.commit()
    kept, scanned = _rollup(db_session)
    assert kept == scanned
    total = _perf(api("district_admin", D))["total"]
    assert _pick(total, "reported", "accepted", "dispatched", "rated", "satisfaction_rate") \
        == (6, 6, 5, 3, 33.33)
    stats.compact_stats(db_session)
    db_session.commit()
    assert _perf(api("district_admin", D))["total"] == total


def test_partial_days_and_own_cases_outside_the_scope(api, db_session, fixture_cases, people):
    """A period that starts and ends inside a day counts the cases of those hours only
    (read from the cases, not the roll-up); a case the dispatcher follows outside their
    street counts for them as it does in their queue."""
    leader = api("district_admin", D)
    # all June-10 cases are reported at 01:00 UTC; the period 00:30–01:30 holds all of them,
    # the period from 01:30 on the 9th to 00:30 on the 10th none; the month minus an hour
    # at each end all of them again
    hour = _perf(leader, "from=2026-06-10T00:30:00Z&to=2026-06-10T01:30:00Z")["total"]
    assert hour["reported"] == 8
    assert _perf(leader, "from=2026-06-09T01:30:00Z&to=2026-06-10T00:30:00Z")["total"][
        "reported"] == 0
    month = _perf(leader, "from=2026-05-31T17:00:00Z&to=2026-06-30T15:00:00Z")["total"]
    assert month == hour
    db_session.add(CaseFollower(case_id=fixture_cases[10], user_id=people.dispatcher.user.id,
                                kind="follower"))
    db_session.commit()
    total = _perf(people.dispatcher)["total"]
    assert _pick(total, "reported", "closed") == (8, 5)
    assert [g["code"] for g in _perf(people.dispatcher)["grids"]] == [G111, G112, G211]

"""Trends and breakdowns (GET /stats/trends) against hand-computed values.

Cases are reported through the API and given known milestones (the roll-up's triggers
follow each change); every figure below is counted by hand from the table in `story`:
events on their own UTC day, June 2026 beside May 2026 (the period before) and June 2025
(a year earlier), per month and per week, per 大类, department and street; a merged case
never counts, a reopened case's closure is taken back, the sweep's cards count on the day
they are given; scoped like /stats/performance, rates and rankings are its own.
"""

from __future__ import annotations

from datetime import UTC, timedelta

import pytest
import sqlalchemy as sa

from grid.areas.models import Department
from grid.cases import sweep, trends
from grid.cases.models import (
    TREND_COUNTS,
    Case,
    CaseCategory,
    CaseTrendsDaily,
    CaseTrendsMonthly,
)
from server.clock import now
from tests.conftest import assert_error_shape
from tests.fixtures.areas import C11, C12, G111, G112, G121, G211, S1, S2, D
from tests.fixtures.cases import report, set_case_times, utc

JUNE = "from=2026-06-01&to=2026-07-01"


def _counts(reported=0, accepted=0, closed=0, overdue=0, escalated=0) -> dict:
    return {"reported": reported, "accepted": accepted, "closed": closed,
            "overdue": overdue, "escalated": escalated}


@pytest.fixture
def water(db_session, tree) -> Department:
    dept = Department(code="T-SW", name="测试水务局", kind="水务", service_area_id=tree[D])
    db_session.add(dept)
    db_session.commit()
    return dept


@pytest.fixture
def advert(db_session, category) -> CaseCategory:
    """A 小类 of 大类 02 (宣传广告)."""
    parent = db_session.scalar(sa.select(CaseCategory.id).where(CaseCategory.code == "02"))
    cat = CaseCategory(code="T02", parent_id=parent, name="测试广告", priority=3,
                       default_department_id=category.default_department_id,
                       time_limits={"handle": {"amount": 1, "unit": "working_days"}})
    db_session.add(cat)
    db_session.commit()
    return cat


def _case(db_session, who, category, grid, reported, dept=None, accepted=None,
          closed=None, **more) -> int:
    case = report(who, category, grid, attributes={"size": "small"} if category.attributes
                  else {})
    values = {"reported_at": utc(reported), "department_id": dept.id if dept else None,
              "accepted_at": utc(accepted) if accepted else None,
              "closed_at": utc(closed) if closed else None, **more}
    set_case_times(db_session, case["id"], **values)
    return case["id"]


@pytest.fixture
def story(db_session, people, category, advert, department, water):
    """   case  grid  大类  dept  reported    accepted    closed
          1     G111  01    cg    06-03       06-03       06-10
          2     G111  01    cg    06-05       06-06       –
          3     G112  02    –     06-20       –           –
          4     G121  01    cg    05-28       06-02       06-15
          5     G211  01    sw    06-04       06-04       –
          6     G111  01    cg    2025-06-15  2025-06-16  2025-06-20
          7     G111  01    cg    06-07       06-07       (merged: never counted)
    (all at 10:00 UTC)"""
    p, cg, sw = people, department, water
    d = lambda s: f"{s}T10:00:00+00:00" if s[0] == "2" else f"2026-{s}T10:00:00+00:00"  # noqa: E731
    ids = {
        1: _case(db_session, p.worker, category, G111, d("06-03"), cg, d("06-03"), d("06-10")),
        2: _case(db_session, p.worker, category, G111, d("06-05"), cg, d("06-06")),
        3: _case(db_session, p.worker, advert, G112, d("06-20")),
        4: _case(db_session, p.dispatcher, category, G121, d("05-28"), cg, d("06-02"),
                 d("06-15")),
        5: _case(db_session, p.worker2, category, G211, d("06-04"), sw, d("06-04")),
        6: _case(db_session, p.worker, category, G111, d("2025-06-15"), cg, d("2025-06-16"),
                 d("2025-06-20")),
        7: _case(db_session, p.worker, category, G111, d("06-07"), cg, d("06-07")),
    }
    set_case_times(db_session, ids[7], state="merged", merged_into_id=ids[1])
    return ids


def test_a_district_month_against_hand_counts(api, story, tree, department, water):
    leader = api("district_admin", D)
    body = leader.ok(leader.get(f"/stats/trends?area_id={tree[D]}&{JUNE}&bucket=month"))
    assert body["previous"] == {"from": "2026-05-01", "to": "2026-06-01"}
    assert body["last_year"] == {"from": "2025-06-01", "to": "2025-07-01"}
    june, may, june25 = _counts(4, 4, 2), _counts(1), _counts(1, 1, 1)
    assert body["totals"] == {"current": june, "previous": may, "last_year": june25}
    assert body["series"] == [{"period": "2026-06-01", "current": june, "previous": may,
                               "last_year": june25}]
    cats = {g["code"]: g for g in body["by_category"]}
    assert cats["01"]["current"] == _counts(3, 4, 2) and cats["01"]["previous"] == may
    assert cats["01"]["last_year"] == june25
    assert cats["02"]["current"] == _counts(1) and cats["02"]["previous"] == _counts()
    depts = {g["code"]: g for g in body["by_department"]}
    assert set(depts) == {"T-CG", "T-SW"}  # case 3 has no department yet
    assert depts["T-CG"]["current"] == _counts(2, 3, 2)
    assert depts["T-CG"]["previous"] == may and depts["T-CG"]["last_year"] == june25
    assert depts["T-SW"]["current"] == _counts(1, 1, 0)
    streets = {g["code"]: g["current"] for g in body["by_area"]}
    assert streets == {S1: _counts(3, 3, 2), S2: _counts(1, 1, 0)}


def test_whole_months_and_edge_days_add_up(api, story, tree):
    """2026-05-20 – 2026-06-12 is read as the days 05-20..05-31 and 06-01..06-11 (no whole
    month); 2026-05-20 – 2026-07-03 as May's edge days, June from the monthly roll-up and
    July's edge days: the same figures as counted by hand."""
    leader = api("district_admin", D)
    body = leader.ok(leader.get(f"/stats/trends?area_id={tree[D]}&from=2026-05-20"
                                "&to=2026-06-12&bucket=month"))
    # reported 4, 1, 5, 2 (not 3: 06-20); accepted 4, 1, 5, 2; closed 1 (06-10)
    assert body["totals"]["current"] == _counts(4, 4, 1)
    assert [p["current"]["reported"] for p in body["series"]] == [1, 3]
    body = leader.ok(leader.get(f"/stats/trends?area_id={tree[D]}&from=2026-05-20"
                                "&to=2026-07-03&bucket=month"))
    assert body["totals"]["current"] == _counts(5, 4, 2)
    assert [p["current"]["closed"] for p in body["series"]] == [0, 2, 0]
    cats = {g["code"]: g["current"] for g in body["by_category"]}
    assert cats == {"01": _counts(4, 4, 2), "02": _counts(1)}


def test_weeks_days_and_minor_categories(api, story, tree):
    leader = api("district_admin", D)
    body = leader.ok(leader.get(f"/stats/trends?area_id={tree[D]}&{JUNE}&bucket=week"
                                "&category_level=minor"))
    # 2026-06-01 is a Monday: five weeks, the last one running into July
    assert [p["period"] for p in body["series"]] == [
        "2026-06-01", "2026-06-08", "2026-06-15", "2026-06-22", "2026-06-29"]
    weeks = [p["current"] for p in body["series"]]
    assert weeks[0] == _counts(3, 4, 0)  # reported 3, 5, 1 (06-03..06-05); accepted 4,1,5,2
    assert weeks[1] == _counts(0, 0, 1) and weeks[2] == _counts(1, 0, 1)
    assert weeks[3] == weeks[4] == _counts()
    # the previous period is the 30 days before, 2026-05-02 – 06-01, in its own weeks
    # (from Monday 04-27): case 4 (Thursday 05-28) in its fifth
    assert body["previous"] == {"from": "2026-05-02", "to": "2026-06-01"}
    assert [p["previous"]["reported"] for p in body["series"]] == [0, 0, 0, 0, 1]
    assert {g["code"] for g in body["by_category"]} == {"T01", "T02"}
    days = leader.ok(leader.get(f"/stats/trends?area_id={tree[D]}&{JUNE}"))
    assert len(days["series"]) == 30 and days["series"][2]["current"] == _counts(1, 1, 0)


def test_scope_rates_and_rankings_are_those_of_performance(api, people, story, tree):
    p = people
    mine = p.dispatcher.ok(p.dispatcher.get(f"/stats/trends?area_id={tree[S1]}"
                                            f"&{JUNE}&bucket=month"))
    assert mine["totals"]["current"] == _counts(3, 3, 2)
    assert {g["code"]: g["current"] for g in mine["by_area"]} == {
        C11: _counts(3, 2, 1), C12: _counts(0, 1, 1)}
    # the other street's area is not theirs: 404, as /stats/performance
    assert_error_shape(p.dispatcher2.get(f"/stats/trends?area_id={tree[S1]}"
                                         f"&{JUNE}"), 404)
    assert_error_shape(p.worker.get(f"/stats/trends?area_id={tree[S1]}&{JUNE}"),
                       403)
    leader = api("district_admin", D)
    body = leader.ok(leader.get(f"/stats/trends?area_id={tree[D]}&{JUNE}"))
    perf = leader.ok(leader.get(f"/stats/performance?area_id={tree[D]}"
                                "&from=2026-06-01T00:00:00Z&to=2026-07-01T00:00:00Z"))
    assert body["rates"] == perf["total"]
    ranked = body["rankings"]["grids"]
    assert sorted(ranked, key=lambda r: r["code"]) == sorted(
        ({**r, "rank": ranked[[x["code"] for x in ranked].index(r["code"])]["rank"]}
         for r in perf["grids"]), key=lambda r: r["code"])
    scores = [r["score"] for r in ranked if r["score"] is not None]
    assert scores == sorted(scores, reverse=True)
    assert [r["rank"] for r in ranked if r["score"] is not None][:1] in ([], [1])
    for bad in ("from=2026-06-02&to=2026-06-01", "from=2025-01-01&to=2026-06-01",
                f"{JUNE}&bucket=year"):
        assert_error_shape(leader.get(f"/stats/trends?area_id={tree[D]}&{bad}"), 422)


def test_reopening_takes_the_closure_back_and_cards_count_on_their_day(
        api, db_session, story, tree):
    leader = api("district_admin", D)
    set_case_times(db_session, story[1], closed_at=None)
    body = leader.ok(leader.get(f"/stats/trends?area_id={tree[D]}&{JUNE}&bucket=month"))
    assert body["totals"]["current"]["closed"] == 1
    # case 2 in a clocked state, past its red time: the sweep gives both cards today
    t = now()
    set_case_times(db_session, story[2], state="in_progress", stage="handle",
                   warn_at=t - timedelta(hours=3), due_at=t - timedelta(hours=2),
                   red_at=t - timedelta(hours=1), escalation=0)
    sweep.sweep(db_session)
    db_session.commit()
    today = t.date()
    query = f"from={today}&to={today + timedelta(days=1)}"
    body = leader.ok(leader.get(f"/stats/trends?area_id={tree[D]}&{query}"))
    assert body["totals"]["current"] == _counts(overdue=1, escalated=1)
    sweep.sweep(db_session)  # nothing new: no second card
    db_session.commit()
    again = leader.ok(leader.get(f"/stats/trends?area_id={tree[D]}&{query}"))
    assert again["totals"] == body["totals"]


def test_the_roll_up_equals_a_scan_and_folds(db_session, story):
    """After the story's inserts, updates and the merge, the roll-up adds up to the cases'
    own milestones; folding keeps the sums and leaves one row per key."""
    def rolled() -> dict:
        t = CaseTrendsDaily
        return {tuple(r[:4]): tuple(r[4:]) for r in db_session.execute(
            sa.select(t.day, t.area_id, t.department_id, t.category_id,
                      *[sa.func.sum(getattr(t, n)) for n in TREND_COUNTS])
            .group_by(t.day, t.area_id, t.department_id, t.category_id)
            .having(sa.or_(*(sa.func.sum(getattr(t, n)) != 0 for n in TREND_COUNTS))))}

    scanned: dict[tuple, list[int]] = {}
    for c in db_session.scalars(sa.select(Case).where(Case.state != "merged")):
        for i, at in enumerate((c.reported_at, c.accepted_at, c.closed_at)):
            if at is not None:
                key = (at.astimezone(UTC).date(), c.area_id,
                       c.department_id, c.category_id)
                scanned.setdefault(key, [0] * 5)[i] += 1
    assert rolled() == {k: tuple(v) for k, v in scanned.items()}
    before = rolled()
    count = sa.select(sa.func.count()).select_from(CaseTrendsDaily)
    assert db_session.scalar(count) > len(before)  # appended differences, unfolded
    trends.compact_trends(db_session)
    db_session.commit()
    assert rolled() == before
    assert db_session.scalar(count) == len(before)
    # the months are the days added up per month, before and after folding them
    monthly = {}
    for (day, *key), sums in before.items():
        row = monthly.setdefault((day.replace(day=1), *key), [0] * 5)
        for i, v in enumerate(sums):
            row[i] += v
    m = CaseTrendsMonthly
    months = {tuple(r[:4]): list(r[4:]) for r in db_session.execute(
        sa.select(m.month, m.area_id, m.department_id, m.category_id,
                  *[sa.func.sum(getattr(m, n)) for n in TREND_COUNTS])
        .group_by(m.month, m.area_id, m.department_id, m.category_id)
        .having(sa.or_(*(sa.func.sum(getattr(m, n)) != 0 for n in TREND_COUNTS))))}
    assert months == monthly
    assert db_session.scalar(sa.select(sa.func.count()).select_from(m)) == len(monthly)


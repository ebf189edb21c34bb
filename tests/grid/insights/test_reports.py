"""Leaders' reports (领导报表): the .xlsx of an area and period equals the API's figures for
the same query (/stats/performance, /warnings/counts); the weekly report reaches the
leaders' inbox with a download that is scoped and audited."""

from __future__ import annotations

import io
from datetime import timedelta

import sqlalchemy as sa
from openpyxl import load_workbook

from grid.cases.models import Case
from grid.insights import reports
from grid.insights.models import LeaderReport
from server import clock
from server.audit import AuditEntry
from server.storage.blobs import blob_store
from tests.conftest import inbox
from tests.fixtures.areas import G111, G121, G211, S1, D
from tests.fixtures.cases import act, report
from tests.fixtures.ledgers import run_jobs
from tests.grid.insights.test_warnings import evaluate, make_indicator


def _rows(book, title: str) -> list[list]:
    return [list(r) for r in book[title].iter_rows(min_row=3, values_only=True)]


def _cases(api, db_session, people, category) -> None:
    for code in (G111, G111, G111, G121, G211):
        report(people.worker if code != G211 else people.worker2, category, code=code)
    first = report(people.worker, category, code=G121)
    act(people.dispatcher, first, "accept")
    late = report(people.worker, category)
    db_session.execute(sa.update(Case).where(Case.id == late["id"]).values(
        overdue=True, escalation=2))
    db_session.commit()
    make_indicator(api("district_admin", D))
    evaluate(db_session, "grid_daily")


def _download(who, path: str):
    response = who.get(path)
    assert response.status_code == 200, response.get_json()
    return load_workbook(io.BytesIO(response.data))


def test_report_figures_equal_the_api(api, db_session, people, category, tree):
    _cases(api, db_session, people, category)
    d = people.dispatcher
    start, end = clock.now() - timedelta(days=1), clock.now() + timedelta(hours=1)
    period = {"start": start.isoformat(), "end": end.isoformat()}
    job = d.ok(d.post("/reports/leaders", {"area_id": tree[S1], **period}), 202)
    assert job["kind"] == "leader_report"
    run_jobs()
    job = d.ok(d.get(f"/jobs/{job['id']}"))
    assert job["state"] == "succeeded", job
    book = _download(d, job["result"]["download"])

    api_perf = d.ok(d.get("/stats/performance", query_string={
        "from": period["start"], "to": period["end"], "area_id": tree[S1]}))
    keys = [k for k, _ in reports.MEASURES]
    [summary] = [r for r in _rows(book, "汇总") if r and r[0] == "汇总"]
    assert summary[1:1 + len(keys)] == [api_perf["total"][k] for k in keys]
    assert api_perf["total"]["reported"] == 6  # 西街道 only: 东街道's case is not counted
    grids = _rows(book, "按网格")
    assert [r[:2 + len(keys)] for r in grids] == \
        [[g["code"], g["name"], *[g[k] for k in keys]] for g in api_perf["grids"]]
    departments = _rows(book, "按部门")
    assert [r[0] for r in departments] == [x["name"] for x in api_perf["departments"]]

    categories = _rows(book, "按类别")
    assert [(r[1], r[3], r[4], r[7], r[8]) for r in categories] == \
        [(category.code, 6, 1, 1, 1)]
    [overdue] = _rows(book, "超期案件")
    [escalated] = _rows(book, "督办案件")
    assert overdue[0] == escalated[0] and escalated[7] == "红牌"

    counts = d.ok(d.get("/warnings/counts", query_string={
        "area_id": tree[S1], "raised_from": period["start"], "raised_to": period["end"]}))
    raised = _rows(book, "预警发布")
    assert len(raised) == counts["total"] == 2  # G111 (4 cases: orange), G121 (2: yellow)
    levels = {"黄色预警": "yellow", "橙色预警": "orange", "红色预警": "red"}
    assert {r[0]: r[1] for r in _rows(book, "汇总") if r and r[0] in levels} == \
        {label: counts["by_level"][level] for label, level in levels.items()}

    # the report is its asker's: another dispatcher of the street may not download it
    other = api("street_dispatcher", S1)
    assert other.get(job["result"]["download"]).status_code == 404
    assert db_session.scalar(sa.select(sa.func.count()).select_from(AuditEntry).where(
        AuditEntry.action == "leader_report_downloaded")) == 1


def test_an_area_out_of_scope_is_refused(people, tree):
    d = people.dispatcher
    now = clock.now()
    response = d.post("/reports/leaders", {"area_id": tree["330183002"],
                                           "start": (now - timedelta(days=7)).isoformat(),
                                           "end": now.isoformat()})
    assert response.status_code == 404


def test_weekly_report_to_the_leaders(api, db_session, people, category, tree):
    _cases(api, db_session, people, category)
    chief = api("district_admin", D)
    # a Monday after this week: the report of the week holding the cases
    today = clock.now().astimezone(clock.local_zone())
    next_monday = today + timedelta(days=7 - today.weekday())
    done = reports.weekly_due(db_session, now=next_monday, store_=blob_store(),
                              weights=dict(accepted=0.25, closure_rate=0.25,
                                           on_time_handling_rate=0.25, no_rework=0.25))
    db_session.commit()
    assert done == {"built": 3}  # the district and its two streets
    built = db_session.scalars(sa.select(LeaderReport).where(
        LeaderReport.kind == "weekly")).all()
    assert {r.area_id for r in built} == {tree[D], tree[S1], tree["330183002"]}
    # once a week: a second run builds nothing
    assert reports.weekly_due(db_session, now=next_monday, store_=blob_store(),
                              weights={}) == {}
    [notice] = inbox(db_session, people.dispatcher.user, "leader_report")
    assert inbox(db_session, chief.user, "leader_report")
    book = _download(people.dispatcher, notice.data["download"])
    [summary] = [r for r in _rows(book, "汇总") if r and r[0] == "汇总"]
    assert summary[1] == 6  # 上报数 of 西街道
    # another street's dispatcher cannot download 西街道's report; the district's admin can
    assert people.dispatcher2.get(notice.data["download"]).status_code == 404
    _download(chief, notice.data["download"])
    listed = people.dispatcher.ok(people.dispatcher.get("/reports/leaders"))
    assert [r["area_id"] for r in listed] == [tree[S1]]

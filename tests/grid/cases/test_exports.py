"""Exports of the console: the queue as filtered (GET /cases/export) and the dashboard's
tables (GET /stats/trends/export) as .xlsx — the same rows as the API, scope and masking
obeyed, text written as text, audited."""

from __future__ import annotations

import io
from datetime import timedelta

import openpyxl
import sqlalchemy as sa

from grid.cases.models import Case
from server.clock import now
from tests.conftest import assert_error_shape
from tests.fixtures.areas import G111, G112, G211, D
from tests.fixtures.cases import act, report
from tests.fixtures.http import audit_rows

XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


def _sheet(response, index: int = 0):
    assert response.status_code == 200, response.get_data()[:300]
    assert response.mimetype == XLSX
    workbook = openpyxl.load_workbook(io.BytesIO(response.get_data()))
    return workbook.worksheets[index]


def _rows(sheet) -> list[dict]:
    values = list(sheet.iter_rows(values_only=True))
    return [dict(zip(values[0], row, strict=True)) for row in values[1:]]


def test_the_queue_as_filtered_with_the_same_rows_as_the_api(people, category, db_session):
    p = people
    ids = [report(p.worker, category, G111)["id"] for _ in range(3)]
    called = report(p.dispatcher, category, G112, contact_name="张三",
                    contact_phone="13812345678",
                    description="=HYPERLINK(\"http://x\",\"点我\") 路灯不亮")
    report(p.worker2, category, G211)  # the other street: never in this export
    first = p.dispatcher.ok(p.dispatcher.get(f"/cases/{ids[0]}"))
    act(p.dispatcher, first, "accept")
    query = "?state=reported&sort=reported_at"
    listed = [c["code"] for c in p.dispatcher.ok(p.dispatcher.get(f"/cases{query}"))]
    response = p.dispatcher.get(f"/cases/export{query}")
    rows = _rows(_sheet(response))
    assert [r["编号"] for r in rows] == listed and len(listed) == 3
    assert response.headers["X-Row-Count"] == "3"
    assert "attachment" in response.headers["Content-Disposition"]
    assert {r["状态"] for r in rows} == {"待受理"}
    mine = next(r for r in rows if r["编号"] == called["code"])
    assert mine["联系人"] == "张三"
    assert mine["联系电话"] != "13812345678" and "13812345678" not in str(rows)
    assert mine["联系电话"] == db_session.scalar(
        sa.select(Case.contact_phone_masked).where(Case.id == called["id"]))
    assert mine["描述"].startswith("'=HYPERLINK")  # text, never a formula
    assert mine["网格编码"] == G112 and mine["大类"] and mine["小类"] == "测试垃圾"
    entry = audit_rows(db_session, action="cases_exported")[-1]
    assert entry.actor_id == p.dispatcher.user.id and entry.changes["rows"] == 3
    assert entry.changes["filters"]["state"] == ["reported"]
    # the other street's dispatcher has only their own case; a resident exports nothing
    other = _rows(_sheet(people.dispatcher2.get("/cases/export")))
    assert len(other) == 1 and other[0]["网格编码"] == G211
    assert_error_shape(p.resident.get("/cases/export"), 403)
    assert_error_shape(p.dispatcher.get("/cases/export?light=blue"), 422)


def test_the_dashboard_tables_equal_the_trends(api, people, category, tree, db_session):
    p = people
    report(p.worker, category, G111)
    leader = api("district_admin", D)
    today = now().date()  # the case was reported today (UTC)
    query = (f"area_id={tree[D]}&from={today - timedelta(days=20)}"
             f"&to={today + timedelta(days=1)}")
    body = leader.ok(leader.get(f"/stats/trends?{query}&bucket=week"))
    response = leader.get(f"/stats/trends/export?{query}&bucket=week")
    workbook = openpyxl.load_workbook(io.BytesIO(response.get_data()))
    assert workbook.sheetnames == ["趋势", "按类别", "按部门", "按区域", "部门排名", "网格排名"]
    series = list(workbook["趋势"].iter_rows(values_only=True))
    assert len(series) == 1 + len(body["series"])
    assert [r[1] for r in series[1:]] == [x["current"]["reported"] for x in body["series"]]
    assert sum(r[1] for r in series[1:]) == body["totals"]["current"]["reported"] >= 1
    grids = list(workbook["网格排名"].iter_rows(values_only=True))
    assert [r[1] for r in grids[1:]] == [g["code"] for g in body["rankings"]["grids"]]
    assert audit_rows(db_session, action="trends_exported")[-1].object_id == str(tree[D])
    assert_error_shape(p.worker.get(f"/stats/trends/export?{query}"), 403)


def test_too_many_rows_is_a_422_naming_the_count(people, category, monkeypatch):
    from grid.cases import exports

    for code in (G111, G112, G111):
        report(people.worker if code == G111 else people.dispatcher, category, code)
    monkeypatch.setattr(exports, "MAX_ROWS", 2)
    response = people.dispatcher.get("/cases/export")
    assert_error_shape(response, 422)
    assert "3 cases" in str(response.get_json()["errors"])
    assert _rows(_sheet(people.dispatcher.get("/cases/export?q=nothing-like-this"))) == []

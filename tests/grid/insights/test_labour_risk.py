"""Labour-dispute risk (劳资纠纷预警) against a hand-computed fixture, through the API.

Organisation A (富春制衣) in grid G111, months m-3 … m0 (m0 = this month):

    month  employees  water  electricity  wage arrears  social insurance  rent
    m-3    100        1000   20000        0             0                 0
    m-2    100        1000   20000        0             0                 0
    m-1    100        1000   20000        50000         8000              0
    m0      70         600   19000        80000         8000              0

plus a 劳资纠纷 (0602) case at its gate and a 婚姻家庭邻里 (0601) one 20 m away this month,
and a stored orange score for m-2. By hand, at the defaults of LabourRiskSettings:
- m-1: 工资拖欠 1 个月 +20, 社保欠缴 1 个月 +10, 近6个月较高风险 1 次 +5 → 35, yellow;
- m0: 工资拖欠 2 个月 +35, 社保欠缴 2 个月 +15, 用工人数下降 30% +10 (70 vs 100),
  用水量下降 40% +8 (600 vs 1000; electricity −5 % adds nothing), 劳资纠纷 1 起 +10,
  其他矛盾纠纷 1 起 +5, 较高风险 1 次 +5 (m-2 orange; m-1 was yellow) → 88, red.
Organisation B, 200 m east, steady figures and a 劳资纠纷 13 months ago: 0, green.
"""

from __future__ import annotations

import io
from datetime import timedelta

import pytest
import sqlalchemy as sa
from openpyxl import load_workbook

from grid.insights import labour
from grid.insights.models import OrganisationRisk
from server.clock import local_today, now
from tests.fixtures.areas import G111, G211
from tests.fixtures.http import at, audit_rows

ROWS_A = {3: (100, 1000, 20000, 0, 0, 0), 2: (100, 1000, 20000, 0, 0, 0),
          1: (100, 1000, 20000, 50000, 8000, 0), 0: (70, 600, 19000, 80000, 8000, 0)}
FIELDS = ("employees", "water_m3", "electricity_kwh", "wage_arrears_yuan",
          "social_insurance_arrears_yuan", "rent_arrears_yuan")
EXPECTED_M0 = [("wage_arrears", "工资拖欠 2 个月", 35),
               ("social_insurance_arrears", "社保欠缴 2 个月", 15),
               ("headcount_drop", "用工人数下降 30%", 10),
               ("water_drop", "用水量下降 40%", 8),
               ("labour_disputes", "近12个月劳资纠纷 1 起", 10),
               ("other_disputes", "近12个月其他矛盾纠纷 1 起", 5),
               ("earlier_high", "近6个月较高风险 1 次", 5)]


def _case(s, code: str, point: dict, when, n: int) -> None:
    s.execute(sa.text("""
        INSERT INTO cases (code, category_id, channel, state, area_id, description, location,
                           reported_at, version)
        SELECT :code, (SELECT id FROM case_categories WHERE code = :cat), 'hotline', 'closed',
               :area, '拖欠工资', ST_SetSRID(ST_MakePoint(:lon, :lat), 4326), :when, 1"""),
        {"code": f"LR-{n}", "cat": code, "area": s.scalar(sa.text(
            "SELECT id FROM areas WHERE code = :c"), {"c": G111}),
         "lon": point["lon"], "lat": point["lat"], "when": when})


@pytest.fixture
def months(db_session) -> dict[int, object]:
    """m0 (this month, first day) … m-3."""
    m0 = local_today().replace(day=1)
    return {i: labour.add_months(m0, -i) for i in range(4)}


@pytest.fixture
def scored(worker, db_session, months):
    M, M0 = months, months[0]
    building = worker.building()
    a = worker.organisation(building_id=building["id"])
    b = worker.organisation(name="富春包装有限公司", location=at(G111, dx=0.00207))
    for i, values in ROWS_A.items():
        worker.ok(worker.put(f"/organisations/{a['id']}/indicators/{M[i].strftime('%Y-%m')}",
                             dict(zip(FIELDS, values, strict=True))))
    worker.ok(worker.put(f"/organisations/{b['id']}/indicators/{M0.strftime('%Y-%m')}",
                         dict(zip(FIELDS, (50, 300, 9000, 0, 0, 0), strict=True))))
    start = labour._local_start(M0) + timedelta(minutes=1)
    _case(db_session, "0602", at(G111), start, 1)
    _case(db_session, "0601", at(G111, dx=0.0002), start, 2)
    _case(db_session, "0602", at(G111, dx=0.00207), now() - timedelta(days=400), 3)
    db_session.add(OrganisationRisk(organisation_id=a["id"], month=M[2], area_id=a["area_id"],
                                    score=45, level="orange", factors=[]))
    db_session.commit()
    assert labour.score_recent_months(db_session) == {M[1].strftime("%Y-%m"): 1,
                                                      M0.strftime("%Y-%m"): 2}
    db_session.commit()
    return {"a": a, "b": b, "building": building}


def test_scores_equal_the_hand_computed_fixture(worker, scored, db_session, months):
    M, M0 = months, months[0]
    month = M0.strftime("%Y-%m")
    rows = worker.ok(worker.get(f"/insights/labour-risks?month={month}"))
    assert [(r["organisation_id"], r["score"], r["level"]) for r in rows] == [
        (scored["a"]["id"], 88, "red"), (scored["b"]["id"], 0, "green")]
    assert [(f["factor"], f["label"], f["points"]) for f in rows[0]["factors"]] == EXPECTED_M0
    assert rows[0]["level_label"] == "高风险" and rows[1]["factors"] == []
    previous = worker.ok(worker.get(f"/insights/labour-risks?month={M[1].strftime('%Y-%m')}"))
    assert [(r["score"], r["level"]) for r in previous] == [(35, "yellow")]
    # what the warnings' labour_risk indicator reads (no actor, the grid of each)
    assessments = labour.risks_for_month(db_session, M0)
    assert [(x.organisation_id, x.area_id, x.score, x.level) for x in assessments] == [
        (scored["a"]["id"], scored["a"]["area_id"], 88, "red"),
        (scored["b"]["id"], scored["b"]["area_id"], 0, "green")]


def test_weights_and_thresholds_are_settings(scored, db_session, months):
    M0 = months[0]
    settings = labour.LabourRiskSettings(wage_arrears_points=(1, 2, 3),
                                         levels=(("red", 90), ("orange", 50), ("yellow", 20)))
    (a, _) = labour.risks_for_month(db_session, M0, settings)
    assert (a.score, a.level) == (88 - 35 + 2, "orange")


def test_series_profile_and_report(worker, scored, db_session, months):
    M, M0 = months, months[0]
    org_id = scored["a"]["id"]
    card = worker.ok(worker.get(f"/insights/labour-risks/{org_id}"))
    assert [(p["month"], p["score"]) for p in card["series"]] == [
        (M[2].strftime("%Y-%m"), 45), (M[1].strftime("%Y-%m"), 35), (M0.strftime("%Y-%m"), 88)]
    assert card["latest"]["level"] == "red"
    assert [i["wage_arrears_yuan"] for i in card["indicators"]] == [0, 0, 50000, 80000]
    assert audit_rows(db_session, action="organisation_risk_read")[-1].object_id == str(org_id)
    profile = worker.ok(worker.get(f"/buildings/{scored['building']['id']}/profile"))
    assert [(r["organisation_id"], r["score"]) for r in profile["labour_risks"]] == [
        (org_id, 88)]
    area = worker.ok(worker.get(f"/areas/{scored['a']['area_id']}/profile"))["labour_risks"]
    assert area["month"] == M0.strftime("%Y-%m")
    assert area["levels"] == {"green": 1, "yellow": 0, "orange": 0, "red": 1}
    assert [(r["organisation_id"], r["score"]) for r in area["riskiest"]] == [(org_id, 88)]
    response = worker.get(f"/insights/labour-risks/{org_id}/report")
    assert response.status_code == 200
    book = load_workbook(io.BytesIO(response.data))
    summary = [[c.value for c in row] for row in book["评估结论"].iter_rows()]
    assert ["风险分", 88] in summary and ["工资拖欠 2 个月", 35] in summary
    series = [[c.value for c in row] for row in book["指标序列"].iter_rows()]
    assert series[-1] == [M0.strftime("%Y-%m"), 70, 600, 19000, 80000, 8000, 0, 88, "高风险"]
    page = worker.get(f"/insights/labour-risks/{org_id}/report?format=html")
    assert page.status_code == 200 and "工资拖欠 2 个月" in page.get_data(as_text=True)
    assert len(audit_rows(db_session, action="organisation_risk_report")) == 2


def test_other_grids_see_nothing(api, scored, months):
    M0 = months[0]
    other = api("grid_worker", G211)
    assert other.ok(other.get(f"/insights/labour-risks?month={M0.strftime('%Y-%m')}")) == []
    for url in (f"/insights/labour-risks/{scored['a']['id']}",
                f"/insights/labour-risks/{scored['a']['id']}/report"):
        assert other.get(url).status_code == 404
    handler = api("department_handler")  # no registry:read
    assert handler.get(f"/insights/labour-risks?month={M0.strftime('%Y-%m')}"
                       ).status_code == 403


def test_disputes_inside_its_building_count_beyond_the_gate_radius(worker, db_session,
                                                                   months):
    """A 劳资纠纷 80 m from the gate but inside the building's footprint counts (+10); one
    80 m away on the other side, outside the footprint, does not."""
    building = worker.building()
    org = worker.organisation(building_id=building["id"])
    gate = at(G111)
    db_session.execute(sa.text(
        "UPDATE buildings SET footprint = ST_Multi(ST_MakeEnvelope(:x0, :y0, :x1, :y1, 4326))"
        " WHERE id = :id"), {"id": building["id"], "x0": gate["lon"] - 0.0001,
                             "y0": gate["lat"] - 0.0001, "x1": gate["lon"] + 0.0012,
                             "y1": gate["lat"] + 0.0001})
    worker.ok(worker.put(f"/organisations/{org['id']}/indicators/"
                         f"{months[0].strftime('%Y-%m')}", {"employees": 10}))
    start = labour._local_start(months[0]) + timedelta(minutes=1)
    _case(db_session, "0602", at(G111, dx=0.00083), start, 11)  # ≈ 80 m east: inside
    _case(db_session, "0602", at(G111, dx=-0.00083), start, 12)  # ≈ 80 m west: outside
    db_session.commit()
    (risk,) = labour.risks_for_month(db_session, months[0], organisation_ids=[org["id"]])
    assert [(f.factor, f.points) for f in risk.factors] == [("labour_disputes", 10)]
    assert (risk.score, risk.level) == (10, "green")

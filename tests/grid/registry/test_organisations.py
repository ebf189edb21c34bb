"""Organisations (实有单位) and their monthly indicators."""

from __future__ import annotations

import pytest

from tests.conftest import assert_error_shape, today_local
from tests.fixtures.areas import G111, G112, G211, NAMES
from tests.fixtures.http import at, audit_rows, total
from tests.fixtures.registry import USCC_A, USCC_B


def _months_ago(n: int) -> str:
    today = today_local()
    index = today.year * 12 + today.month - 1 - n
    return f"{index // 12:04d}-{index % 12 + 1:02d}"


def test_an_organisation_is_recorded_at_its_main_gate(worker, tree):
    building = worker.building()
    org = worker.organisation(uscc=USCC_A, name="富春制衣有限公司", kind="enterprise",
                              industry="制造业", legal_representative="陈某", employees=120,
                              building_id=building["id"], address="江滨路1号",
                              phone="0571-63312345",
                              risk_flags=["nine_small_places", "fire_safety_key",
                                          "fire_safety_key"])
    assert org["area_id"] == tree[G111] and org["building_id"] == building["id"]
    assert org["risk_flags"] == ["fire_safety_key", "nine_small_places"]
    assert org["phone"] == "0571-63312345" and org["uscc"] == USCC_A
    got = worker.get(f"/organisations/{org['id']}")
    assert got.get_json() == org and got.headers["ETag"] == '"1"'


def test_the_same_uscc_twice_is_a_409_pointing_at_the_organisation(worker):
    org = worker.organisation(uscc=USCC_A)
    response = worker.post("/organisations", {"name": "别名", "uscc": USCC_A,
                                              "location": at(G111)})
    body = assert_error_shape(response, 409)
    assert body["existing"]["type"] == "organisation" and body["existing"]["id"] == org["id"]
    other = worker.organisation(uscc=USCC_B)
    response = worker.patch(f"/organisations/{other['id']}", {"uscc": USCC_A, "version": 1})
    assert assert_error_shape(response, 409)["existing"]["id"] == org["id"]
    # without a USCC there is nothing to clash
    worker.organisation(name="无照小店", kind="individual_business")
    worker.organisation(name="另一家无照小店", kind="individual_business")


def test_a_uscc_registered_in_another_grid_names_that_grid_only(api, worker):
    neighbour = api("grid_worker", G112)
    neighbour.organisation(G112, uscc=USCC_A)
    response = worker.post("/organisations", {"name": "同一家", "uscc": USCC_A,
                                              "location": at(G111)})
    body = assert_error_shape(response, 409)
    assert body["existing"] == {"type": "organisation", "area_code": G112,
                                "area_name": NAMES[G112]}


def test_the_building_must_be_one_the_collector_may_see(api, worker):
    theirs = api("grid_worker", G112).building(G112)
    response = worker.post("/organisations", {"name": "x", "location": at(G111),
                                              "building_id": theirs["id"]})
    assert "No such building" in assert_error_shape(response, 422)["errors"]["json"][
        "building_id"][0]


def test_organisations_are_listed_by_kind_industry_and_risk(worker):
    a = worker.organisation(name="甲", kind="enterprise", industry="制造业",
                            risk_flags=["hazardous_chemicals"])
    b = worker.organisation(name="乙", kind="individual_business", industry="餐饮",
                            risk_flags=["nine_small_places", "fire_safety_key"])
    c = worker.organisation(name="丙", kind="social_org", industry="餐饮")

    def ids(query: str) -> list[int]:
        response = worker.get(f"/organisations?{query}")
        assert total(response) == len(response.get_json())
        return [o["id"] for o in worker.ok(response)]

    assert ids("kind=individual_business") == [b["id"]]
    assert ids("industry=餐饮") == [b["id"], c["id"]]
    assert ids("risk_flag=fire_safety_key") == [b["id"]]
    assert ids("risk_flag=hazardous_chemicals") == [a["id"]]
    assert ids("risk_flag=nine_small_places&industry=制造业") == []
    assert ids("q=丙") == [c["id"]]
    assert_error_shape(worker.get("/organisations?risk_flag=arson"), 422)


def test_an_organisation_is_corrected_moved_and_ended(api, tree):
    worker = api("grid_worker", G111, G211)
    org = worker.organisation(employees=10)
    fixed = worker.ok(worker.patch(f"/organisations/{org['id']}",
                                   {"employees": 12, "risk_flags": ["fire_safety_key"],
                                    "location": at(G211), "version": 1}))
    assert fixed["employees"] == 12 and fixed["area_id"] == tree[G211]
    assert fixed["risk_flags"] == ["fire_safety_key"] and fixed["version"] == 2
    ended = worker.ok(worker.post(f"/organisations/{org['id']}/end",
                                  {"reason": "注销", "version": 2}))
    assert ended["end_reason"] == "注销"
    assert worker.ok(worker.get("/organisations")) == []
    history = worker.ok(worker.get(f"/organisations/{org['id']}/history"))
    assert [h["action"] for h in history] == ["organisation_created", "organisation_updated",
                                              "organisation_updated"]
    assert history[1]["changes"]["employees"] == [10, 12]
    assert history[1]["changes"]["risk_flags"] == [[], ["fire_safety_key"]]


# --- monthly indicators --------------------------------------------------------------------


def test_indicators_are_upserted_per_month_and_read_as_a_series(worker, db_session):
    org = worker.organisation()
    url = f"/organisations/{org['id']}/indicators"
    m0, m1, m2 = _months_ago(0), _months_ago(1), _months_ago(2)
    worker.ok(worker.put(f"{url}/{m1}", {"employees": 118, "water_m3": 340.5,
                                         "electricity_kwh": 12000, "wage_arrears_yuan": 0}))
    worker.ok(worker.put(f"{url}/{m2}", {"employees": 120, "wage_arrears_yuan": 0}))
    row = worker.ok(worker.put(f"{url}/{m0}", {"employees": 90,
                                               "wage_arrears_yuan": 152300.5}))
    assert row["month"] == m0 and row["wage_arrears_yuan"] == 152300.5
    assert row["recorded_by"] == worker.user.id
    series = worker.ok(worker.get(url))
    assert [r["month"] for r in series] == [m2, m1, m0]
    assert [r["employees"] for r in series] == [120, 118, 90]
    assert series[1]["water_m3"] == 340.5 and series[1]["electricity_kwh"] == 12000
    assert [r["month"] for r in worker.ok(worker.get(f"{url}?from={m1}"))] == [m1, m0]
    assert [r["month"] for r in worker.ok(worker.get(f"{url}?to={m1}"))] == [m2, m1]
    assert [r["month"] for r in worker.ok(worker.get(f"{url}?from={m1}&to={m1}"))] == [m1]
    # a later correction of one field keeps the others
    fixed = worker.ok(worker.put(f"{url}/{m1}", {"wage_arrears_yuan": 8000}))
    assert (fixed["employees"], fixed["wage_arrears_yuan"]) == (118, 8000)
    changes = audit_rows(db_session, action="organisation_indicators_set")[-1].changes
    assert changes == {"month": m1, "wage_arrears_yuan": [0.0, 8000.0]}


def test_resending_the_same_indicators_is_harmless(worker, db_session):
    org = worker.organisation()
    url = f"/organisations/{org['id']}/indicators/{_months_ago(1)}"
    body = {"employees": 50, "water_m3": 12.3, "wage_arrears_yuan": 1234.5}
    first = worker.ok(worker.put(url, body))
    second = worker.ok(worker.put(url, {"employees": 50, "water_m3": 12.3,
                                        "wage_arrears_yuan": "1234.50"}))
    assert second == first
    assert len(audit_rows(db_session, action="organisation_indicators_set")) == 1
    # money is kept to the fen: a value that rounds to the stored one is the same value
    third = worker.ok(worker.put(url, {"wage_arrears_yuan": 1234.499}))
    assert third == first
    rounded = worker.ok(worker.put(url, {"wage_arrears_yuan": 0.005}))
    assert rounded["wage_arrears_yuan"] == 0.01
    assert len(worker.ok(worker.get(f"/organisations/{org['id']}/indicators"))) == 1


def test_indicator_writes_and_reads_are_audited(worker, db_session):
    org = worker.organisation()
    month = _months_ago(1)
    worker.ok(worker.put(f"/organisations/{org['id']}/indicators/{month}", {"employees": 5}))
    worker.ok(worker.get(f"/organisations/{org['id']}/indicators?from={month}"))
    written = audit_rows(db_session, action="organisation_indicators_set")
    read = audit_rows(db_session, action="organisation_indicators_read")
    assert [(r.actor_id, r.object_type, r.object_id) for r in written + read] == [
        (worker.user.id, "organisation", str(org["id"]))] * 2
    assert written[0].changes == {"month": month, "employees": [None, 5]}
    assert read[0].changes == {"from": month, "to": None, "months": 1}
    # the history shows the change, not the read
    history = worker.ok(worker.get(f"/organisations/{org['id']}/history"))
    assert [h["action"] for h in history] == ["organisation_created",
                                              "organisation_indicators_set"]


@pytest.mark.parametrize("month", ["2026-13", "2026-1", "26-01", "2026-00", "march",
                                   "2026-01-01", "1850-01"])
def test_a_bad_month_is_a_422(worker, month):
    org = worker.organisation()
    response = worker.put(f"/organisations/{org['id']}/indicators/{month}", {"employees": 1})
    assert "month" in assert_error_shape(response, 422)["errors"]["path"]
    response = worker.get(f"/organisations/{org['id']}/indicators?from={month}")
    assert "from" in assert_error_shape(response, 422)["errors"]["query"]


def test_a_future_month_or_an_empty_body_is_refused(worker):
    org = worker.organisation()
    url = f"/organisations/{org['id']}/indicators"
    response = worker.put(f"{url}/{_months_ago(-1)}", {"employees": 1})
    assert "future" in assert_error_shape(response, 422)["errors"]["path"]["month"][0]
    assert_error_shape(worker.put(f"{url}/{_months_ago(0)}", {}), 422)
    for bad in ({"employees": -1}, {"water_m3": -0.5}, {"wage_arrears_yuan": "lots"},
                {"electricity_kwh": "NaN"}, {"colour": 1}):
        assert_error_shape(worker.put(f"{url}/{_months_ago(0)}", bad), 422)
    response = worker.get(f"{url}?from={_months_ago(1)}&to={_months_ago(2)}")
    assert "to" in assert_error_shape(response, 422)["errors"]["query"]


def test_indicators_of_another_grids_organisation_do_not_exist(api, worker, db_session):
    theirs = api("grid_worker", G112).organisation(G112)
    url = f"/organisations/{theirs['id']}/indicators"
    assert_error_shape(worker.put(f"{url}/{_months_ago(1)}", {"employees": 1}), 404)
    assert_error_shape(worker.get(url), 404)
    assert audit_rows(db_session, action="organisation_indicators_set") == []

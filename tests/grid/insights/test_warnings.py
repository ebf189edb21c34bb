"""Early warnings through the API: each indicator kind raises, escalates, de-duplicates
and resolves a warning; the life cycle (acknowledge, resolve, dismiss, to-case) on the
action engine; scope; thresholds per area; statistical thresholds; notices."""

from __future__ import annotations

from datetime import timedelta

import sqlalchemy as sa

from grid.cases.models import Case
from grid.insights import warnings
from grid.insights.models import EarlyWarning, Indicator
from server import clock
from tests.conftest import inbox
from tests.fixtures.areas import C11, G111, G112, G211, S1, D
from tests.fixtures.cases import report


def make_indicator(admin, **fields) -> dict:
    """An indicator of the test district (the district admin's), new cases per grid a day
    unless told."""
    district = admin.ok(admin.get("/areas/by-code/330183"))["id"]
    body = {"code": "grid_daily", "area_id": district, "name": "网格日新增案件",
            "kind": "new_cases", "area_level": "grid", "window_hours": 24, "every_minutes": 60,
            "thresholds": {"yellow": 2, "orange": 3, "red": 5}, **fields}
    return admin.ok(admin.post("/indicators", body), 201)


def evaluate(db_session, code: str, at=None) -> dict:
    indicator = db_session.scalar(sa.select(Indicator).where(Indicator.code == code))
    result = warnings.evaluate(db_session, indicator, at or clock.now())
    db_session.commit()
    return result


def open_warnings(who, **query) -> list[dict]:
    return who.ok(who.get("/warnings", query_string={"open": "true", **query}))


def test_new_cases_raise_escalate_dedupe_resolve(api, db_session, people, category):
    admin = api("district_admin", D)
    make_indicator(admin)
    for _ in range(2):
        report(people.worker, category)
    assert evaluate(db_session, "grid_daily")["raised"] == 1
    [w] = open_warnings(people.dispatcher)
    assert (w["level"], w["value"], w["threshold"], w["area"]["code"]) == \
        ("yellow", 2, 2, G111)
    assert w["record_count"] == 2 and w["state"] == "raised"

    report(people.worker, category)
    assert evaluate(db_session, "grid_daily")["escalated"] == 1
    again = evaluate(db_session, "grid_daily")
    assert again["raised"] == again["escalated"] == 0
    [w2] = open_warnings(people.dispatcher)
    assert (w2["id"], w2["level"], w2["value"]) == (w["id"], "orange", 3)
    assert db_session.scalar(sa.select(sa.func.count()).select_from(EarlyWarning)) == 1

    # the cases age out of the window: the warning resolves itself (指标恢复正常)
    later = clock.now() + timedelta(days=2)
    assert evaluate(db_session, "grid_daily", later)["resolved"] == 1
    assert open_warnings(people.dispatcher) == []
    detail = people.dispatcher.ok(people.dispatcher.get(f"/warnings/{w['id']}"))
    assert detail["state"] == "resolved"
    assert [e["action"] for e in detail["timeline"]] == ["raised", "escalated", "resolved"]


def test_scope_and_records(api, db_session, people, category):
    make_indicator(api("district_admin", D))
    for _ in range(2):
        report(people.worker, category)
    evaluate(db_session, "grid_daily")
    [w] = open_warnings(people.dispatcher)
    assert open_warnings(people.dispatcher2) == []  # 东街道 does not see 西街道's
    assert people.dispatcher2.get(f"/warnings/{w['id']}").status_code == 404
    detail = people.dispatcher.ok(people.dispatcher.get(f"/warnings/{w['id']}"))
    assert {r["type"] for r in detail["records"]} == {"case"} and len(detail["records"]) == 2
    counts = people.dispatcher.ok(people.dispatcher.get("/warnings/counts"))
    assert counts["by_state"]["raised"] == 1 and counts["open_by_level"]["yellow"] == 1


def test_notices_red_is_urgent(api, db_session, people, category):
    chief_headers, staff = api("grid_chief", G111), api("community_staff", C11)
    make_indicator(api("district_admin", D), thresholds={"yellow": 1, "red": 2})
    report(people.worker, category)
    evaluate(db_session, "grid_daily")
    [raised] = inbox(db_session, chief_headers.user, "warning_raised")
    assert not raised.urgent
    report(people.worker, category)
    evaluate(db_session, "grid_daily")
    [red] = inbox(db_session, chief_headers.user, "warning_red")
    assert red.urgent
    assert not inbox(db_session, staff.user, "warning_raised")  # yellow: the grid only
    # red goes up a level too: the community's staff hear of it
    assert inbox(db_session, staff.user, "warning_red")


def test_life_cycle(api, db_session, people, category):
    make_indicator(api("district_admin", D))
    for _ in range(2):
        report(people.worker, category)
    evaluate(db_session, "grid_daily")
    [w] = open_warnings(people.dispatcher)
    d = people.dispatcher
    assert w["actions"] == ["acknowledge", "resolve", "dismiss", "to_case"]
    assert d.post(f"/warnings/{w['id']}/acknowledge", {}).status_code == 428
    assert d.post(f"/warnings/{w['id']}/acknowledge",
                  {"version": w["version"] + 5}).status_code == 412
    ack = d.ok(d.post(f"/warnings/{w['id']}/acknowledge", {"version": w["version"]}))
    assert ack["state"] == "acknowledged"
    again = d.post(f"/warnings/{w['id']}/acknowledge", {"version": ack["version"]})
    assert again.status_code == 409 and "resolve" in again.get_json()["allowed"]
    missing = d.post(f"/warnings/{w['id']}/dismiss", {"version": ack["version"]})
    assert missing.status_code == 422
    gone = d.ok(d.post(f"/warnings/{w['id']}/dismiss",
                       {"version": ack["version"], "reason": "施工临时堆放，已核实"}))
    assert (gone["state"], gone["reason"]) == ("dismissed", "施工临时堆放，已核实")
    # dismissed: not raised again within the window at the same level…
    assert evaluate(db_session, "grid_daily")["raised"] == 0
    # …but raised again when it gets worse
    report(people.worker, category)
    assert evaluate(db_session, "grid_daily")["raised"] == 1
    # a worker (no warning:read nor warning:act) may not act
    [w2] = open_warnings(people.dispatcher)
    assert people.worker.post(f"/warnings/{w2['id']}/resolve",
                              {"version": w2["version"]}).status_code == 403


def test_to_case(api, db_session, people, category):
    make_indicator(api("district_admin", D))
    for _ in range(2):
        report(people.worker, category)
    evaluate(db_session, "grid_daily")
    [w] = open_warnings(people.dispatcher)
    d = people.dispatcher
    done = d.ok(d.post(f"/warnings/{w['id']}/to-case",
                       {"version": w["version"], "category_code": category.code,
                        "attributes": {"size": "large"}}))
    assert done["state"] == "acknowledged" and done["case_id"]
    case = db_session.get(Case, done["case_id"])
    assert case.channel == "other_system" and case.external_ref == f"warning-{w['id']}"
    assert case.area_id == db_session.scalar(
        sa.select(Case.area_id).where(Case.id == w_first_record(d, w)))
    assert done["timeline"][-1]["action"] == "to_case"
    twice = d.post(f"/warnings/{w['id']}/to-case",
                   {"version": done["version"], "category_code": category.code})
    assert twice.status_code == 409


def w_first_record(who, w) -> int:
    return who.ok(who.get(f"/warnings/{w['id']}"))["records"][0]["id"]


def test_area_thresholds_override(api, db_session, people, category, tree):
    admin = api("district_admin", D)
    ind = make_indicator(admin)
    # 北社区 is stricter: one case is already yellow in its grids
    put = admin.put(f"/indicators/{ind['id']}/areas/{tree[C11]}",
                    {"thresholds": {"yellow": 1, "red": 10}})
    assert put.status_code == 201
    report(people.worker, category)  # G111, in 北社区
    report(people.worker2, category, code=G211)  # 东社区: the indicator's own thresholds
    evaluate(db_session, "grid_daily")
    [w] = open_warnings(admin)
    assert (w["area"]["code"], w["level"], w["threshold"]) == (G111, "yellow", 1)
    # a dispatcher cannot tune indicators
    assert people.dispatcher.put(f"/indicators/{ind['id']}/areas/{tree[S1]}",
                                 {"thresholds": {"yellow": 1}}).status_code == 403


def test_statistical_threshold(api, db_session, people, category):
    """A grid well above its own baseline is warned even under the fixed thresholds."""
    admin = api("district_admin", D)
    make_indicator(admin, thresholds={"red": 1000}, statistical={"yellow": 2.0, "red": 4.0},
                   baseline_runs=4)
    base = clock.now()
    # four quiet past runs of G112 (one case each day)
    for day in range(6, 2, -1):
        case = report(people.worker, category, code=G112)
        db_session.execute(sa.update(Case).where(Case.id == case["id"]).values(
            reported_at=base - timedelta(days=day, hours=1)))
        db_session.commit()
        evaluate(db_session, "grid_daily", base - timedelta(days=day) + timedelta(hours=1))
    for _ in range(6):  # today: 6 cases (mean 1, sd floor 1 → red at 5)
        report(people.worker, category, code=G112)
    evaluate(db_session, "grid_daily", clock.now())
    [w] = open_warnings(admin)
    assert (w["area"]["code"], w["level"], w["basis"]) == (G112, "red", "statistical")
    assert w["baseline"] == 1.0 and w["threshold"] == 5.0
    series = admin.ok(admin.get(f"/indicators/{w['indicator']['id']}/series",
                                query_string={"area_id": w["area"]["id"]}))
    assert [p["value"] for p in series["points"]] == [1, 1, 1, 1, 6]


def test_switch_off(api, db_session, people, category):
    admin = api("district_admin", D)
    ind = make_indicator(admin)
    off = admin.ok(admin.patch(f"/indicators/{ind['id']}",
                               {"active": False, "version": ind["version"]}))
    assert off["active"] is False
    indicator = db_session.get(Indicator, ind["id"])
    indicator.next_run_at = None
    db_session.commit()
    for _ in range(3):
        report(people.worker, category)
    assert warnings.evaluate_due(db_session) == {}
    stale = admin.patch(f"/indicators/{ind['id']}", {"active": True,
                                                      "version": ind["version"]})
    assert stale.status_code == 412 and stale.get_json()["current"]["active"] is False

"""GET /me/tasks: due and overdue visits by policy, nearest first, key-person groups hidden
from roles that may not see them, records needing review, scope."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

from geo.crs import wgs84_to_gcj02
from grid.visits.models import VisitPolicy
from tests.conftest import assert_error_shape, today_local
from tests.fixtures.areas import C11, G111, G112, G121, D
from tests.grid.visits.conftest import IN_G111, IN_G112


def _tasks(client, headers, **query) -> dict:
    response = client.get("/me/tasks", headers=headers, query_string=query)
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def _due(body) -> dict[str, dict]:
    return {item["person"]["name"]: item for item in body["visits"]}


def _day(days_from_today: int) -> str:
    return (today_local() + timedelta(days=days_from_today)).isoformat()


def test_due_list_on_a_hand_built_register(client, member, reg):
    headers, worker = member("grid_worker", G111)
    building = reg.building(G111, IN_G111, name="3幢", address="春江路8号")
    home = reg.household(building, unit="2单元", room="301")
    never = reg.person("从未走访", household=home, tags={"elderly_alone": 20})
    reg.person("今天起", grid=G111, tags={"elderly_alone": 0})
    recent = reg.person("三天前", grid=G111, tags={"elderly_alone": 100})
    reg.visit(worker.id, 3, person=recent)
    late = reg.person("十天前", grid=G111, tags={"elderly_alone": 100})
    reg.visit(worker.id, 10, person=late)
    other_home = reg.household(building, room="302")
    reg.person("户走访", household=other_home, tags={"elderly_alone": 100})
    reg.visit(worker.id, 2, household=other_home)  # a visit to the household counts
    ended_tag = reg.person("标签已结束", grid=G111)
    reg.tag(ended_tag, "elderly_alone", 100, end=today_local() - timedelta(days=1))
    reg.person("已迁出", grid=G111, tags={"elderly_alone": 100},
               ended_at=datetime.now(UTC), end_reason="moved_out", status="moved_out")
    reg.person("无频次", grid=G111, tags={"veteran": 100})  # no default, no policy
    reg.person("未开始", grid=G111, tags={"elderly_alone": -5})  # tagged from next week
    newly = reg.person("新标签", grid=G111, tags={"elderly_alone": 2})
    reg.visit(worker.id, 100, person=newly)  # visited long before the tag began
    both = reg.person("两个标签", grid=G111, tags={"elderly_alone": 100, "disabled": 100})
    reg.visit(worker.id, 10, person=both)
    reg.commit()

    body = _tasks(client, headers)
    due = _due(body)
    assert set(due) == {"从未走访", "今天起", "十天前", "新标签", "两个标签"}
    assert body["visits_total"] == 5

    item = due["从未走访"]  # never visited: due at the tag's start
    assert (item["due_at"], item["overdue"], item["days_overdue"]) == (_day(-20), True, 20)
    assert item["last_visit_at"] is None
    assert item["person"] == {"id": never.id, "name": "从未走访", "sex": None, "phone": None,
                              "household_id": home.id}
    assert item["address"] == "春江路8号 3幢 2单元 301"
    assert item["location"] == {"lon": IN_G111[0], "lat": IN_G111[1], "crs": "wgs84"}
    assert item["distance_m"] is None  # no point given
    assert item["tags"] == [{"tag": "elderly_alone", "label": "独居老人", "kind": "care",
                             "interval_days": 7, "due_at": _day(-20)}]

    item = due["今天起"]
    assert (item["due_at"], item["overdue"], item["days_overdue"]) == (_day(0), False, 0)
    item = due["十天前"]  # visited 10 days ago, every 7 days: 3 days overdue
    assert (item["due_at"], item["overdue"], item["days_overdue"]) == (_day(-3), True, 3)
    last = datetime.fromisoformat(item["last_visit_at"])
    assert abs(last - (datetime.now(UTC) - timedelta(days=10))) < timedelta(minutes=1)
    assert due["新标签"]["due_at"] == _day(-2)  # not 93 days overdue: the tag is 2 days old
    # Two groups: the weekly one is due, the monthly one (due in 20 days) is not listed.
    assert [t["tag"] for t in due["两个标签"]["tags"]] == ["elderly_alone"]
    # Without a point: most overdue first.
    assert [i["person"]["name"] for i in body["visits"]] == [
        "从未走访", "十天前", "两个标签", "新标签", "今天起"]


def test_policy_override_by_area_changes_who_is_due(client, member, reg):
    w1, worker = member("grid_worker", G111)
    w2, _ = member("grid_worker", G121)
    staff, _ = member("community_staff", C11)
    district, _ = member("district_admin", D)
    x = reg.person("甲", grid=G111, tags={"elderly_alone": 100})
    y = reg.person("乙", grid=G121, tags={"elderly_alone": 100})
    reg.visit(worker.id, 5, person=x)
    reg.visit(worker.id, 5, person=y)
    reg.commit()
    assert _tasks(client, w1)["visits"] == [] and _tasks(client, w2)["visits"] == []

    response = client.put(f"/visit-policies/{reg.tree[C11]}/elderly_alone", headers=staff,
                          json={"interval_days": 3})
    assert response.status_code == 201, response.get_json()
    item = _due(_tasks(client, w1))["甲"]
    assert (item["days_overdue"], item["tags"][0]["interval_days"]) == (2, 3)
    assert _tasks(client, w2)["visits"] == []  # another community: still weekly

    # The district's policy reaches 乙's community, not 甲's (which has its own).
    client.put(f"/visit-policies/{reg.tree[D]}/elderly_alone", headers=district,
               json={"interval_days": 4})
    assert _due(_tasks(client, w2))["乙"]["days_overdue"] == 1
    assert _due(_tasks(client, w1))["甲"]["days_overdue"] == 2
    # A grid's own policy beats its community's.
    client.put(f"/visit-policies/{reg.tree[G111]}/elderly_alone", headers=staff,
               json={"interval_days": 30})
    assert _tasks(client, w1)["visits"] == []


def _metres(a: tuple[float, float], b: tuple[float, float]) -> float:
    """Great-circle distance on PostGIS's sphere (mean radius 6371008.8 m)."""
    lon1, lat1, lon2, lat2 = map(math.radians, (*a, *b))
    h = (math.sin((lat2 - lat1) / 2) ** 2
         + math.cos(lat1) * math.cos(lat2) * math.sin((lon2 - lon1) / 2) ** 2)
    return 2 * 6371008.8 * math.asin(math.sqrt(h))


def test_nearest_first_from_a_gcj02_point(client, member, reg):
    """The phone sends its AMap (GCJ-02) position. Converted, it is at B; read as WGS-84 it
    would sit right on A, ~500 m away: the order proves the conversion."""
    headers, _ = member("grid_worker", G111)
    b_at = (119.903, 30.016)
    a_at = wgs84_to_gcj02(*b_at)  # where B's GCJ-02 numbers point when misread as WGS-84
    assert 119.90 < a_at[0] < 119.91 and 30.01 < a_at[1] < 30.02  # still in G111
    reg.person("A", household=reg.household(reg.building(G111, a_at)),
               tags={"elderly_alone": 30})
    reg.person("B", grid=G111, lon_lat=b_at, tags={"elderly_alone": 10})
    reg.person("C", grid=G111, tags={"elderly_alone": 50})  # nowhere known: last
    reg.commit()

    here = (b_at[0] + 0.0001, b_at[1])  # about 10 m east of B
    gcj = wgs84_to_gcj02(*here)
    body = _tasks(client, headers, lon=gcj[0], lat=gcj[1], crs="gcj02")
    assert [i["person"]["name"] for i in body["visits"]] == ["B", "A", "C"]
    b, a, c = body["visits"]
    assert math.isclose(b["distance_m"], _metres(here, b_at), abs_tol=0.5)
    assert math.isclose(a["distance_m"], _metres(here, a_at), rel_tol=1e-3)
    assert a["distance_m"] > 300 and c["distance_m"] is None and c["location"] is None
    # Answers in the crs asked for: B's stored WGS-84 point, shown in GCJ-02.
    expected = wgs84_to_gcj02(*b_at)
    assert b["location"]["crs"] == "gcj02"
    assert math.isclose(b["location"]["lon"], expected[0], abs_tol=1e-6)
    assert math.isclose(b["location"]["lat"], expected[1], abs_tol=1e-6)

    # The same numbers as WGS-84 put the phone on A.
    body = _tasks(client, headers, lon=gcj[0], lat=gcj[1])
    assert [i["person"]["name"] for i in body["visits"]] == ["A", "B", "C"]


def test_key_person_groups_are_invisible_to_a_worker(client, member, reg):
    worker, worker_user = member("grid_worker", G111)
    chief, _ = member("grid_chief", G111)
    reg.person("赵一", grid=G111, tags={"community_correction": 40})
    reg.person("钱二", grid=G111, tags={"elderly_alone": 40, "drug_user": 40})
    # Visited 3 days ago: not due for the weekly care visit, but due for the key group,
    # which this grid visits every 2 days.
    quiet = reg.person("孙三", grid=G111, tags={"elderly_alone": 100, "at_risk_youth": 100})
    reg.visit(worker_user.id, 3, person=quiet)
    reg._add(VisitPolicy(area_id=reg.tree[G111], tag="at_risk_youth", interval_days=2))
    reg.commit()

    response = client.get("/me/tasks", headers=worker)
    body = response.get_json()
    assert set(_due(body)) == {"钱二"} and body["visits_total"] == 1
    assert [t["tag"] for t in body["visits"][0]["tags"]] == ["elderly_alone"]
    text = response.get_data(as_text=True)
    for word in ("community_correction", "drug_user", "at_risk_youth", "社区矫正", "吸毒",
                 "重点", '"key"'):
        assert word not in text

    body = _tasks(client, chief)
    due = _due(body)
    assert set(due) == {"赵一", "钱二", "孙三"}
    assert due["赵一"]["tags"] == [{"tag": "community_correction", "label": "社区矫正",
                                       "kind": "key", "interval_days": 30,
                                       "due_at": _day(-40)}]
    assert {t["tag"] for t in due["钱二"]["tags"]} == {"elderly_alone", "drug_user"}
    assert due["孙三"]["due_at"] == _day(-1)


def test_records_needing_review_appear(client, member, reg):
    headers, _ = member("grid_worker", G111)
    near = reg.building(G111, (119.9051, 30.0151), name="近楼", needs_review=True,
                        review_reasons=["gps_accuracy_120m"])
    far = reg.person("待核人员", grid=G111, lon_lat=(119.901, 30.019), needs_review=True,
                     review_reasons=["self_declared"])
    reg.building(G111, IN_G111, name="已核楼")  # reviewed
    reg.building(G112, IN_G112, name="邻格楼", needs_review=True)  # another grid
    gone = reg.household(reg.building(G111, IN_G111, name="旧楼"), needs_review=True)
    gone.ended_at = datetime.now(UTC)
    reg.commit()

    body = _tasks(client, headers, lon=IN_G111[0], lat=IN_G111[1])
    assert [(r["type"], r["id"]) for r in body["reviews"]] == [
        ("building", near.id), ("person", far.id)]  # nearest first
    assert body["reviews_total"] == 2
    first = body["reviews"][0]
    assert first["label"] == "近楼" and first["review_reasons"] == ["gps_accuracy_120m"]
    assert 0 < first["distance_m"] < 20 and first["version"] == 1
    assert body["reviews"][1]["label"] == "待核人员"


def test_scope_isolation_and_who_has_a_task_list(client, member, reg, auth_headers):
    w111, _ = member("grid_worker", G111)
    w112, _ = member("grid_worker", G112)
    chief, _ = member("grid_chief", C11)
    reg.person("一格", grid=G111, tags={"elderly_alone": 10})
    reg.person("二格", grid=G112, tags={"elderly_alone": 10})
    reg.building(G111, IN_G111, needs_review=True)
    reg.commit()
    assert set(_due(_tasks(client, w111))) == {"一格"}
    body = _tasks(client, w112)
    assert set(_due(body)) == {"二格"} and body["reviews"] == []
    assert set(_due(_tasks(client, chief))) == {"一格", "二格"}
    # Roles that do not visit have no visit list (a dispatcher, an admin, a resident).
    dispatcher, _ = member("street_dispatcher", "330183001")
    for headers in (dispatcher, auth_headers("admin"), auth_headers("resident")):
        assert_error_shape(client.get("/me/tasks", headers=headers), 403)
    assert_error_shape(client.get("/me/tasks"), 401)


def test_limit_totals_and_query_validation(client, member, reg):
    headers, _ = member("grid_worker", G111)
    for i in range(3):
        reg.person(f"老人{i}", grid=G111, tags={"elderly_alone": 10 + i})
    reg.commit()
    body = _tasks(client, headers, limit=2)
    assert len(body["visits"]) == 2 and body["visits_total"] == 3 and body["limit"] == 2
    for query in ({"limit": 0}, {"limit": 501}, {"lon": 119.9}, {"lon": 119.9, "lat": 95},
                  {"lon": "nan", "lat": 30}, {"lon": 119.9, "lat": 30, "crs": "utm"}):
        assert_error_shape(client.get("/me/tasks", headers=headers, query_string=query), 422)

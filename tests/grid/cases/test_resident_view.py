"""Who sees how much of a case (issue 14, "Hardening"): "me too" is no key to a case, a
resident sees the resident view of the cases they reported, joined or follow, the
pre-report duplicate lookup, merges counting people, and the platform admin without
case:read."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from grid.cases.models import CaseCategory
from tests.conftest import assert_error_shape
from tests.fixtures.areas import G111
from tests.fixtures.cases import act, photo, report
from tests.fixtures.http import Api, at

STAFF_ONLY = ("reporter_id", "contact_name", "contact_phone", "assignee_id", "department_id",
              "external_ref", "rating_comment", "suggested_department_id")


def _as(who, case: dict) -> dict:
    return who.ok(who.get(f"/cases/{case['id']}"))


def _lookup(who, category, code: str = G111, **query):
    point = at(code)
    params = {"category_id": category.id, "near": f"{point['lon']},{point['lat']}", **query}
    return who.get("/cases/likely-duplicates", query_string=params)


def _handled_case_with_staff_details(p, category, department) -> dict:
    """A case entered at the console with a caller's name, accepted with an internal note,
    dispatched, signed and handled with a result photo, and verified with a photo."""
    case = report(p.dispatcher, category, channel="console", contact_name="李先生",
                  contact_phone="13800138000", description="来电反映垃圾")
    case = act(p.dispatcher, case, "accept", note="内部：来电人情绪激动")
    case = act(p.dispatcher, case, "dispatch", department_id=department.id)
    case = act(p.handler, case, "sign")
    case = act(p.handler, case, "request_extension", reason="内部：需协调绿化处",
               extension_hours=4)
    case = act(p.handler, case, "handle", result="已清理", photo_ids=[photo(p.handler, 7)])
    return act(p.worker, _as(p.worker, case), "verify", photo_ids=[photo(p.worker, 8)])


def test_me_too_gives_the_resident_view_not_the_whole_case(people, category, department):
    """Joining from a point near a case (ids and points are public in Open311) used to
    answer, and from then on show, the caller's name, the reporter's and handler's user ids,
    the staff's internal notes and every photo."""
    p = people
    case = _handled_case_with_staff_details(p, category, department)
    here = {"location": at(G111), "category_id": category.id}
    joined = p.resident2.ok(p.resident2.post(f"/cases/{case['id']}/join", here))
    for shown in (joined, _as(p.resident2, case), *p.resident2.ok(p.resident2.get("/cases"))):
        assert not set(STAFF_ONLY) & set(shown), shown
        assert shown["relation"] == "joined" and shown["department_name"] == department.name
        assert shown["description"] is None  # a caller's own words are not published
        assert shown["result"] == "已清理" and shown["joined_count"] == 1
    timeline = p.resident2.ok(p.resident2.get(f"/cases/{case['id']}/timeline"))
    assert [e["action"] for e in timeline] == ["report", "accept", "dispatch", "sign",
                                               "handle", "verify", "join"]
    assert all("actor_id" not in e and "data" not in e for e in timeline)
    assert "内部" not in str(timeline) and "来电反映垃圾" not in str(timeline)
    assert timeline[4]["note"] == "已清理" and timeline[4]["department_name"] == department.name
    # public photos only: the result's, not the verification's
    result_photo, check_photo = timeline[4]["photo_ids"], timeline[5]["photo_ids"]
    assert len(result_photo) == 1 and check_photo == []
    staff = p.dispatcher.ok(p.dispatcher.get(f"/cases/{case['id']}/timeline"))
    (hidden,) = next(e["photo_ids"] for e in staff if e["action"] == "verify")
    assert p.resident2.get(f"/attachments/{result_photo[0]}").status_code == 200
    assert_error_shape(p.resident2.get(f"/attachments/{hidden}"), 404)
    # nor the staff's requests (who asked, why)
    assert len(p.dispatcher.ok(p.dispatcher.get(f"/cases/{case['id']}/requests"))) == 1
    assert p.resident2.ok(p.resident2.get(f"/cases/{case['id']}/requests")) == []
    # the staff still see the whole case
    whole = _as(p.dispatcher, case)
    assert whole["contact_name"] == "李先生" and whole["reporter_id"] == p.dispatcher.user.id


def test_a_join_must_name_where_the_case_was_offered(people, category):
    """A join names the resident's own report that lists the case, or the lookup (point
    and category) that offered it; a bare point is no longer enough."""
    p = people
    case = report(p.resident, category)
    body = assert_error_shape(p.resident2.post(f"/cases/{case['id']}/join",
                                               {"location": at(G111)}), 422)
    assert "category_id" in body["errors"]["json"]
    other = category.id + 10_000
    assert_error_shape(p.resident2.post(f"/cases/{case['id']}/join", {
        "location": at(G111), "category_id": other}), 404)
    # someone else's report is no way in, nor one that does not list the case
    assert_error_shape(p.resident2.post(f"/cases/{case['id']}/join",
                                        {"report_case_id": case["id"]}), 422)
    far = report(p.resident2, category, "330183001002001")
    assert far["likely_duplicates"] == []
    assert_error_shape(p.resident2.post(f"/cases/{case['id']}/join",
                                        {"report_case_id": far["id"]}), 404)
    mine = report(p.resident2, category)
    assert [d["id"] for d in mine["likely_duplicates"]] == [case["id"]]
    joined = p.resident2.ok(p.resident2.post(f"/cases/{case['id']}/join",
                                             {"report_case_id": mine["id"]}))
    assert joined["relation"] == "joined" and joined["joined_count"] == 1


def test_likely_duplicates_and_own_reports_are_in_the_resident_view(people, category):
    """The report's answer lists its likely duplicates in the resident view (where, what
    state, how many joined — not who reported or what they wrote), and a resident's own
    report is in the resident view too."""
    p = people
    first = report(p.resident, category, description="我家楼下的垃圾")
    second = report(p.resident2, category)
    assert not set(STAFF_ONLY) & set(second)
    assert second["relation"] == "reporter" and second["description"] == "路边有暴露垃圾"
    (dup,) = second["likely_duplicates"]
    assert (dup["id"], dup["category_id"], dup["state_label"]) == (first["id"], category.id,
                                                                   "待受理")
    assert dup["location"]["lon"] == pytest.approx(at(G111)["lon"])
    assert dup["description"] is None and dup["relation"] is None
    assert not set(STAFF_ONLY) & set(dup) and 0 <= dup["distance_m"] < 1
    listed = p.resident.ok(p.resident.get("/cases?reported_by_me=true"))
    assert [c["id"] for c in listed] == [first["id"]]
    assert listed[0]["description"] == "我家楼下的垃圾" and "reporter_id" not in listed[0]


def test_the_pre_report_lookup_offers_nearby_open_cases_to_join(people, category,
                                                                 db_session):
    p = people
    case = report(p.resident, category, description="我家楼下的垃圾")
    offered = p.resident2.ok(_lookup(p.resident2, category))
    assert [c["id"] for c in offered] == [case["id"]]
    assert offered[0]["description"] is None and not set(STAFF_ONLY) & set(offered[0])
    assert p.resident2.ok(_lookup(p.resident2, category, code="330183001002001")) == []
    # a radius narrows the category's own, never widens it
    point = at(G111, dx=40 / 96_000)
    near = f"{point['lon']},{point['lat']}"
    assert len(p.resident2.ok(_lookup(p.resident2, category, near=near))) == 1
    assert p.resident2.ok(_lookup(p.resident2, category, near=f"{near},10")) == []
    assert len(p.resident2.ok(_lookup(p.resident2, category, near=f"{near},5000"))) == 1
    # what it offers can be joined from where the resident stands
    joined = p.resident2.ok(p.resident2.post(f"/cases/{case['id']}/join", {
        "location": at(G111), "category_id": category.id}))
    assert joined["relation"] == "joined"
    # a 大类 is no category to report in; a private one offers residents nothing
    assert_error_shape(_lookup(p.resident2, db_session.get(CaseCategory, category.parent_id)),
                       422)
    category.parent_id = db_session.scalar(sa.select(CaseCategory.id)
                                           .where(CaseCategory.code == "06"))
    db_session.commit()
    assert p.resident2.ok(_lookup(p.resident2, category)) == []
    assert_error_shape(p.handler.get("/cases/likely-duplicates", query_string={
        "category_id": category.id, "near": "119.9,30.0"}), 403)  # no case:report


def test_the_lookup_is_rate_limited_per_user(people, category, app, monkeypatch):
    p = people
    monkeypatch.setitem(app.config, "CASE_LOOKUP_LIMIT", 2)
    case = report(p.resident, category)
    for _ in range(2):
        p.resident2.ok(_lookup(p.resident2, category))
    refused = assert_error_shape(_lookup(p.resident2, category), 429)
    assert refused and _lookup(p.resident2, category).headers.get("Retry-After")
    # joining by location counts as a lookup: no faster probe than looking up
    assert_error_shape(p.resident2.post(f"/cases/{case['id']}/join", {
        "location": at(G111), "category_id": category.id}), 429)
    p.worker.ok(_lookup(p.worker, category))  # another user has their own allowance


def test_a_merge_counts_a_person_who_had_joined_once(people, category):
    """"Me too", then the resident's own report merged into the same case: one person."""
    p = people
    kept = report(p.resident, category)
    own = report(p.resident2, category)
    p.resident2.ok(p.resident2.post(f"/cases/{kept['id']}/join",
                                    {"report_case_id": own["id"]}))
    assert _as(p.dispatcher, kept)["joined_count"] == 1
    act(p.dispatcher, _as(p.dispatcher, own), "merge", into_case_id=kept["id"])
    assert _as(p.dispatcher, kept)["joined_count"] == 1
    # a third report merged in is a second person; a reporterless hotline-like report of
    # the kept case's own reporter counts nobody new
    third = report(p.worker, category)
    act(p.dispatcher, _as(p.dispatcher, third), "merge", into_case_id=kept["id"])
    assert _as(p.dispatcher, kept)["joined_count"] == 2
    again = report(p.resident, category, description="我又报了一次")
    act(p.dispatcher, _as(p.dispatcher, again), "merge", into_case_id=kept["id"])
    assert _as(p.dispatcher, kept)["joined_count"] == 2


def test_a_platform_admin_without_case_read_gets_no_case_data(people, category, api, tree,
                                                              db_session, make_user, login,
                                                              client):
    """The role table gives admin no case:read: no case, list, timeline or photo."""
    p = people
    case = report(p.resident, category, contact_name="王女士", photo_ids=[photo(p.resident)])
    admin = api("admin")
    assert_error_shape(admin.get(f"/cases/{case['id']}"), 404)
    assert_error_shape(admin.get(f"/cases/{case['id']}/timeline"), 404)
    assert_error_shape(admin.get("/cases"), 403)
    assert_error_shape(admin.get("/cases/counts"), 403)
    timeline = p.dispatcher.ok(p.dispatcher.get(f"/cases/{case['id']}/timeline"))
    assert_error_shape(admin.get(f"/attachments/{timeline[0]['photo_ids'][0]}"), 404)
    # nor does its reach stand in for service:manage
    from tests.fixtures.areas import C11
    from tests.fixtures.services import category_id

    assert_error_shape(admin.post("/services", {
        "category_id": category_id(db_session, "clinic"), "area_id": tree[C11],
        "name": "x"}), 403)
    # with the role that grants it, the same account reads cases everywhere
    user = make_user("admin", "district_admin")
    both = Api(client, {"Authorization": f"Bearer {login(user.username)['access_token']}"},
               user)
    assert both.ok(both.get(f"/cases/{case['id']}"))["contact_name"] == "王女士"


def _closed(p, case: dict, department) -> dict:
    """A case taken round the loop to closed."""
    case = act(p.dispatcher, _as(p.dispatcher, case), "accept")
    case = act(p.dispatcher, case, "dispatch", department_id=department.id)
    case = act(p.handler, act(p.handler, case, "sign"), "handle", result="已清理")
    case = act(p.worker, _as(p.worker, case), "verify", photo_ids=[photo(p.worker)])
    return act(p.dispatcher, _as(p.dispatcher, case), "close")


def test_a_staff_reported_case_is_evaluated_by_residents_who_joined_it(
        people, category, department, api, db_session):
    """评价 was only the reporting resident's: a grid worker's case could never be rated.
    Now the residents who joined it evaluate it; one nobody joined closes without a rating,
    and the statistics count the evaluable cases beside the rated ones."""
    from tests.fixtures.areas import D
    from tests.grid.cases.test_stats import _rollup

    p = people
    case = report(p.worker, category)
    p.resident2.ok(p.resident2.post(f"/cases/{case['id']}/join", {
        "location": at(G111), "category_id": category.id}))
    case = _closed(p, case, department)
    lonely = _closed(p, report(p.worker, category, "330183001002001"), department)
    assert "evaluate" not in _as(p.worker, case)["actions"]
    assert_error_shape(p.worker.post(f"/cases/{case['id']}/actions/evaluate",
                                     {"version": case["version"], "rating": 5}), 403)
    assert_error_shape(p.resident.get(f"/cases/{case['id']}"), 404)  # not theirs
    seen = _as(p.resident2, case)
    assert {"evaluate", "reopen"} <= set(seen["actions"])
    rated = act(p.resident2, seen, "evaluate", rating=5, comment="很及时")
    assert (rated["state"], rated["rating"]) == ("evaluated", 5)
    assert _as(p.dispatcher, lonely)["state"] == "closed"
    from datetime import timedelta

    from server.clock import now

    start, end = now() - timedelta(days=2), now() + timedelta(days=2)
    leader = api("district_admin", D)
    total = leader.ok(leader.get("/stats/performance", query_string={
        "from": start.isoformat(), "to": end.isoformat()}))["total"]
    assert (total["closed"], total["evaluable"], total["rated"]) == (2, 1, 1)
    assert total["satisfaction_rate"] == 100.0
    kept, scanned = _rollup(db_session)
    assert kept == scanned

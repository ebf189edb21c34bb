"""The loop walked through the API: every transition, every refusal (409 with the allowed
actions, 403 not yours, 412 stale, 428 no version, 422 missing data), the timeline and the
notifications each step writes."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from grid.cases.categories import suggested_department
from grid.cases.models import Case, CaseCategory
from tests.conftest import assert_error_shape, inbox
from tests.fixtures.cases import act, photo, report
from tests.fixtures.maps import counting


def test_the_whole_loop_from_report_to_evaluation(people, category, department, db_session):
    p = people
    case = report(p.resident, category)
    assert case["state"] == "reported" and case["stage"] == "accept"
    assert case["light"] == "green" and case["code"].startswith("330183")
    assert case["actions"] == ["request_void"]  # a resident may only ask to withdraw it
    assert [n.kind for n in inbox(db_session, p.dispatcher.user)] == ["case_new"]

    case = p.dispatcher.ok(p.dispatcher.get(f"/cases/{case['id']}"))
    assert {"accept", "reject", "merge", "request_void"} <= set(case["actions"])
    case = act(p.dispatcher, case, "accept")
    assert case["state"] == "accepted" and case["stage"] == "dispatch"
    case = act(p.dispatcher, case, "dispatch", department_id=department.id)
    assert (case["state"], case["department_id"]) == ("dispatched", department.id)
    assert "case_dispatched" in [n.kind for n in inbox(db_session, p.handler.user)]

    case = act(p.handler, case, "sign")
    assert (case["state"], case["assignee_id"]) == ("in_progress", p.handler.user.id)
    case = act(p.handler, case, "handle", result="已清理")
    assert case["state"] == "handled" and case["result"] == "已清理"
    refused = act(p.worker, case, "verify", status=422)
    assert "photo_ids" in refused["errors"]["json"]
    case = act(p.worker, case, "verify", photo_ids=[photo(p.worker)])
    assert case["state"] == "verified"
    case = act(p.dispatcher, case, "close")
    assert case["state"] == "closed" and case["closed_at"]
    case = act(p.resident, p.resident.ok(p.resident.get(f"/cases/{case['id']}")), "evaluate",
               rating=5, comment="很及时")
    assert (case["state"], case["rating"]) == ("evaluated", 5)

    timeline = p.resident.ok(p.resident.get(f"/cases/{case['id']}/timeline"))
    assert [e["action"] for e in timeline] == ["report", "accept", "dispatch", "sign", "handle",
                                               "verify", "close", "evaluate"]
    assert [e["to_state"] for e in timeline][-1] == "evaluated"
    # the resident's timeline: no staff member named, the verification's photo kept inside
    assert all("actor_id" not in e for e in timeline) and timeline[5]["photo_ids"] == []
    assert timeline[4]["department_name"] == department.name
    staff = p.dispatcher.ok(p.dispatcher.get(f"/cases/{case['id']}/timeline"))
    assert len(staff[5]["photo_ids"]) == 1 and staff[5]["actor_id"] == p.worker.user.id
    kinds = [n.kind for n in inbox(db_session, p.resident.user)]
    assert kinds.count("case_changed") >= 4  # accepted, dispatched, handled, closed…


def _accepted(p, category, department=None, **fields) -> dict:
    case = report(p.resident, category, **fields)
    case = act(p.dispatcher, p.dispatcher.ok(p.dispatcher.get(f"/cases/{case['id']}")),
               "accept")
    if department is not None:
        case = act(p.dispatcher, case, "dispatch", department_id=department.id)
    return case


def _as(who, case) -> dict:
    return who.ok(who.get(f"/cases/{case['id']}"))


def test_an_illegal_action_is_a_409_naming_what_is_allowed(people, category):
    p = people
    case = _as(p.dispatcher, report(p.resident, category))
    body = assert_error_shape(p.dispatcher.post(
        f"/cases/{case['id']}/actions/close", {"version": case["version"]}), 409)
    assert set(body["allowed"]) == {"accept", "reject", "merge", "request_void"}
    unknown = p.dispatcher.post(f"/cases/{case['id']}/actions/teleport", {"version": 1})
    assert_error_shape(unknown, 404)


def test_version_is_required_and_a_stale_one_gets_412_with_the_case(people, category):
    p = people
    case = _as(p.dispatcher, report(p.resident, category))
    assert_error_shape(p.dispatcher.post(f"/cases/{case['id']}/actions/accept", {}), 428)
    act(p.dispatcher, case, "accept")
    body = assert_error_shape(p.dispatcher.post(f"/cases/{case['id']}/actions/reject",
                                                {"version": case["version"], "reason": "x"}),
                              412)
    assert body["current"]["state"] == "accepted"
    assert body["current"]["version"] > case["version"]
    case = body["current"]
    # If-Match works as well as a version field
    response = p.dispatcher.post(f"/cases/{case['id']}/actions/dispatch",
                                 {"department_id": 999999},
                                 headers={"If-Match": f'"{case["version"]}"'})
    assert "department_id" in assert_error_shape(response, 422)["errors"]["json"]


def test_only_the_right_people_act(people, category, department):
    p = people
    case = _as(p.dispatcher, report(p.resident, category))
    # a resident cannot accept (permission), another street's dispatcher cannot see it
    body = assert_error_shape(p.resident.post(f"/cases/{case['id']}/actions/accept",
                                              {"version": case["version"]}), 403)
    assert body["required"] == "case:accept"
    assert_error_shape(p.dispatcher2.post(f"/cases/{case['id']}/actions/accept",
                                          {"version": case["version"]}), 404)
    case = act(p.dispatcher, case, "accept")
    case = act(p.dispatcher, case, "dispatch", department_id=department.id,
               assignee_id=p.handler.user.id)
    # the worker cannot sign for the department; another handler of it cannot take an
    # assigned case, its head can
    assert_error_shape(p.worker.post(f"/cases/{case['id']}/actions/sign",
                                     {"version": case["version"]}), 403)
    case = act(p.head, _as(p.head, case), "sign")
    assert case["assignee_id"] == p.handler.user.id


def test_missing_data_is_a_422_naming_the_fields(people, category, department, db_session):
    p = people
    case = _as(p.dispatcher, report(p.resident, category))
    body = act(p.dispatcher, case, "reject", status=422)
    assert "reason" in body["errors"]["json"]
    case = act(p.dispatcher, case, "accept")
    category.default_department_id = None  # no route: the dispatcher must name one
    db_session.commit()
    body = act(p.dispatcher, case, "dispatch", status=422)
    assert "department_id" in body["errors"]["json"]


def test_dispatch_follows_the_street_route_then_the_category_default(people, category,
                                                                    department, db_session,
                                                                    tree, app):
    from grid.areas.models import Department

    p = people
    case = _as(p.dispatcher, act(p.dispatcher, _as(p.dispatcher, report(p.resident, category)),
                                 "accept"))
    assert case["suggested_department_id"] == department.id
    row = db_session.get(Case, case["id"])
    with counting(app) as seen:  # read on every dispatcher's GET of a case: one statement
        assert suggested_department(db_session, row) == department.id  # no route: the default
    assert len(seen) == 1
    street_own = Department(code="T-S1-CG", name="西街道城管中队",
                            service_area_id=tree["330183001"])
    db_session.add(street_own)
    db_session.commit()
    response = p.worker.put(f"/case-categories/{category.id}/routes",
                            {"area_id": tree["330183001"], "department_id": street_own.id})
    assert response.status_code == 403  # routes are the dispatchers' (case:dispatch)
    other_street = p.dispatcher2.put(f"/case-categories/{category.id}/routes",
                                     {"area_id": tree["330183001"],
                                      "department_id": street_own.id})
    assert other_street.status_code == 404
    assert p.dispatcher.put(f"/case-categories/{category.id}/routes",
                            {"area_id": tree["330183001"],
                             "department_id": street_own.id}).status_code == 204
    case = _as(p.dispatcher, case)
    assert case["suggested_department_id"] == street_own.id
    assert suggested_department(db_session, row) == street_own.id
    case = act(p.dispatcher, case, "dispatch")
    assert case["department_id"] == street_own.id


def test_rejection_and_the_reporter_hears_of_it(people, category, db_session):
    p = people
    case = _as(p.dispatcher, report(p.resident, category))
    case = act(p.dispatcher, case, "reject", reason="不属于受理范围")
    assert case["state"] == "rejected" and case["light"] is None
    notes = [n for n in inbox(db_session, p.resident.user) if n.kind == "case_changed"]
    assert notes and notes[-1].data["case_id"] == case["id"]
    timeline = p.dispatcher.ok(p.dispatcher.get(f"/cases/{case['id']}/timeline"))
    assert timeline[-1]["note"] == "不属于受理范围"


def test_a_department_returns_a_wrong_dispatch_and_it_is_dispatched_again(people, category,
                                                                          department):
    p = people
    case = _accepted(p, category, department)
    case = act(p.handler, _as(p.handler, case), "return", reason="不属于我局职责")
    assert case["state"] == "returned" and "department_id" not in case  # no longer theirs
    case = _as(p.dispatcher, case)
    assert (case["state"], case["department_id"], case["return_count"]) == \
        ("returned", None, 1)
    assert_error_shape(p.handler.get(f"/cases/{case['id']}"), 404)  # no longer theirs
    case = act(p.dispatcher, _as(p.dispatcher, case), "dispatch", department_id=department.id)
    assert case["state"] == "dispatched"


def test_failed_verification_is_a_rework(people, category, department):
    p = people
    case = act(p.handler, _as(p.handler, _accepted(p, category, department)), "sign")
    case = act(p.handler, case, "handle", result="已处理")
    case = act(p.worker, _as(p.worker, case), "reject_result", reason="垃圾仍在")
    assert (case["state"], case["rework_count"]) == ("in_progress", 1)
    case = act(p.handler, _as(p.handler, case), "handle", result="已彻底清理")
    assert case["state"] == "handled"


def test_a_result_photo_is_required_where_the_category_says_so(people, category, department,
                                                               db_session):
    category.result_photo_required = True
    db_session.commit()
    p = people
    case = act(p.handler, _as(p.handler, _accepted(p, category, department)), "sign")
    body = act(p.handler, case, "handle", result="已处理", status=422)
    assert "photo_ids" in body["errors"]["json"]
    case = act(p.handler, case, "handle", result="已处理", photo_ids=[photo(p.handler)])
    assert case["state"] == "handled"


def test_reopen_within_seven_days_not_after(people, category, department, db_session):
    import sqlalchemy as sa

    from grid.cases.models import Case

    p = people
    case = act(p.handler, _as(p.handler, _accepted(p, category, department)), "sign")
    case = act(p.handler, case, "handle", result="已处理")
    case = act(p.worker, _as(p.worker, case), "verify", photo_ids=[photo(p.worker)])
    case = act(p.dispatcher, _as(p.dispatcher, case), "close")
    case = act(p.resident, _as(p.resident, case), "reopen", reason="又出现了")
    assert (case["state"], case["closed_at"]) == ("accepted", None)
    assert _as(p.dispatcher, case)["rework_count"] == 1
    # closed again, eight days ago: too late to reopen
    case = act(p.dispatcher, _as(p.dispatcher, case), "dispatch", department_id=department.id)
    case = act(p.handler, _as(p.handler, case), "sign")
    case = act(p.handler, case, "handle", result="再次处理")
    case = act(p.worker, _as(p.worker, case), "verify", photo_ids=[photo(p.worker, 1)])
    case = act(p.dispatcher, _as(p.dispatcher, case), "close")
    db_session.execute(sa.update(Case).where(Case.id == case["id"]).values(
        closed_at=Case.closed_at - sa.text("interval '8 days'")))
    db_session.commit()
    body = act(p.resident, _as(p.resident, case), "reopen", reason="还有", status=409)
    assert "7 days" in body["message"]
    # someone else's case: not the reporter
    other = assert_error_shape(p.resident2.post(f"/cases/{case['id']}/actions/reopen",
                                                {"version": 1, "reason": "x"}), 404)
    assert other["code"] == 404


@pytest.mark.parametrize("kind", ["defer", "backlog"])
def test_defer_and_backlog_stop_the_clock_until_resumed(people, category, department, kind):
    p = people
    case = act(p.handler, _as(p.handler, _accepted(p, category, department)), "sign")
    due_before = case["due_at"]
    case = act(p.handler, case, f"request_{kind}", reason="需协调多部门")
    assert case["state"] == "in_progress"
    again = act(p.handler, case, "request_extension", reason="x", extension_hours=4,
                status=409)
    # engine: a 409's `allowed` is what this actor may do now (approval is a dispatcher's)
    assert set(again["allowed"]) == {"handle"}
    # whoever asked cannot approve; a dispatcher of the street can
    case = act(p.dispatcher, _as(p.dispatcher, case), "approve", note="同意")
    assert (case["state"], case["hold_kind"]) == ("on_hold", kind)
    requests = p.handler.ok(p.handler.get(f"/cases/{case['id']}/requests"))
    assert [(r["kind"], r["state"]) for r in requests] == [(kind, "approved")]
    case = act(p.dispatcher, case, "resume")
    assert case["state"] == "in_progress" and case["hold_kind"] is None
    assert case["due_at"] >= due_before


def test_an_extension_moves_the_deadline_and_a_refusal_does_not(people, category, department):
    p = people
    case = act(p.handler, _as(p.handler, _accepted(p, category, department)), "sign")
    case = act(p.handler, case, "request_extension", reason="材料未到", extension_hours=4)
    refused = act(p.dispatcher, _as(p.dispatcher, case), "refuse", reason="时限足够")
    assert refused["due_at"] == case["due_at"]
    case = act(p.handler, _as(p.handler, refused), "request_extension", reason="材料未到",
               extension_hours=7.5)
    approved = act(p.dispatcher, _as(p.dispatcher, case), "approve")
    assert approved["due_at"] > case["due_at"]
    requests = p.dispatcher.ok(p.dispatcher.get(f"/cases/{case['id']}/requests"))
    assert [r["state"] for r in requests] == ["refused", "approved"]


def test_void_needs_someone_else_to_approve(people, category, api):
    p = people
    case = act(p.dispatcher, _as(p.dispatcher, report(p.resident, category)), "request_void",
               reason="重复录入")
    assert_error_shape(p.dispatcher.post(f"/cases/{case['id']}/actions/approve",
                                         {"version": case["version"]}), 403)
    chief = api("street_dispatcher", "330183001")
    case = act(chief, _as(chief, case), "approve")
    assert case["state"] == "voided" and case["actions"] == []


def test_merge_moves_reporters_to_the_kept_case(people, category, db_session):
    p = people
    kept = report(p.resident, category)
    dup = report(p.resident2, category, description="同一处垃圾")
    assert [d["id"] for d in dup["likely_duplicates"]] == [kept["id"]]
    merged = act(p.dispatcher, _as(p.dispatcher, dup), "merge", into_case_id=kept["id"])
    assert (merged["state"], merged["merged_into_id"]) == ("merged", kept["id"])
    kept = _as(p.dispatcher, kept)
    assert kept["joined_count"] == 1
    # the second reporter now follows the kept case: sees it and hears of it
    assert p.resident2.get(f"/cases/{kept['id']}").status_code == 200
    act(p.dispatcher, kept, "accept")
    assert any(n.data.get("case_id") == kept["id"] for n in inbox(db_session, p.resident2.user)
               if n.kind == "case_changed")


def test_me_too_counts_once_and_keeps_the_joiner_informed(people, category, db_session):
    p = people
    case = report(p.resident, category)
    assert p.resident2.get(f"/cases/{case['id']}").status_code == 404
    here = {"location": _at("330183001001001"), "category_id": category.id}
    joined = p.resident2.ok(p.resident2.post(f"/cases/{case['id']}/join", here))
    again = p.resident2.ok(p.resident2.post(f"/cases/{case['id']}/join", here))
    assert joined["joined_count"] == again["joined_count"] == 1
    assert [n.kind for n in inbox(db_session, p.resident.user)] == ["case_joined"]
    act(p.dispatcher, _as(p.dispatcher, case), "accept")
    assert [n.kind for n in inbox(db_session, p.resident2.user)] == ["case_changed"]


def test_a_worker_solves_a_small_problem_on_the_spot(people, category, db_session):
    p = people
    pid = photo(p.worker)
    case = report(p.worker, category, self_handle={"result": "已当场清理", "photo_ids": [pid]})
    assert (case["state"], case["self_handled"], case["channel"]) == \
        ("handled", True, "worker_app")
    assert case["stage"] == "verify"
    # not verified by the one who handled it; a dispatcher of the street does
    assert "verify" not in case["actions"]
    case = act(p.dispatcher, _as(p.dispatcher, case), "verify", photo_ids=[photo(p.dispatcher)])
    assert act(p.dispatcher, case, "close")["state"] == "closed"
    # a resident cannot self-handle, nor a worker outside their grid
    assert_error_shape(p.resident.post("/cases", {
        "category_id": category.id, "location": _at("330183001001001"), "description": "x",
        "attributes": {"size": "small"}, "self_handle": {"result": "ok"}}), 403)
    assert_error_shape(p.worker.post("/cases", {
        "category_id": category.id, "location": _at("330183002001001"), "description": "x",
        "attributes": {"size": "small"}, "self_handle": {"result": "ok"}}), 403)


def _at(code):
    from tests.fixtures.http import at

    return at(code)


def test_intake_validates_category_attributes_and_location(people, category, db_session):
    p = people
    base = {"category_id": category.id, "location": _at("330183001001001"),
            "description": "垃圾"}
    body = assert_error_shape(p.resident.post("/cases", base), 422)
    assert body["errors"]["json"]["attributes"] == {"size": ["Required."]}
    body = assert_error_shape(p.resident.post("/cases", {
        **base, "attributes": {"size": "huge", "bags": "three", "colour": "red"}}), 422)
    assert set(body["errors"]["json"]["attributes"]) == {"size", "bags", "colour"}
    far = {**base, "attributes": {"size": "small"}, "location": {"lon": 120.5, "lat": 30.5}}
    assert "location" in assert_error_shape(p.resident.post("/cases", far), 422)[
        "errors"]["json"]
    parent = {**base, "attributes": {}, "category_id": category.parent_id}
    assert "category_id" in assert_error_shape(p.resident.post("/cases", parent), 422)[
        "errors"]["json"]


def test_a_report_sent_twice_is_stored_once(people, category, db_session):
    import uuid

    p = people
    body = {"client_uuid": str(uuid.uuid4()), "category_id": category.id,
            "location": _at("330183001001001"), "description": "垃圾",
            "attributes": {"size": "large", "bags": 3}}
    first = p.resident.post("/cases", body)
    second = p.resident.post("/cases", body)
    assert (first.status_code, second.status_code) == (201, 200)
    original, replayed = first.get_json(), second.get_json()
    assert (replayed["id"], replayed["code"], replayed["description"]) == \
        (original["id"], original["code"], original["description"])
    changed = p.resident.post("/cases", {**body, "description": "另一件事"})
    assert_error_shape(changed, 409)
    mine = p.resident.ok(p.resident.get("/cases?reported_by_me=true"))
    assert len(mine) == 1
    # neither the replay nor the refused reuse spent a case number: the next code follows
    following = report(p.resident, category)
    assert following["id"] == original["id"] + 1
    assert following["code"][-6:] == f"{original['id'] + 1:06d}"


def test_gcj02_report_lands_in_the_right_grid(people, category):
    from geo import crs

    p = people
    lon, lat = crs.from_wgs84(119.9195, 30.015, "gcj02")  # near G112's east edge
    case = report(p.resident, category, location={"lon": lon, "lat": lat, "crs": "gcj02"})
    grid = p.dispatcher.ok(p.dispatcher.get(f"/areas/{case['area_id']}"))
    assert grid["code"] == "330183001001002"
    assert abs(case["location"]["lon"] - 119.9195) < 1e-6


def test_an_anonymous_reporter_is_hidden_from_handlers(people, category, department):
    p = people
    case = report(p.resident, category, anonymous=True)
    case = act(p.dispatcher, _as(p.dispatcher, case), "accept")
    assert case["reporter_id"] == p.resident.user.id  # dispatchers see who reported
    act(p.dispatcher, case, "dispatch", department_id=department.id)
    seen = _as(p.handler, case)
    assert seen["reporter_id"] is None and seen["anonymous"] is True
    own = _as(p.resident, case)  # the resident view: theirs, without user ids
    assert own["relation"] == "reporter" and "reporter_id" not in own


def test_supervision_is_per_stage(people, category, department, db_session):
    """A yellow card for late signing does not follow the case into handling."""
    from datetime import timedelta

    from grid.cases import sweep
    from server.clock import now
    from tests.fixtures.cases import set_case_times

    p = people
    case = _accepted(p, category, department)
    past = now() - timedelta(days=1)
    set_case_times(db_session, case["id"], warn_at=past, due_at=past, red_at=past)
    sweep.sweep(db_session)
    db_session.commit()
    db_session.expire_all()
    late = _as(p.handler, case)
    assert (late["escalation"], late["overdue"], late["light"]) == (2, True, "red")
    signed = act(p.handler, late, "sign")
    assert (signed["escalation"], signed["overdue"], signed["stage"]) == (0, False, "handle")
    assert signed["light"] == "green"


def test_only_a_case_near_you_can_be_joined(people, category, db_session):
    """Joining is no way to read arbitrary cases: the case must be a likely duplicate of
    where the resident stands, and never of a private category (矛盾纠纷)."""
    p = people
    case = report(p.resident, category)
    # another grid, ~1 km away
    far = {"location": _at("330183001002001"), "category_id": category.id}
    assert_error_shape(p.resident2.post(f"/cases/{case['id']}/join", far), 404)
    assert_error_shape(p.resident2.get(f"/cases/{case['id']}"), 404)
    category.parent_id = db_session.scalar(sa.select(CaseCategory.id)
                                           .where(CaseCategory.code == "06"))
    db_session.commit()
    dispute = report(p.resident, category, description="邻里纠纷")
    near = {"location": _at("330183001001001"), "category_id": category.id}
    assert_error_shape(p.resident2.post(f"/cases/{dispute['id']}/join", near), 404)
    other = report(p.resident2, category, description="又一起纠纷")
    assert other["likely_duplicates"] == []  # residents do not learn of others' disputes


def test_any_case_the_duplicate_rule_finds_can_be_joined_not_only_the_ten_nearest(
        people, category):
    from tests.fixtures.http import at

    p = people
    metre = 1 / 96_000  # degrees of longitude at 30°N, near enough
    cases = [report(p.resident, category, location=at("330183001001001", dx=2 * i * metre))
             for i in range(1, 12)]  # 2 m, 4 m, … 22 m east: all within the 50 m rule
    farthest = cases[-1]
    here = {"location": at("330183001001001"), "category_id": category.id}
    listed = report(p.resident2, category, **here)["likely_duplicates"]
    assert len(listed) == 10 and farthest["id"] not in {d["id"] for d in listed}
    joined = p.resident2.ok(p.resident2.post(f"/cases/{farthest['id']}/join", here))
    assert joined["joined_count"] == 1
    too_far = {"location": at("330183001001001", dx=-60 * metre),
               "category_id": category.id}  # 80 m from it
    assert_error_shape(p.resident2.post(f"/cases/{cases[-2]['id']}/join", too_far), 404)


def test_a_worker_living_elsewhere_works_only_in_their_grid(people, category, tree,
                                                             db_session, make_user, login,
                                                             client):
    """Living in a community (a resident membership) gives a grid worker no powers there."""
    from grid.areas import memberships as area_memberships
    from grid.demo import SYSTEM
    from tests.fixtures.http import Api

    p = people
    case = report(p.resident, category, "330183001002001")  # in G121
    user = make_user("grid_worker", "resident")
    for code, role in (("330183001001001", "grid_worker"), ("330183001002", "resident")):
        area_memberships.add_membership(db_session, SYSTEM, {
            "user_id": user.id, "area_id": tree[code], "role": role})
    db_session.commit()
    token = login(user.username)["access_token"]
    both = Api(client, {"Authorization": f"Bearer {token}"}, user)
    assert_error_shape(both.get(f"/cases/{case['id']}"), 404)
    mine = report(both, category)  # in G111, their grid
    assert both.ok(both.get(f"/cases/{mine['id']}"))["id"] == mine["id"]


def test_the_timeline_keeps_an_anonymous_reporter_anonymous(people, category, department):
    p = people
    case = report(p.resident, category, anonymous=True)
    act(p.dispatcher, _as(p.dispatcher, case), "accept")
    act(p.dispatcher, _as(p.dispatcher, case), "dispatch", department_id=department.id)
    seen = p.handler.ok(p.handler.get(f"/cases/{case['id']}/timeline"))
    assert [e["actor_id"] for e in seen][0] is None
    assert p.resident.user.id not in [e["actor_id"] for e in seen]
    full = p.dispatcher.ok(p.dispatcher.get(f"/cases/{case['id']}/timeline"))
    assert full[0]["actor_id"] == p.resident.user.id


def test_a_self_handled_case_sent_back_is_redone_by_the_grid(people, category):
    p = people
    case = report(p.worker, category, self_handle={"result": "已清理"})
    case = act(p.dispatcher, _as(p.dispatcher, case), "reject_result", reason="还有垃圾")
    assert (case["state"], case["department_id"]) == ("in_progress", None)
    case = act(p.worker, _as(p.worker, case), "handle", result="已彻底清理")
    assert case["state"] == "handled"

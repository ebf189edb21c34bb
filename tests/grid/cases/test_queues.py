"""Who sees which cases (GET /cases, /cases/{id}, /cases/counts) and the queue's filters.

Scope: a grid worker sees their grid's cases (another grid's case does not exist for
them: 404 on its detail, timeline and actions); a street's dispatcher sees every grid of
the street and nothing of the other street; a department's handler sees the cases
dispatched to the department, not those still being triaged; a resident sees the cases
they reported or joined and no one else's.

Filters: state (a comma list), open, category (a 大类 includes its 小类), area subtree,
department, assigned to me, reported by me, bbox and near — in WGS-84 or GCJ-02 — and the
sort orders; /cases/counts gives the per-state badges under the same filters, and
X-Pagination's total counts what matches.
"""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from geo import crs
from grid.cases.models import CaseCategory, CaseFollower
from tests.conftest import assert_error_shape
from tests.fixtures.areas import BOXES, C12, G111, G112, G121, G211, G212, S1
from tests.fixtures.cases import act, report
from tests.fixtures.http import at, total


def _ids(who, query: str = "") -> list[int]:
    return [c["id"] for c in who.ok(who.get(f"/cases{query}"))]


@pytest.fixture
def cases(people, category):
    """One case in each of G111 (by the resident), G112, G121 (by the street's dispatcher)
    and G211 (by the other street's worker)."""
    p = people
    return {G111: report(p.resident, category, G111),
            G112: report(p.dispatcher, category, G112),
            G121: report(p.dispatcher, category, G121),
            G211: report(p.worker2, category, G211)}


# --- scope ---------------------------------------------------------------------------------


def test_a_worker_sees_their_grid_only(people, cases):
    worker = people.worker  # of G111
    assert _ids(worker) == [cases[G111]["id"]]
    other = cases[G211]
    for url in (f"/cases/{other['id']}", f"/cases/{other['id']}/timeline",
                f"/cases/{other['id']}/requests"):
        assert_error_shape(worker.get(url), 404)
    for action in ("accept", "request_void", "verify"):
        assert_error_shape(worker.post(f"/cases/{other['id']}/actions/{action}",
                                       {"version": other["version"], "reason": "x"}), 404)
    assert_error_shape(worker.post(f"/cases/{other['id']}/follow", {}), 404)
    assert worker.ok(worker.get(f"/cases/{cases[G111]['id']}"))["id"] == cases[G111]["id"]


def test_a_dispatcher_sees_their_street(people, cases):
    s1 = {cases[G111]["id"], cases[G112]["id"], cases[G121]["id"]}
    assert set(_ids(people.dispatcher)) == s1
    assert _ids(people.dispatcher2) == [cases[G211]["id"]]
    assert_error_shape(people.dispatcher2.get(f"/cases/{cases[G111]['id']}"), 404)
    refused = act(people.dispatcher2, cases[G111], "accept", status=404)
    assert refused["code"] == 404
    assert people.dispatcher.ok(people.dispatcher.get(f"/cases/{cases[G111]['id']}"))[
        "state"] == "reported"  # untouched


def test_a_handler_sees_what_was_dispatched_to_their_department(people, cases, department):
    p = people
    assert _ids(p.handler) == []
    assert_error_shape(p.handler.get(f"/cases/{cases[G112]['id']}"), 404)
    case = act(p.dispatcher, p.dispatcher.ok(p.dispatcher.get(f"/cases/{cases[G112]['id']}")),
               "accept")
    assert _ids(p.handler) == []  # accepted, not yet dispatched
    act(p.dispatcher, case, "dispatch", department_id=department.id)
    assert _ids(p.handler) == _ids(p.head) == [case["id"]]
    assert p.handler.ok(p.handler.get(f"/cases/{case['id']}"))["actions"] == [
        "sign", "return", "request_extension", "request_defer", "request_backlog"]


def test_a_resident_sees_their_own_and_joined_cases(people, cases, category):
    p = people
    mine = cases[G111]["id"]  # reported by p.resident
    assert _ids(p.resident, "?reported_by_me=true") == [mine]
    # a case in the other street, which the resident joins ("me too")
    joined = report(p.dispatcher2, category, G212, address="东街9号")["id"]
    assert_error_shape(p.resident.get(f"/cases/{joined}"), 404)
    p.resident.ok(p.resident.post(f"/cases/{joined}/join", {"location": at(G212),
                                                           "category_id": category.id}))
    seen = _ids(p.resident)
    assert mine in seen and joined in seen and cases[G211]["id"] not in seen
    assert p.resident.ok(p.resident.get(f"/cases/{joined}"))["joined_count"] == 1
    assert_error_shape(p.resident.get(f"/cases/{cases[G211]['id']}"), 404)
    assert _ids(p.resident2, "?reported_by_me=true") == []


def test_a_resident_does_not_see_the_neighbours_cases(people, cases):
    p = people
    # cases[G112] was reported by the dispatcher in the resident's own community: the
    # resident's membership says where they live, not what they may read
    assert _ids(p.resident) == [cases[G111]["id"]]
    assert_error_shape(p.resident.get(f"/cases/{cases[G112]['id']}"), 404)
    assert_error_shape(p.resident2.get(f"/cases/{cases[G111]['id']}"), 404)
    assert _ids(p.resident2) == []


# --- filters -------------------------------------------------------------------------------


def test_state_open_and_counts(people, cases, department):
    p = people
    a = act(p.dispatcher, p.dispatcher.ok(p.dispatcher.get(f"/cases/{cases[G111]['id']}")),
            "accept")
    act(p.dispatcher, p.dispatcher.ok(p.dispatcher.get(f"/cases/{cases[G112]['id']}")),
        "reject", reason="不属于受理范围")
    d = act(p.dispatcher, a, "dispatch", department_id=department.id)
    assert _ids(p.dispatcher, "?state=dispatched") == [d["id"]]
    assert sorted(_ids(p.dispatcher, "?state=dispatched,reported")) == sorted(
        [d["id"], cases[G121]["id"]])
    assert sorted(_ids(p.dispatcher, "?open=true")) == sorted([d["id"], cases[G121]["id"]])
    assert_error_shape(p.dispatcher.get("/cases?state=lost"), 422)

    counts = p.dispatcher.ok(p.dispatcher.get("/cases/counts"))
    assert counts == {"counts": {"dispatched": 1, "rejected": 1, "reported": 1}, "total": 3}
    # the badges ignore the state filter but keep the others
    assert p.dispatcher.ok(p.dispatcher.get(f"/cases/counts?state=reported&area_id="
                                            f"{cases[G121]['area_id']}")) == \
        {"counts": {"reported": 1}, "total": 1}
    assert p.dispatcher2.ok(p.dispatcher2.get("/cases/counts")) == \
        {"counts": {"reported": 1}, "total": 1}


def test_the_totals_count_every_visible_case_once(people, cases, category, db_session):
    """X-Pagination and the badges count the actor's areas and, apart, their own cases
    outside them: a case the dispatcher reported in their street counts once, one they
    follow in the other street is added, a resident's joined case too."""
    p = people
    # G112 and G121 were reported by the dispatcher (reporter and follower of both)
    pages = p.dispatcher.get("/cases?page_size=1")
    assert total(pages) == 3 and len(pages.get_json()) == 1
    db_session.add(CaseFollower(case_id=cases[G211]["id"], user_id=p.dispatcher.user.id,
                                kind="follower"))
    db_session.commit()
    assert total(p.dispatcher.get("/cases?page_size=1")) == 4
    assert set(_ids(p.dispatcher)) == {c["id"] for c in cases.values()}
    assert p.dispatcher.ok(p.dispatcher.get("/cases/counts")) == \
        {"counts": {"reported": 4}, "total": 4}
    joined = report(p.dispatcher2, category, G212, address="东街9号")["id"]
    p.resident.ok(p.resident.post(f"/cases/{joined}/join", {"location": at(G212),
                                                           "category_id": category.id}))
    assert total(p.resident.get("/cases")) == 2
    assert p.resident.ok(p.resident.get("/cases/counts")) == \
        {"counts": {"reported": 2}, "total": 2}


def test_category_area_and_department(people, cases, category, department, db_session, tree):
    p = people
    hawker = db_session.scalar(sa.select(CaseCategory).where(CaseCategory.code == "0501"))
    other = report(p.dispatcher, hawker, G111, attributes={}, description="游商占道")
    parent = category.parent_id  # 01 市容环境
    s1 = sorted([cases[G111]["id"], cases[G112]["id"], cases[G121]["id"]])
    assert sorted(_ids(p.dispatcher, f"?category_id={parent}")) == s1
    assert sorted(_ids(p.dispatcher, f"?category_id={category.id}")) == s1
    assert _ids(p.dispatcher, f"?category_id={hawker.parent_id}") == [other["id"]]
    assert _ids(p.dispatcher, f"?category_id={hawker.id}") == [other["id"]]

    assert _ids(p.dispatcher, f"?area_id={tree[C12]}") == [cases[G121]["id"]]
    assert sorted(_ids(p.dispatcher, f"?area_id={tree[S1]}")) == sorted(s1 + [other["id"]])
    # another street's area is not found, rather than silently empty
    assert_error_shape(p.dispatcher.get(f"/cases?area_id={tree[G211]}"), 404)

    case = act(p.dispatcher, p.dispatcher.ok(p.dispatcher.get(f"/cases/{other['id']}")),
               "accept")
    case = act(p.dispatcher, case, "dispatch", department_id=department.id)
    assert _ids(p.dispatcher, f"?department_id={department.id}") == [case["id"]]
    # assigned to me: the department's open queue before signing, the signer's after
    assert _ids(p.handler, "?assigned_to_me=true") == [case["id"]]
    act(p.head, case, "sign")
    assert _ids(p.head, "?assigned_to_me=true") == [case["id"]]
    assert _ids(p.handler, "?assigned_to_me=true") == []
    assert _ids(p.handler) == [case["id"]]  # still the department's case


def test_reported_by_me(people, cases):
    assert sorted(_ids(people.dispatcher, "?reported_by_me=true")) == sorted(
        [cases[G112]["id"], cases[G121]["id"]])
    assert _ids(people.worker2, "?reported_by_me=true") == [cases[G211]["id"]]


def _centre(code: str) -> tuple[float, float]:
    x0, y0, x1, y1 = BOXES[code]
    return (x0 + x1) / 2, (y0 + y1) / 2


def test_bbox_and_near_in_wgs84_and_gcj02(people, cases):
    p = people
    x0, y0, x1, y1 = BOXES[G111]
    assert _ids(p.dispatcher, f"?bbox={x0},{y0},{x1},{y1}") == [cases[G111]["id"]]
    lon, lat = _centre(G112)
    assert _ids(p.dispatcher, f"?near={lon},{lat},100") == [cases[G112]["id"]]
    assert _ids(p.dispatcher, f"?near={lon + 0.003},{lat},100") == []  # ~290 m east

    # the same point as AMap reports it (GCJ-02) finds the same case
    glon, glat = crs.wgs84_to_gcj02(lon, lat)
    assert _ids(p.dispatcher, f"?near={glon},{glat},30&crs=gcj02") == [cases[G112]["id"]]
    # …and read as WGS-84 it is hundreds of metres off
    assert _ids(p.dispatcher, f"?near={glon},{glat},30") == []
    a, b = crs.wgs84_to_gcj02(x0, y0), crs.wgs84_to_gcj02(x1, y1)
    assert _ids(p.dispatcher, f"?bbox={a[0]},{a[1]},{b[0]},{b[1]}&crs=gcj02") == \
        [cases[G111]["id"]]

    # scope still applies inside the box
    everything = f"?bbox={BOXES[G111][0]},{BOXES[G121][1]},{BOXES[G211][2]},{y1}"
    assert cases[G211]["id"] not in _ids(p.dispatcher, everything)
    for bad in ("?bbox=1,2,3", "?bbox=119.95,30.0,119.90,30.02", "?near=119.9,30.0,0",
                "?near=119.9,30.0,60000", "?near=119.9,95,10", "?crs=mars"):
        assert_error_shape(p.dispatcher.get(f"/cases{bad}"), 422)


def test_sort_and_pagination(people, cases, db_session):
    from tests.fixtures.cases import set_case_times, utc

    p = people
    s1 = [cases[G111], cases[G112], cases[G121]]
    for case, when in zip(s1, ("2026-03-01T09:00:00+08:00", "2026-03-03T09:00:00+08:00",
                                "2026-03-02T09:00:00+08:00"), strict=True):
        set_case_times(db_session, case["id"], reported_at=utc(when))
    newest_first = [cases[G112]["id"], cases[G121]["id"], cases[G111]["id"]]
    assert _ids(p.dispatcher) == newest_first
    assert _ids(p.dispatcher, "?sort=-reported_at") == newest_first
    assert _ids(p.dispatcher, "?sort=reported_at") == newest_first[::-1]

    response = p.dispatcher.get("/cases?page_size=2&page=1")
    assert total(response) == 3 and len(response.get_json()) == 2
    page2 = p.dispatcher.get("/cases?page_size=2&page=2")
    assert total(page2) == 3 and [c["id"] for c in page2.get_json()] == newest_first[2:]
    assert total(p.dispatcher.get("/cases?state=reported&page_size=1")) == 3
    assert total(p.worker.get("/cases")) == 1


def test_the_readme_names_the_queue_filters_as_the_api_does(client):
    """The README's queue paragraph named filters `category`, `area`, `department` the API
    does not take (`category_id`…): the names it lists are exactly GET /cases's query
    parameters (the pager's and `crs` apart)."""
    import re
    from pathlib import Path

    readme = (Path(__file__).parents[3] / "README.md").read_text(encoding="utf-8")
    paragraph = readme[readme.index("`GET /cases` is the queue"):
                       readme.index("`GET /cases/counts`")]
    named = {re.split(r"[=/]", name)[0] for name in re.findall(r"`([a-z_/=,]+)`", paragraph)}
    spec = client.get("/api/openapi.json").get_json()
    params = {p["name"] for p in spec["paths"]["/cases"]["get"]["parameters"]
              if p["in"] == "query"}
    assert named - {"crs"} == params - {"page", "page_size", "crs"}


# --- the console's filters (issue 17) ------------------------------------------------------


def test_lights_text_and_the_console_sorts(people, cases, db_session):
    """`light` takes several colours (and `none`: no clock); `q` finds a case by its number
    or by words of its description or address; `-light` puts red first, `due_at` the
    soonest deadline first and `-due_at` the latest (no deadline last either way)."""
    from datetime import timedelta

    from server.clock import now
    from tests.fixtures.cases import set_case_times

    p, t = people, now()
    red, yellow, green = cases[G111], cases[G112], cases[G121]
    set_case_times(db_session, red["id"], warn_at=t - timedelta(hours=2),
                   due_at=t - timedelta(hours=1))
    set_case_times(db_session, yellow["id"], warn_at=t - timedelta(hours=1),
                   due_at=t + timedelta(hours=1))
    set_case_times(db_session, green["id"], warn_at=t + timedelta(hours=1),
                   due_at=t + timedelta(hours=2))
    assert set(_ids(p.dispatcher, "?light=red,yellow")) == {red["id"], yellow["id"]}
    assert _ids(p.dispatcher, "?light=green") == [green["id"]]
    assert _ids(p.dispatcher, "?light=none") == []
    set_case_times(db_session, green["id"], warn_at=None, due_at=None)
    assert _ids(p.dispatcher, "?light=none") == [green["id"]]
    assert _ids(p.dispatcher, "?sort=-light") == [red["id"], yellow["id"], green["id"]]
    assert _ids(p.dispatcher, "?sort=light") == [green["id"], yellow["id"], red["id"]]
    assert _ids(p.dispatcher, "?sort=due_at") == [red["id"], yellow["id"], green["id"]]
    assert _ids(p.dispatcher, "?sort=-due_at") == [yellow["id"], red["id"], green["id"]]
    assert_error_shape(p.dispatcher.get("/cases?light=blue"), 422)

    db_session.execute(sa.text("UPDATE cases SET description = '井盖缺失 危险', "
                               "address = '西湖路5号' WHERE id = :id"), {"id": yellow["id"]})
    db_session.commit()
    assert _ids(p.dispatcher, "?q=井盖") == [yellow["id"]]
    assert _ids(p.dispatcher, "?q=西湖路 危险") == [yellow["id"]]  # every word, either field
    assert _ids(p.dispatcher, "?q=井盖 江滨路") == []
    assert _ids(p.dispatcher, f"?q={red['code']}") == [red["id"]]
    assert _ids(p.dispatcher, "?q=%25") == []  # a LIKE wildcard is a plain character
    assert _ids(p.worker2, "?q=井盖") == []  # the scope still applies
    counted = p.dispatcher.ok(p.dispatcher.get("/cases/counts?q=井盖"))
    assert counted == {"counts": {"reported": 1}, "total": 1}

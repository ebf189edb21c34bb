"""Recording visits: target in scope, GPS in the visitor's grids, idempotent creates, audit,
immutability except the follow-up's completion, listing and scope."""

from __future__ import annotations

import io
import uuid
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from PIL import Image

from server.audit import AuditEntry
from tests.conftest import assert_error_shape
from tests.fixtures.areas import C11, G111, G112
from tests.fixtures.http import total
from tests.grid.visits.conftest import IN_G111, IN_G112, IN_G121, point, visits_count


def _body(**kw) -> dict:
    body = {"type": "care", "content": "老人身体状况良好", "location": point(*IN_G111)}
    body.update(kw)
    return body


def _upload_photo(client, headers, colour: str) -> int:
    out = io.BytesIO()
    Image.new("RGB", (8, 8), colour).save(out, "PNG")
    response = client.post("/attachments", headers=headers, content_type="multipart/form-data",
                           data={"file": (io.BytesIO(out.getvalue()), "p.png", "image/png")})
    assert response.status_code == 201, response.get_json()
    return response.get_json()["id"]


def test_create_visit_to_a_person(client, member, reg, db_session):
    headers, worker = member("grid_worker", G111)
    building = reg.building(G111, IN_G111)
    elder = reg.person("王秀英", household=reg.household(building))
    reg.commit()
    photos = [_upload_photo(client, headers, "red"), _upload_photo(client, headers, "blue")]

    response = client.post("/visits", headers=headers, json=_body(
        person_id=elder.id, follow_up="下周复查燃气管道", follow_up_due="2026-12-01",
        photo_ids=photos, location=point(*IN_G111, accuracy_m=8, device_id="phone-1")))
    assert response.status_code == 201, response.get_json()
    body = response.get_json()
    assert body["target"] == {"type": "person", "id": elder.id}
    assert body["area_id"] == reg.tree[G111] and body["worker_id"] == worker.id
    assert body["type"] == "care" and body["type_label"] == "关爱"
    assert body["photo_ids"] == photos and body["follow_up_done"] is False
    # The photos are now the visit's: listed with it, and not linkable to anything else.
    listed = client.get(f"/attachments?object_type=visit&object_id={body['id']}",
                        headers=headers).get_json()
    assert sorted(a["id"] for a in listed) == sorted(photos)
    assert body["location"] == {"lon": IN_G111[0], "lat": IN_G111[1], "crs": "wgs84"}
    assert body["gps"]["accuracy_m"] == 8 and body["gps"]["device_id"] == "phone-1"
    assert response.headers["ETag"] == '"1"'
    visited_at = datetime.fromisoformat(body["visited_at"])
    assert abs(visited_at - datetime.now(UTC)) < timedelta(minutes=1)  # default: now

    audit = db_session.scalars(sa.select(AuditEntry).where(
        AuditEntry.action == "visit_created", AuditEntry.object_id == str(body["id"]))).one()
    assert audit.actor_id == worker.id
    assert audit.changes["target"] == {"type": "person", "id": elder.id}
    assert "content" not in audit.changes  # the trail says what happened, not the notes


def test_visit_to_a_household_and_an_organisation_takes_their_grid(client, member, reg):
    """The visit belongs to the target's grid, wherever in the worker's grids it was
    recorded (a chief of two grids records in one a visit to the other's household)."""
    from grid.registry.models import Organisation

    headers, _ = member("grid_chief", C11)
    household = reg.household(reg.building(G112, IN_G112))
    shop = reg._add(Organisation(area_id=reg.tree[G111], source="grid_worker", name="小吃店",
                                 risk_flags=[]))
    reg.commit()
    response = client.post("/visits", headers=headers, json=_body(
        household_id=household.id, location=point(*IN_G111)))
    assert response.status_code == 201, response.get_json()
    assert response.get_json()["area_id"] == reg.tree[G112]
    response = client.post("/visits", headers=headers, json=_body(
        organisation_id=shop.id, type="inspection"))
    assert response.status_code == 201, response.get_json()
    assert response.get_json()["target"] == {"type": "organisation", "id": shop.id}


def test_gps_outside_the_workers_grids_is_422_naming_the_grid(client, member, reg,
                                                              db_session):
    headers, _ = member("grid_worker", G111)
    elder = reg.person("王秀英", grid=G111)
    reg.commit()
    response = client.post("/visits", headers=headers, json=_body(
        person_id=elder.id, location=point(*IN_G112)))
    body = assert_error_shape(response, 422)
    assert body["grid"]["code"] == G112
    assert "北社区第2网格" in body["message"]
    assert "location" in body["errors"]["json"]

    # Outside every grid.
    response = client.post("/visits", headers=headers, json=_body(
        person_id=elder.id, location=point(120.5, 30.5)))
    assert assert_error_shape(response, 422)["errors"]["json"]["location"]
    # A GCJ-02 point is converted before the check: G111's point sent as GCJ-02 (≈ 500 m
    # off when read as WGS-84) still lands in G111 once converted.
    from geo.crs import wgs84_to_gcj02

    gcj = wgs84_to_gcj02(*IN_G111)
    response = client.post("/visits", headers=headers, json=_body(
        person_id=elder.id, location=point(*gcj, crs="gcj02")))
    assert response.status_code == 201, response.get_json()
    assert visits_count(db_session) == 1


def test_idempotent_replay_and_reused_uuid(client, member, reg, db_session):
    headers, _ = member("grid_worker", G111)
    elder = reg.person("王秀英", grid=G111)
    reg.commit()
    body = _body(person_id=elder.id, client_uuid=str(uuid.uuid4()),
                 visited_at="2026-11-20T09:30:00+08:00")
    first = client.post("/visits", headers=headers, json=body)
    again = client.post("/visits", headers=headers, json=body)
    assert (first.status_code, again.status_code) == (201, 200), again.get_json()
    assert again.headers["Idempotent-Replay"] == "true"
    assert again.get_json() == first.get_json()
    assert visits_count(db_session) == 1

    changed = client.post("/visits", headers=headers, json={**body, "content": "另一次"})
    conflict = assert_error_shape(changed, 409)
    assert "client_uuid" in conflict["errors"]["json"]
    assert visits_count(db_session) == 1


def test_target_outside_scope_is_404_and_so_are_others_visits(client, member, reg):
    headers, worker = member("grid_worker", G111)
    other_headers, _ = member("grid_worker", G112)
    stranger = reg.person("李四", grid=G112)
    mine = reg.person("王秀英", grid=G111)
    reg.commit()
    response = client.post("/visits", headers=headers, json=_body(person_id=stranger.id))
    assert_error_shape(response, 404)

    visit = reg.visit(worker.id, 1, person=mine)
    reg.commit()
    assert client.get(f"/visits/{visit.id}", headers=headers).status_code == 200
    assert_error_shape(client.get(f"/visits/{visit.id}", headers=other_headers), 404)
    listed = client.get("/visits", headers=other_headers)
    assert listed.status_code == 200 and listed.get_json() == [] and total(listed) == 0
    patch = client.patch(f"/visits/{visit.id}", headers=other_headers,
                         json={"follow_up_done": True, "version": 1})
    assert_error_shape(patch, 404)


def test_exactly_one_target_and_sane_input(client, member, reg):
    headers, _ = member("grid_worker", G111)
    elder = reg.person("王秀英", grid=G111)
    household = reg.household(reg.building(G111, IN_G111))
    reg.commit()
    for body in (_body(), _body(person_id=elder.id, household_id=household.id)):
        assert_error_shape(client.post("/visits", headers=headers, json=body), 422)
    future = (datetime.now(UTC) + timedelta(hours=2)).isoformat()
    response = client.post("/visits", headers=headers,
                           json=_body(person_id=elder.id, visited_at=future))
    assert "visited_at" in assert_error_shape(response, 422)["errors"]["json"]
    response = client.post("/visits", headers=headers, json=_body(
        person_id=elder.id, follow_up_due="2026-12-01"))
    assert "follow_up_due" in assert_error_shape(response, 422)["errors"]["json"]
    response = client.post("/visits", headers=headers,
                           json=_body(person_id=elder.id, type="chat"))
    assert "type" in assert_error_shape(response, 422)["errors"]["json"]
    response = client.post("/visits", headers=headers, json=_body(person_id=elder.id,
                                                                  location=None))
    assert "location" in assert_error_shape(response, 422)["errors"]["json"]


def test_ended_target_and_permission(client, member, reg, auth_headers):
    headers, _ = member("grid_worker", G111)
    gone = reg.person("张三", grid=G111, ended_at=datetime.now(UTC), end_reason="moved_out",
                      status="moved_out")
    reg.commit()
    response = client.post("/visits", headers=headers, json=_body(person_id=gone.id))
    assert "person_id" in assert_error_shape(response, 422)["errors"]["json"]
    # A dispatcher reads the register but does not visit.
    dispatcher, _ = member("street_dispatcher", "330183001")
    response = client.post("/visits", headers=dispatcher, json=_body(person_id=gone.id))
    assert assert_error_shape(response, 403)["required"] == "visit:write"


def test_follow_up_completion_is_the_only_change(client, member, reg, db_session):
    headers, worker = member("grid_worker", G111)
    elder = reg.person("王秀英", grid=G111)
    reg.commit()
    created = client.post("/visits", headers=headers, json=_body(
        person_id=elder.id, type="rectification", follow_up="楼道灯不亮，联系物业"))
    visit_id = created.get_json()["id"]
    url = f"/visits/{visit_id}"

    assert_error_shape(client.patch(url, headers=headers, json={"follow_up_done": True}), 428)
    stale = client.patch(url, headers=headers, json={"follow_up_done": True, "version": 7})
    assert assert_error_shape(stale, 412)["current"]["id"] == visit_id
    # Content, type, target… cannot be changed: the body schema knows only the follow-up.
    edit = client.patch(url, headers=headers, json={"content": "改写", "version": 1,
                                                    "follow_up_done": True})
    assert "content" in assert_error_shape(edit, 422)["errors"]["json"]
    undo = client.patch(url, headers=headers, json={"follow_up_done": False, "version": 1})
    assert_error_shape(undo, 422)

    done = client.patch(url, headers={**headers, "If-Match": '"1"'},
                        json={"follow_up_done": True, "follow_up_result": "物业已修复"})
    assert done.status_code == 200, done.get_json()
    body = done.get_json()
    assert body["follow_up_done"] is True and body["follow_up_result"] == "物业已修复"
    assert body["follow_up_done_by"] == worker.id and body["version"] == 2
    assert body["content"] == created.get_json()["content"]
    # The phone resends the same completion (with the old version): the same answer.
    resent = client.patch(url, headers=headers, json={
        "follow_up_done": True, "follow_up_result": "物业已修复", "version": 1})
    assert resent.status_code == 200 and resent.get_json()["version"] == 2
    other = client.patch(url, headers=headers, json={
        "follow_up_done": True, "follow_up_result": "别的结果", "version": 2})
    assert_error_shape(other, 409)
    assert db_session.scalar(sa.select(sa.func.count()).select_from(AuditEntry).where(
        AuditEntry.action == "visit_follow_up_done")) == 1

    plain = client.post("/visits", headers=headers, json=_body(person_id=elder.id))
    response = client.patch(f"/visits/{plain.get_json()['id']}", headers=headers,
                            json={"follow_up_done": True, "version": 1})
    assert_error_shape(response, 409)


def test_list_filters(client, member, reg):
    headers, worker = member("grid_chief", C11)
    _, colleague = member("grid_worker", G112)
    a = reg.person("甲", grid=G111)
    b = reg.person("乙", grid=G112)
    household = reg.household(reg.building(G112, IN_G112))
    v_a_old = reg.visit(worker.id, 20, person=a)
    v_a_new = reg.visit(worker.id, 2, person=a, type="inspection")
    v_b = reg.visit(colleague.id, 5, person=b)
    v_h = reg.visit(colleague.id, 1, household=household)
    reg.commit()

    def ids(**query):
        response = client.get("/visits", headers=headers, query_string=query)
        assert response.status_code == 200, response.get_json()
        return [v["id"] for v in response.get_json()]

    assert ids() == [v_h.id, v_a_new.id, v_b.id, v_a_old.id]  # newest first
    assert ids(person_id=a.id) == [v_a_new.id, v_a_old.id]
    assert ids(household_id=household.id) == [v_h.id]
    assert ids(worker_id=colleague.id) == [v_h.id, v_b.id]
    assert ids(type="inspection") == [v_a_new.id]
    since = (datetime.now(UTC) - timedelta(days=10)).isoformat()
    until = (datetime.now(UTC) - timedelta(days=3)).isoformat()
    assert ids(since=since, until=until) == [v_b.id]
    assert ids(area_id=reg.tree[G112]) == [v_h.id, v_b.id]
    assert ids(area_id=reg.tree[C11], crs="gcj02") == [v_h.id, v_a_new.id, v_b.id,
                                                       v_a_old.id]


def test_confidential_visits_are_listed_only_to_key_person_roles(client, member, reg):
    chief, chief_user = member("grid_chief", G111)
    worker, _ = member("grid_worker", G111)
    person = reg.person("赵某", grid=G111, tags={"community_correction": 30})
    reg.commit()
    # A worker cannot mark a visit confidential (it would say what the person is).
    response = client.post("/visits", headers=worker,
                           json=_body(person_id=person.id, confidential=True))
    assert_error_shape(response, 403)
    response = client.post("/visits", headers=chief, json=_body(
        person_id=person.id, confidential=True, content="矫正谈话"))
    assert response.status_code == 201, response.get_json()
    visit_id = response.get_json()["id"]
    assert [v["id"] for v in client.get("/visits", headers=chief).get_json()] == [visit_id]
    assert client.get("/visits", headers=worker).get_json() == []
    assert_error_shape(client.get(f"/visits/{visit_id}", headers=worker), 404)


def test_gps_in_another_street_for_a_community_chief(client, member, reg):
    """A chief of a whole community may record anywhere in it, not in the next street."""
    headers, _ = member("grid_chief", C11)
    elder = reg.person("王秀英", grid=G111)
    reg.commit()
    response = client.post("/visits", headers=headers, json=_body(
        person_id=elder.id, location=point(*IN_G121)))
    assert assert_error_shape(response, 422)["grid"]["code"] == "330183001002001"

"""POST /sync/push: a batch of operations, each with its own result, safe to resend."""

from __future__ import annotations

import uuid

import pytest
import sqlalchemy as sa

from grid.registry.models import Building, Person
from grid.sync.schemas import BATCH_MAX
from server.idempotency import ClientRequest
from tests.conftest import assert_error_shape
from tests.fixtures.areas import G111, G112
from tests.grid.sync.conftest import id_number, point_in


@pytest.fixture
def worker(member):
    headers, _ = member("grid_worker", G111)
    return headers


@pytest.fixture
def push(client):
    def _push(headers: dict, items: list[dict]) -> list[dict]:
        response = client.post("/sync/push", json={"items": items}, headers=headers)
        assert response.status_code == 200, response.get_json()
        results = response.get_json()["results"]
        assert [r["index"] for r in results] == list(range(len(items)))
        return results

    return _push


def _create(kind: str, **data) -> dict:
    return {"op": "create", "type": kind, "client_uuid": str(uuid.uuid4()), "data": data}


def _count(db_session, model, **where) -> int:
    stmt = sa.select(sa.func.count()).select_from(model)
    for name, value in where.items():
        stmt = stmt.where(getattr(model, name) == value)
    return db_session.scalar(stmt)


def test_a_mixed_batch_stores_the_good_items_only(db_session, worker, collect, push, client):
    taken = id_number()
    existing = collect(worker, "persons", at=G111, name="已登记", id_number=taken)
    building = collect(worker, "buildings", at=G111)
    renamed = client.patch(f"/buildings/{building['id']}", headers=worker,
                           json={"name": "改过了", "version": 1})
    assert renamed.status_code == 200
    before = _count(db_session, Person), _count(db_session, Building)

    results = push(worker, [
        _create("person", name="新登记", id_number=id_number(), location=point_in(G111)),
        _create("person", name="", id_number="123", location=point_in(G111)),
        {"op": "update", "type": "building", "id": building["id"], "version": 1,
         "data": {"floors": 7}},
        _create("person", name="重复", id_number=taken, location=point_in(G111)),
        _create("building", name="好楼", location=point_in(G111)),
    ])

    assert [r["status"] for r in results] == [201, 422, 412, 409, 201]
    good, invalid, stale, duplicate, good_building = results
    assert good["body"]["name"] == "新登记" and "*" in good["body"]["id_number"]
    # 422 names the fields, under the item's index.
    fields = invalid["error"]["errors"]["json"]["items"]["1"]["data"]
    assert set(fields) == {"name", "id_number"}
    assert invalid["error"]["code"] == 422 and invalid["error"]["message"]
    # 412 carries the record as it is now.
    assert stale["error"]["current"]["name"] == "改过了"
    assert stale["error"]["current"]["version"] == 2
    # 409 points at the existing record.
    assert duplicate["error"]["existing"] == {"type": "person", "id": existing["id"],
                                              "version": 1, "area_id": existing["area_id"],
                                              "ended": False}
    # Only the two good creates were stored, and the stale update changed nothing.
    assert (_count(db_session, Person), _count(db_session, Building)) == (
        before[0] + 1, before[1] + 1)
    assert db_session.get(Building, building["id"]).floors is None
    assert good_building["body"]["name"] == "好楼"
    # The failed creates did not use up their client UUIDs.
    assert _count(db_session, ClientRequest, object_id=None) == 0


def test_the_same_batch_twice_stores_nothing_twice(db_session, worker, collect, push):
    person = collect(worker, "persons", at=G111, name="王秀英")
    building = collect(worker, "buildings", at=G111)
    batch = [
        _create("building", name="3幢", location=point_in(G111), floors=6),
        _create("person", name="张三", id_number=id_number(), location=point_in(G111)),
        {"op": "update", "type": "person", "id": person["id"], "version": 1,
         "data": {"name": "王秀英（更正）", "phone": "13812345678"}},
        {"op": "end", "type": "building", "id": building["id"], "version": 1,
         "data": {"reason": "demolished"}},
    ]
    first = push(worker, batch)
    counts = _count(db_session, Person), _count(db_session, Building)
    again = push(worker, batch)

    assert [r["status"] for r in first] == [201, 201, 200, 200]
    # The resend: the same records (same ids; a replayed create is a 200, as everywhere),
    # the update and end already applied → 200.
    assert [r["status"] for r in again] == [200, 200, 200, 200]
    assert [r["body"]["id"] for r in again] == [r["body"]["id"] for r in first]
    assert again[2]["body"]["version"] == first[2]["body"]["version"] == 2
    assert again[3]["body"]["ended_at"] == first[3]["body"]["ended_at"]
    assert (_count(db_session, Person), _count(db_session, Building)) == counts


def test_a_stale_update_that_differs_is_a_412(worker, collect, push, client):
    person = collect(worker, "persons", at=G111, name="王秀英")
    client.patch(f"/persons/{person['id']}", headers=worker,
                 json={"name": "王秀英", "ethnicity": "汉", "version": 1})
    (result,) = push(worker, [{"op": "update", "type": "person", "id": person["id"],
                               "version": 1, "data": {"ethnicity": "回"}}])
    assert result["status"] == 412
    assert result["error"]["current"]["ethnicity"] == "汉"


def test_a_client_uuid_reused_for_other_content_is_a_409(worker, push):
    item = _create("building", name="1幢", location=point_in(G111))
    assert push(worker, [item])[0]["status"] == 201
    other = {**item, "data": {**item["data"], "name": "2幢"}}
    result = push(worker, [other])[0]
    assert result["status"] == 409 and "client_uuid" in str(result["error"])


def test_items_are_applied_in_order(worker, collect, push):
    building = collect(worker, "buildings", at=G111)
    results = push(worker, [
        {"op": "update", "type": "building", "id": building["id"], "version": 1,
         "data": {"floors": 3}},
        {"op": "update", "type": "building", "id": building["id"], "version": 2,
         "data": {"floors": 4}},
    ])
    assert [(r["status"], r["body"]["floors"], r["body"]["version"]) for r in results] == [
        (200, 3, 2), (200, 4, 3)]


def test_scope_permission_and_envelope_errors_are_per_item(member, collect, push):
    w1, _ = member("grid_worker", G111)
    w2, _ = member("grid_worker", G112)
    theirs = collect(w2, "buildings", at=G112)
    mine = collect(w1, "buildings", at=G111)
    results = push(w1, [
        {"op": "update", "type": "building", "id": theirs["id"], "version": 1,
         "data": {"floors": 2}},
        _create("building", name="越界", location=point_in(G112)),
        {"op": "explode", "type": "building"},
        {"op": "update", "type": "building", "data": {}},
        {"op": "create", "type": "building", "data": {"name": "x"}},
        _create("person", name="重点", location=point_in(G111), tags=[{"tag": "drug_user"}]),
        {"op": "update", "type": "building", "id": theirs["id"], "data": {"frobnicate": 1}},
        {"op": "update", "type": "building", "id": mine["id"], "data": {"floors": 2}},
    ])
    assert [r["status"] for r in results] == [404, 422, 422, 422, 422, 403, 422, 428]
    errors = [r["error"].get("errors", {}).get("json", {}).get("items", {}) for r in results]
    assert errors[1] == {"1": {"data": {"location": [
        "The point falls in 北社区第2网格 (330183001001002), which is not one of your grids."]}}}
    assert results[1]["error"]["grid"]["code"] == G112
    assert "op" in errors[2]["2"]
    assert "id" in errors[3]["3"]
    assert "client_uuid" in errors[4]["4"]
    assert "frobnicate" in errors[6]["6"]["data"]
    assert results[5]["error"]["required"] == "person:read_key_tags"


def test_a_batch_over_the_limit_is_a_422(worker, client, db_session):
    items = [_create("building", name=f"{i}幢", location=point_in(G111))
             for i in range(BATCH_MAX + 1)]
    response = client.post("/sync/push", json={"items": items}, headers=worker)
    body = assert_error_shape(response, 422)
    assert "items" in body["errors"]["json"]
    ok = client.post("/sync/push", json={"items": items[:BATCH_MAX]}, headers=worker)
    assert ok.status_code == 200
    assert {r["status"] for r in ok.get_json()["results"]} == {201}


@pytest.mark.parametrize("body", [{}, {"items": "x"}, {"items": [1]}, [], {"items": [],
                                                                           "more": 1}])
def test_a_malformed_batch_is_a_422(worker, client, body):
    assert_error_shape(client.post("/sync/push", json=body, headers=worker), 422)


def test_push_needs_registry_write(auth_headers, client):
    response = client.post("/sync/push", json={"items": []},
                           headers=auth_headers("street_dispatcher"))
    assert_error_shape(response, 403)


def test_pushed_changes_come_back_in_the_next_pull(worker, push, pull):
    cursor = pull(worker)["next_cursor"]
    (created,) = push(worker, [_create("building", name="同步楼", location=point_in(G111))])
    items = pull(worker, cursor)["items"]
    assert [(i["type"], i["id"], i["data"]) for i in items] == [
        ("building", created["body"]["id"], created["body"])]


def test_a_pull_then_a_push_in_one_session(worker, collect, pull, push):
    """Records a pull loaded (without their encrypted columns) are updated by a later push
    in the same session (as in these tests: one session for every request)."""
    person = collect(worker, "persons", at=G111, name="王秀英", phone="13812345678")
    assert pull(worker)["items"][0]["id"] == person["id"]
    (result,) = push(worker, [{"op": "update", "type": "person", "id": person["id"],
                               "version": 1, "data": {"phone": "13912345678"}}])
    assert result["status"] == 200 and result["body"]["phone"] == "139****5678"
    (again,) = push(worker, [{"op": "update", "type": "person", "id": person["id"],
                              "version": 1, "data": {"phone": "13912345678"}}])
    assert again["status"] == 200 and again["body"]["version"] == 2


def test_houses_households_and_organisations_sync_too(member, collect, push, pull):
    worker, _ = member("grid_worker", G111)
    cursor = pull(worker)["next_cursor"]
    building = collect(worker, "buildings", at=G111)
    house, org = push(worker, [
        _create("house", building_id=building["id"], unit="1单元", room="301"),
        _create("organisation", name="小店", uscc="91110000600037341L",
                risk_flags=["nine_small_places"], location=point_in(G111)),
    ])
    assert (house["status"], org["status"]) == (201, 201), (house, org)
    (household,) = push(worker, [_create("household", house_id=house["body"]["id"])])
    assert household["status"] == 201, household
    batch = [
        {"op": "update", "type": "house", "id": house["body"]["id"], "version": 1,
         "data": {"use": "rented"}},
        {"op": "update", "type": "organisation", "id": org["body"]["id"], "version": 1,
         "data": {"uscc": "91110000600037341l", "employees": 3}},
        {"op": "end", "type": "household", "id": household["body"]["id"], "version": 1,
         "data": {"reason": "merged"}},
    ]
    assert [r["status"] for r in push(worker, batch)] == [200, 200, 200]
    # Resent: already applied, whatever the spelling of the USCC.
    assert [r["status"] for r in push(worker, batch)] == [200, 200, 200]

    items = pull(worker, cursor)["items"]
    assert [(i["type"], i["version"]) for i in items] == [
        ("building", 1), ("house", 2), ("organisation", 2), ("household", 2)]
    assert items[-1]["data"]["ended_at"] is not None
    assert items[1]["data"]["use"] == "rented" and items[2]["data"]["employees"] == 3

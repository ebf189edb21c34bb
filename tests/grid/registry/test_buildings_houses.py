"""Buildings (楼栋) and houses (房屋): create, read, list, correct, end, history."""

from __future__ import annotations

import sqlalchemy as sa

from grid.registry import records
from grid.registry.models import House, Tombstone
from tests.conftest import assert_error_shape
from tests.fixtures.areas import G111, G211
from tests.fixtures.http import at, total

# --- buildings -----------------------------------------------------------------------------


def test_a_building_is_created_read_listed_and_corrected(worker, tree):
    building = worker.building(name="3幢", address="富春街道江滨路1号", use="mixed", floors=18,
                               units=2, is_crowded_rental=True, leader_name="张三",
                               leader_phone="13812345678")
    assert building["area_id"] == tree[G111]
    assert building["version"] == 1 and building["source"] == "grid_worker"
    assert building["created_by"] == worker.user.id
    assert building["leader_phone"] == "138****5678"
    response = worker.get(f"/buildings/{building['id']}")
    assert response.headers["ETag"] == '"1"'
    assert response.get_json() == building
    listed = worker.get("/buildings?use=mixed")
    assert [b["id"] for b in listed.get_json()] == [building["id"]] and total(listed) == 1
    assert worker.ok(worker.get("/buildings?use=industrial")) == []
    assert [b["id"] for b in worker.ok(worker.get("/buildings?q=3幢"))] == [building["id"]]
    fixed = worker.ok(worker.patch(f"/buildings/{building['id']}",
                                   {"floors": 17, "version": 1}))
    assert fixed["floors"] == 17 and fixed["version"] == 2
    assert fixed["updated_by"] == worker.user.id


def test_a_new_leader_phone_with_the_same_mask_is_stored(worker, db_session):
    """Phones were compared by their masks: 138****5678 hid a new number ending the same."""
    from server import pii

    building = worker.building(leader_phone="13812345678")
    updated = worker.ok(worker.patch(f"/buildings/{building['id']}",
                                     {"leader_phone": "13899995678", "version": 1}))
    assert updated["version"] == 2 and updated["leader_phone"] == "138****5678"
    stored = db_session.scalar(sa.text("SELECT leader_phone_enc FROM buildings WHERE id = :i"),
                               {"i": building["id"]})
    assert pii.decrypt(stored, "buildings.phone") == "13899995678"
    history = worker.ok(worker.get(f"/buildings/{building['id']}/history"))
    assert history[-1]["changes"] == {"leader_phone": ["(changed)", "(changed)"]}
    # the same number again changes nothing
    same = worker.ok(worker.patch(f"/buildings/{building['id']}",
                                  {"leader_phone": "13899995678", "version": 2}))
    assert same["version"] == 2


def test_a_building_moved_to_another_grid_takes_its_register_along(api, tree, db_session):
    worker = api("grid_worker", G111, G211)
    chain = worker.chain(G111)
    moved = worker.ok(worker.patch(f"/buildings/{chain['building']['id']}",
                                   {"location": at(G211), "version": 1}))
    assert moved["area_id"] == tree[G211]
    for kind in ("house", "household", "person"):
        record = worker.ok(worker.get(f"/{kind}s/{chain[kind]['id']}"))
        assert record["area_id"] == tree[G211], kind
    tombstones = db_session.execute(sa.select(Tombstone.object_type, Tombstone.area_id)).all()
    assert sorted(tombstones) == sorted(
        (k, tree[G111]) for k in ("building", "house", "household", "person"))


def test_a_building_ends_only_when_its_houses_have(worker):
    building = worker.building()
    house = worker.house(building)
    response = worker.post(f"/buildings/{building['id']}/end",
                           {"reason": "demolished", "version": 1})
    assert "1 current house" in assert_error_shape(response, 409)["message"]
    worker.ok(worker.post(f"/houses/{house['id']}/end", {"reason": "demolished", "version": 1}))
    ended = worker.ok(worker.post(f"/buildings/{building['id']}/end",
                                  {"reason": "demolished", "version": 1}))
    assert ended["ended_at"] and ended["end_reason"] == "demolished"
    assert worker.ok(worker.get("/buildings")) == []
    assert [b["id"] for b in worker.ok(worker.get("/buildings?include_ended=true"))] == [
        building["id"]]
    # still readable, and a resend of the same end (with its old version) is harmless
    assert worker.ok(worker.get(f"/buildings/{building['id']}"))["ended_at"]
    again = worker.ok(worker.post(f"/buildings/{building['id']}/end",
                                  {"reason": "demolished", "version": 1}))
    assert again["version"] == ended["version"]
    # nothing new goes into an ended building
    response = worker.post("/houses", {"building_id": building["id"], "room": "101"})
    assert "ended" in assert_error_shape(response, 422)["errors"]["json"]["building_id"][0]


# --- houses --------------------------------------------------------------------------------


def test_a_house_is_in_its_buildings_grid_with_its_owner_phone_masked(worker, tree):
    building = worker.building()
    house = worker.house(building, room="301", unit="2单元", floor=3, use="rented",
                         floor_area_m2=89.5, owner_name="赵六", owner_phone="13912345678",
                         rental_start="2026-01-01", rental_end="2026-12-31")
    assert house["area_id"] == tree[G111] and house["building_id"] == building["id"]
    assert house["owner_phone"] == "139****5678"
    assert (house["rental_start"], house["rental_end"]) == ("2026-01-01", "2026-12-31")
    assert house["floor_area_m2"] == 89.5 and house["location"] is None
    got = worker.get(f"/houses/{house['id']}")
    assert got.get_json() == house and got.headers["ETag"] == '"1"'
    assert "13912345678" not in got.get_data(as_text=True)


def test_houses_are_listed_by_building_and_use(worker):
    b1, b2 = worker.building(), worker.building(name="4幢")
    h1 = worker.house(b1, room="101", use="rented")
    h2 = worker.house(b1, room="102")
    h3 = worker.house(b2, room="101", use="rented")
    assert [h["id"] for h in worker.ok(worker.get(f"/houses?building_id={b1['id']}"))] == [
        h1["id"], h2["id"]]
    assert [h["id"] for h in worker.ok(worker.get("/houses?use=rented"))] == [h1["id"], h3["id"]]
    assert [h["id"] for h in worker.ok(
        worker.get(f"/houses?use=rented&building_id={b2['id']}"))] == [h3["id"]]
    response = worker.get("/houses?page_size=1&page=2")
    assert total(response) == 3 and [h["id"] for h in response.get_json()] == [h2["id"]]


def test_the_same_room_twice_is_a_409_pointing_at_the_house(worker, db_session):
    building = worker.building()
    house = worker.house(building, unit="1单元", room="301")
    for unit, room in (("1单元", "301"), (" 1单元 ", "301 ")):
        response = worker.post("/houses", {"building_id": building["id"], "unit": unit,
                                           "room": room})
        body = assert_error_shape(response, 409)
        assert body["existing"]["type"] == "house"
        assert body["existing"]["id"] == house["id"]
        assert body["existing"]["version"] == 1
    # another unit, another building, or no unit at all are other rooms
    worker.house(building, unit="2单元", room="301")
    worker.house(worker.building(name="5幢"), unit="1单元", room="301")
    no_unit = worker.house(building, unit=None, room="301")
    again = worker.post("/houses", {"building_id": building["id"], "room": "301"})
    assert assert_error_shape(again, 409)["existing"]["id"] == no_unit["id"]
    count = db_session.scalar(sa.select(sa.func.count()).select_from(House))
    assert count == 4


def test_a_room_is_free_again_once_its_house_ended(worker):
    building = worker.building()
    old = worker.house(building, room="301")
    worker.ok(worker.post(f"/houses/{old['id']}/end", {"reason": "merged", "version": 1}))
    new = worker.house(building, room="301")
    assert new["id"] != old["id"]


def test_renaming_a_room_onto_another_is_a_409(worker):
    building = worker.building()
    h301 = worker.house(building, room="301")
    h302 = worker.house(building, room="302")
    response = worker.patch(f"/houses/{h302['id']}", {"room": "301", "version": 1})
    assert assert_error_shape(response, 409)["existing"]["id"] == h301["id"]
    renamed = worker.ok(worker.patch(f"/houses/{h302['id']}", {"room": "303", "version": 1}))
    assert renamed["room"] == "303" and renamed["version"] == 2


def test_a_concurrent_insert_of_the_same_room_is_the_same_409(worker, monkeypatch):
    """Another request inserted the room between our check and our insert: the unique
    index refuses ours, and the answer is the 409 the check would have given."""
    building = worker.building()
    house = worker.house(building, room="301")
    real = records._house_unique

    def blind_check(*args, **kwargs):
        index, find, message = real(*args, **kwargs)
        calls = {"n": 0}

        def find_second_time():  # the check before the insert sees nothing, like a race
            calls["n"] += 1
            return None if calls["n"] == 1 else find()

        return index, find_second_time, message

    monkeypatch.setattr(records, "_house_unique", blind_check)
    response = worker.post("/houses", {"building_id": building["id"], "unit": "1单元",
                                       "room": "301"})
    body = assert_error_shape(response, 409)
    assert body["existing"]["id"] == house["id"]
    # the request's transaction is still good for the next one
    assert worker.house(building, room="302")["room"] == "302"


def test_a_house_ends_only_when_its_households_have(worker):
    chain = worker.chain()
    house, household = chain["house"], chain["household"]
    response = worker.post(f"/houses/{house['id']}/end", {"reason": "demolished", "version": 1})
    assert "1 current household" in assert_error_shape(response, 409)["message"]
    worker.ok(worker.post(f"/persons/{chain['person']['id']}/end",
                          {"status": "moved_out", "version": 1}))
    worker.ok(worker.post(f"/households/{household['id']}/end",
                          {"reason": "moved away", "version": 1}))
    ended = worker.ok(worker.post(f"/houses/{house['id']}/end",
                                  {"reason": "demolished", "version": 1}))
    assert ended["end_reason"] == "demolished"
    assert worker.ok(worker.get(f"/houses?building_id={house['building_id']}")) == []


def test_house_history_shows_who_changed_what(worker):
    house = worker.house(worker.building(), room="301", owner_phone="13912345678")
    worker.ok(worker.patch(f"/houses/{house['id']}", {"use": "rented", "owner_phone":
                                                      "13700001111", "version": 1}))
    worker.ok(worker.post(f"/houses/{house['id']}/end", {"reason": "merged", "version": 2}))
    history = worker.ok(worker.get(f"/houses/{house['id']}/history"))
    assert [h["action"] for h in history] == ["house_created", "house_updated", "house_updated"]
    assert all(h["actor_id"] == worker.user.id and h["at"] for h in history)
    assert history[0]["changes"]["room"] == "301"
    assert history[0]["changes"]["owner_phone"] == "(changed)"
    assert history[1]["changes"] == {"owner_phone": ["(changed)", "(changed)"],
                                     "use": ["owner_occupied", "rented"]}
    assert history[2]["changes"]["end_reason"] == [None, "merged"]
    text = str(history)
    assert "13912345678" not in text and "13700001111" not in text

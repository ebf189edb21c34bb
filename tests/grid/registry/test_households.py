"""Households (户): in a house or at a point, their head, members, moves and end."""

from __future__ import annotations

from tests.conftest import assert_error_shape
from tests.fixtures.areas import G111, G211
from tests.fixtures.http import at, total
from tests.fixtures.registry import ID_FEMALE_1988, ID_MALE_2023


def test_a_household_takes_its_houses_grid(worker, tree):
    house = worker.house(worker.building())
    household = worker.household(house, household_no="330183000123", type="non_registered")
    assert household["area_id"] == tree[G111] and household["house_id"] == house["id"]
    assert household["type"] == "non_registered" and household["head_person_id"] is None
    got = worker.get(f"/households/{household['id']}")
    assert got.get_json() == household and got.headers["ETag"] == '"1"'


def test_without_a_house_the_point_decides_and_one_of_them_is_required(api, tree):
    worker = api("grid_worker", G111, G211)
    household = worker.household(location=at(G211))
    assert household["house_id"] is None and household["area_id"] == tree[G211]
    body = assert_error_shape(worker.post("/households", {"type": "registered"}), 422)
    assert "location" in body["errors"]["json"]


def test_households_are_listed_by_house_and_type(worker):
    building = worker.building()
    h1, h2 = worker.house(building, room="101"), worker.house(building, room="102")
    a = worker.household(h1)
    b = worker.household(h1, type="non_registered")
    c = worker.household(h2, type="non_registered")
    assert [x["id"] for x in worker.ok(worker.get(f"/households?house_id={h1['id']}"))] == [
        a["id"], b["id"]]
    response = worker.get("/households?type=non_registered")
    assert [x["id"] for x in response.get_json()] == [b["id"], c["id"]] and total(response) == 2


def test_the_head_must_be_a_current_member(worker):
    household = worker.household(worker.house(worker.building()))
    other = worker.household(location=at(G111))
    member = worker.person(household, name="户主", relation_to_head="head")
    stranger = worker.person(other, name="邻居")
    for bad in (stranger["id"], 999_999_999):
        response = worker.patch(f"/households/{household['id']}",
                                {"head_person_id": bad, "version": 1})
        body = assert_error_shape(response, 422)
        assert "member" in body["errors"]["json"]["head_person_id"][0]
    headed = worker.ok(worker.patch(f"/households/{household['id']}",
                                    {"head_person_id": member["id"], "version": 1}))
    assert headed["head_person_id"] == member["id"] and headed["version"] == 2
    # a member who has moved out can no longer become the head
    worker.ok(worker.patch(f"/households/{household['id']}",
                           {"head_person_id": None, "version": 2}))
    worker.ok(worker.post(f"/persons/{member['id']}/end", {"status": "moved_out",
                                                           "version": 1}))
    response = worker.patch(f"/households/{household['id']}",
                            {"head_person_id": member["id"], "version": 3})
    assert_error_shape(response, 422)


def test_members_are_the_current_ones_masked_with_the_head_first(worker):
    household = worker.household(worker.house(worker.building()))
    child = worker.person(household, name="小明", id_number=ID_MALE_2023,
                          relation_to_head="child", tags=[{"tag": "left_behind_child"}])
    head = worker.person(household, name="王秀英", id_number=ID_FEMALE_1988,
                         phone="13812345678", relation_to_head="head")
    gone = worker.person(household, name="已迁出", relation_to_head="other")
    worker.ok(worker.post(f"/persons/{gone['id']}/end", {"status": "moved_out", "version": 1}))
    worker.ok(worker.patch(f"/households/{household['id']}",
                           {"head_person_id": head["id"], "version": 1}))
    response = worker.get(f"/households/{household['id']}/members")
    members = worker.ok(response)
    assert [m["id"] for m in members] == [head["id"], child["id"]]
    assert members[0]["id_number"] == "120103************"
    assert members[0]["phone"] == "138****5678"
    assert [t["tag"] for t in members[1]["tags"]] == ["left_behind_child"]
    text = response.get_data(as_text=True)
    assert ID_FEMALE_1988 not in text and "13812345678" not in text


def test_a_household_moving_house_takes_its_members_along(api, tree):
    worker = api("grid_worker", G111, G211)
    chain = worker.chain(G111)
    new_house = worker.house(worker.building(G211), room="808")
    moved = worker.ok(worker.patch(f"/households/{chain['household']['id']}",
                                   {"house_id": new_house["id"], "version": 1}))
    assert moved["house_id"] == new_house["id"] and moved["area_id"] == tree[G211]
    person = worker.ok(worker.get(f"/persons/{chain['person']['id']}"))
    assert person["area_id"] == tree[G211] and person["household_id"] == moved["id"]
    # into an ended house it cannot go
    worker.ok(worker.post(f"/houses/{chain['house']['id']}/end", {"reason": "x",
                                                                  "version": 1}))
    response = worker.patch(f"/households/{moved['id']}",
                            {"house_id": chain["house"]["id"], "version": moved["version"]})
    assert "ended" in assert_error_shape(response, 422)["errors"]["json"]["house_id"][0]


def test_a_household_ends_once_its_members_have_left(worker):
    chain = worker.chain()
    household, person = chain["household"], chain["person"]
    response = worker.post(f"/households/{household['id']}/end", {"reason": "x", "version": 1})
    assert "1 current person" in assert_error_shape(response, 409)["message"]
    other = worker.household(location=at(G111))
    worker.ok(worker.post(f"/persons/{person['id']}/move",
                          {"household_id": other["id"], "version": 1}))
    ended = worker.ok(worker.post(f"/households/{household['id']}/end",
                                  {"reason": "merged", "version": 1}))
    assert ended["ended_at"]
    assert worker.ok(worker.get(f"/households/{household['id']}/members")) == []
    # nobody joins an ended household
    response = worker.post(f"/persons/{person['id']}/move",
                           {"household_id": household["id"], "version": 2})
    assert "ended" in assert_error_shape(response, 422)["errors"]["json"]["household_id"][0]
    response = worker.post("/persons", {"name": "新人", "household_id": household["id"]})
    assert_error_shape(response, 422)


def test_household_history(worker):
    household = worker.household(location=at(G111))
    worker.ok(worker.patch(f"/households/{household['id']}",
                           {"household_no": "A-1", "type": "non_registered", "version": 1}))
    history = worker.ok(worker.get(f"/households/{household['id']}/history"))
    assert [h["action"] for h in history] == ["household_created", "household_updated"]
    assert history[1]["changes"] == {"household_no": [None, "A-1"],
                                     "type": ["registered", "non_registered"]}

"""People (实有人口): duplicates, moves between households, ending, stays."""

from __future__ import annotations

import sqlalchemy as sa

from grid.registry.models import Person
from tests.conftest import assert_error_shape
from tests.fixtures.areas import G111, G112, NAMES
from tests.fixtures.http import at
from tests.fixtures.registry import ID_FEMALE_1988, ID_MALE_2023, ID_MORE


def test_a_person_in_a_household_takes_its_grid(worker, tree):
    household = worker.household(worker.house(worker.building()))
    person = worker.person(household, relation_to_head="spouse", ethnicity="汉族",
                           population_type="floating",
                           registration_situation="present_unregistered")
    assert person["area_id"] == tree[G111] and person["household_id"] == household["id"]
    assert person["status"] == "present" and person["location"] is None
    assert (person["population_type"], person["registration_situation"]) == (
        "floating", "present_unregistered")
    stays = worker.ok(worker.get(f"/persons/{person['id']}/stays"))
    assert [(s["household_id"], s["relation_to_head"], s["until"]) for s in stays] == [
        (household["id"], "spouse", None)]


def test_the_same_id_number_twice_is_a_409_pointing_at_the_person(worker, db_session):
    person = worker.person(id_number=ID_MALE_2023)
    response = worker.post("/persons", {"name": "另一个", "id_number": ID_MALE_2023,
                                        "location": at(G111)})
    body = assert_error_shape(response, 409)
    assert body["existing"] == {"type": "person", "id": person["id"], "version": 1,
                                "area_id": person["area_id"], "ended": False}
    # also when correcting another person's number onto it
    other = worker.person(id_number=ID_FEMALE_1988)
    response = worker.patch(f"/persons/{other['id']}",
                            {"id_number": ID_MALE_2023, "version": 1})
    assert assert_error_shape(response, 409)["existing"]["id"] == person["id"]
    assert db_session.scalar(sa.select(sa.func.count()).select_from(Person)) == 2


def test_a_duplicate_in_another_grid_names_the_grid_not_the_record(api, worker):
    neighbour = api("grid_worker", G112)
    theirs = neighbour.person(id_number=ID_MALE_2023, location=at(G112))
    response = worker.post("/persons", {"name": "王某", "id_number": ID_MALE_2023,
                                        "location": at(G111)})
    body = assert_error_shape(response, 409)
    assert body["existing"] == {"type": "person", "area_code": G112,
                                "area_name": NAMES[G112]}
    assert NAMES[G112] in body["message"] and G112 in body["message"]
    assert str(theirs["id"]) not in str(body["existing"])


def test_a_concurrent_insert_of_the_same_id_number_is_the_same_409(worker, monkeypatch):
    from grid.registry import people

    person = worker.person(id_number=ID_MALE_2023)
    real = people._person_by_bidx
    calls = {"n": 0}

    def blind_first_time(*args, **kwargs):
        calls["n"] += 1
        return None if calls["n"] == 1 else real(*args, **kwargs)

    monkeypatch.setattr(people, "_person_by_bidx", blind_first_time)
    response = worker.post("/persons", {"name": "王某", "id_number": ID_MALE_2023,
                                        "location": at(G111)})
    assert assert_error_shape(response, 409)["existing"]["id"] == person["id"]


def test_moving_between_households_keeps_the_history(worker):
    first = worker.household(location=at(G111))
    second = worker.household(location=at(G111))
    person = worker.person(first, relation_to_head="child")
    moved = worker.ok(worker.post(f"/persons/{person['id']}/move",
                                  {"household_id": second["id"], "relation_to_head": "spouse",
                                   "version": 1}))
    assert moved["household_id"] == second["id"] and moved["version"] == 2
    assert moved["relation_to_head"] == "spouse"
    stays = worker.ok(worker.get(f"/persons/{person['id']}/stays"))
    assert [(s["household_id"], s["relation_to_head"]) for s in stays] == [
        (first["id"], "child"), (second["id"], "spouse")]
    assert stays[0]["until"] is not None and stays[1]["until"] is None
    assert stays[0]["until"] == stays[1]["since"]
    # the same move again changes nothing
    again = worker.ok(worker.post(f"/persons/{person['id']}/move",
                                  {"household_id": second["id"], "relation_to_head": "spouse",
                                   "version": 2}))
    assert again["version"] == 2
    assert len(worker.ok(worker.get(f"/persons/{person['id']}/stays"))) == 2
    history = worker.ok(worker.get(f"/persons/{person['id']}/history"))
    assert history[-1]["changes"]["household_id"] == [first["id"], second["id"]]


def test_a_head_who_leaves_is_no_longer_the_head(worker):
    household = worker.household(location=at(G111))
    other = worker.household(location=at(G111))
    head = worker.person(household, relation_to_head="head")
    worker.ok(worker.patch(f"/households/{household['id']}",
                           {"head_person_id": head["id"], "version": 1}))
    worker.ok(worker.post(f"/persons/{head['id']}/move", {"household_id": other["id"],
                                                          "version": 1}))
    after = worker.ok(worker.get(f"/households/{household['id']}"))
    assert after["head_person_id"] is None and after["version"] == 3
    history = worker.ok(worker.get(f"/households/{household['id']}/history"))
    assert history[-1]["changes"] == {"head_person_id": [head["id"], None]}


def test_ending_a_person_never_deletes_them(worker, db_session):
    household = worker.household(location=at(G111))
    mover = worker.person(household, id_number=ID_MORE[0])
    dead = worker.person(household, id_number=ID_MORE[1])
    moved_out = worker.ok(worker.post(f"/persons/{mover['id']}/end",
                                      {"status": "moved_out", "reason": "迁往杭州",
                                       "version": 1}))
    assert moved_out["status"] == "moved_out" and moved_out["ended_at"]
    assert moved_out["end_reason"] == "迁往杭州"
    deceased = worker.ok(worker.post(f"/persons/{dead['id']}/end",
                                     {"status": "deceased", "version": 1}))
    assert deceased["status"] == "deceased" and deceased["end_reason"] == "deceased"
    assert db_session.scalar(sa.select(sa.func.count()).select_from(Person)) == 2
    for p in (mover, dead):
        assert worker.ok(worker.get(f"/persons/{p['id']}"))["ended_at"]
        stays = worker.ok(worker.get(f"/persons/{p['id']}/stays"))
        assert stays[0]["until"] is not None
    assert worker.ok(worker.get("/persons")) == []
    assert {p["status"] for p in worker.ok(worker.get("/persons?include_ended=true"))} == {
        "moved_out", "deceased"}
    assert [p["id"] for p in worker.ok(
        worker.get("/persons?include_ended=true&status=deceased"))] == [dead["id"]]
    # "alive" is not an end
    response = worker.post(f"/persons/{mover['id']}/end", {"status": "present", "version": 2})
    assert_error_shape(response, 422)
    # ending again the same way is harmless; a deceased person does not move
    assert worker.ok(worker.post(f"/persons/{dead['id']}/end",
                                 {"status": "deceased", "version": 1}))["version"] == 2
    response = worker.post(f"/persons/{dead['id']}/move",
                           {"household_id": household["id"], "version": 2})
    assert_error_shape(response, 409)
    # the same ID number is still taken: a new registration points at the ended record
    response = worker.post("/persons", {"name": "又来了", "id_number": ID_MORE[0],
                                        "location": at(G111)})
    existing = assert_error_shape(response, 409)["existing"]
    assert existing["id"] == mover["id"] and existing["ended"] is True


def test_a_person_who_moved_out_can_come_back(worker):
    household = worker.household(location=at(G111))
    person = worker.person(household)
    worker.ok(worker.post(f"/persons/{person['id']}/end", {"status": "moved_out",
                                                           "version": 1}))
    back = worker.ok(worker.post(f"/persons/{person['id']}/move",
                                 {"household_id": household["id"], "version": 2}))
    assert back["status"] == "present" and back["ended_at"] is None
    stays = worker.ok(worker.get(f"/persons/{person['id']}/stays"))
    assert len(stays) == 2 and stays[-1]["until"] is None


def test_persons_are_listed_by_their_filters(worker):
    household = worker.household(location=at(G111))
    man = worker.person(household, name="张伟", id_number=ID_MALE_2023,
                        population_type="floating")
    woman = worker.person(name="李娜", id_number=ID_FEMALE_1988)

    def ids(query: str) -> list[int]:
        return [p["id"] for p in worker.ok(worker.get(f"/persons?{query}"))]

    assert ids("sex=M") == [man["id"]] and ids("sex=F") == [woman["id"]]
    assert ids(f"household_id={household['id']}") == [man["id"]]
    assert ids("population_type=floating") == [man["id"]]
    assert ids("q=李") == [woman["id"]]
    assert ids(f"id_number={ID_FEMALE_1988}") == [woman["id"]]
    assert ids(f"id_number={ID_MORE[2]}") == []

"""GET /sync/pull: what a phone holds is exactly its grids, kept current by deltas."""

from __future__ import annotations

import base64
import json

import pytest

from geo.fields import Point
from grid.areas import memberships as area_memberships
from grid.demo import SYSTEM
from grid.registry.people import create_person, move_person
from grid.registry.records import create_house, create_household, update_household
from grid.sync import cursor as sync
from grid.sync.schemas import PAGE_MAX
from tests.conftest import assert_error_shape
from tests.fixtures.areas import G111, G112
from tests.grid.sync.conftest import actor_of, id_number, keys, point_in


@pytest.fixture
def two_grids(member, collect):
    """Worker 1 in G111 with two buildings and a person; worker 2 in G112 with a building
    and a person."""
    w1, u1 = member("grid_worker", G111)
    w2, u2 = member("grid_worker", G112)
    mine = [collect(w1, "buildings", at=G111), collect(w1, "buildings", at=G111),
            collect(w1, "persons", at=G111, name="王秀英", id_number=id_number(),
                    phone="13812345678")]
    theirs = [collect(w2, "buildings", at=G112),
              collect(w2, "persons", at=G112, name="李四", id_number=id_number())]
    return {"w1": w1, "u1": u1, "w2": w2, "u2": u2, "mine": mine, "theirs": theirs}


def test_first_pull_is_everything_in_my_grids_and_nothing_else(two_grids, pull):
    body = pull(two_grids["w1"])
    assert body["reset"] is True and body["has_more"] is False
    got = {(i["type"], i["id"]) for i in body["items"]}
    assert got == {("building", two_grids["mine"][0]["id"]),
                   ("building", two_grids["mine"][1]["id"]),
                   ("person", two_grids["mine"][2]["id"])}
    seqs = [i["change_seq"] for i in body["items"]]
    assert seqs == sorted(seqs)
    person = next(i for i in body["items"] if i["type"] == "person")
    # The register's masked shape, as GET /persons/{id} shows it.
    assert person["data"]["id_number"].count("*") == 12
    assert person["data"]["phone"] == "138****5678"
    assert person["version"] == person["data"]["version"] == 1
    assert person["data"]["tags"] == []
    # Worker 2 gets theirs only.
    theirs = {(i["type"], i["id"]) for i in pull(two_grids["w2"])["items"]}
    assert theirs == {("building", two_grids["theirs"][0]["id"]),
                      ("person", two_grids["theirs"][1]["id"])}


def test_an_incremental_pull_brings_only_what_changed(two_grids, pull, collect, client):
    w1 = two_grids["w1"]
    cursor = pull(w1)["next_cursor"]
    assert pull(w1, cursor)["items"] == []  # nothing changed
    building = two_grids["mine"][0]
    patched = client.patch(f"/buildings/{building['id']}", headers=w1,
                           json={"floors": 6, "version": building["version"]})
    assert patched.status_code == 200, patched.get_json()
    person = collect(w1, "persons", at=G111, name="张三")
    # A change in another grid is not mine.
    collect(two_grids["w2"], "buildings", at=G112)

    body = pull(w1, cursor)
    assert body["reset"] is False and body["has_more"] is False
    assert keys(body["items"]) == [("building", building["id"], False),
                                   ("person", person["id"], False)]
    assert body["items"][0]["version"] == 2 and body["items"][0]["data"]["floors"] == 6
    assert pull(w1, body["next_cursor"])["items"] == []


def test_an_ended_record_comes_back_ended(two_grids, pull, client):
    w1 = two_grids["w1"]
    cursor = pull(w1)["next_cursor"]
    person = two_grids["mine"][2]
    ended = client.post(f"/persons/{person['id']}/end", headers=w1,
                        json={"status": "moved_out", "version": 1})
    assert ended.status_code == 200, ended.get_json()

    body = pull(w1, cursor)
    assert keys(body["items"]) == [("person", person["id"], False)]
    data = body["items"][0]["data"]
    assert data["ended_at"] is not None and data["status"] == "moved_out"
    # A full sync leaves ended records out: an empty phone has nothing to end.
    assert ("person", person["id"]) not in {(i["type"], i["id"]) for i in pull(w1)["items"]}


def test_a_person_moved_to_another_grid_is_a_tombstone_there(db_session, member, collect,
                                                              pull, tree):
    w1, _ = member("grid_worker", G111)
    w2, _ = member("grid_worker", G112)
    _, staff = member("community_staff", "330183001001")  # the community of G111 and G112
    person = collect(w1, "persons", at=G111, name="王秀英", id_number=id_number())
    c1, c2 = pull(w1)["next_cursor"], pull(w2)["next_cursor"]

    actor = actor_of(db_session, staff)
    household, _ = create_household(db_session, actor, {"location": _fix(G112)},
                                           None)
    move_person(db_session, actor, person["id"], household.id, "head", 1)
    db_session.commit()  # (a savepoint: the test's transaction is still rolled back)

    assert keys(pull(w1, c1)["items"]) == [("person", person["id"], True)]
    moved = pull(w2, c2)["items"]
    assert keys(moved) == [("household", household.id, False), ("person", person["id"], False)]
    assert moved[1]["data"]["household_id"] == household.id


def test_a_tombstone_does_not_hide_a_record_back_in_my_grids(db_session, member, collect,
                                                             pull, tree):
    both, _ = member("grid_worker", G111, G112)
    w1, _ = member("grid_worker", G111)
    _, staff = member("community_staff", "330183001001")
    person = collect(w1, "persons", at=G111, name="王秀英")
    c_both, c_w1 = pull(both)["next_cursor"], pull(w1)["next_cursor"]

    actor = actor_of(db_session, staff)
    away, _ = create_household(db_session, actor, {"location": _fix(G112)}, None)
    home, _ = create_household(db_session, actor, {"location": _fix(G111)}, None)
    moved = move_person(db_session, actor, person["id"], away.id, "head", 1)
    # Between two of my grids: the record, and no tombstone (which comes after it).
    assert keys(pull(both, c_both)["items"]) == [
        ("household", away.id, False), ("household", home.id, False),
        ("person", person["id"], False)]
    # Out of my grid and back again within one pull: the record, not a tombstone.
    move_person(db_session, actor, person["id"], home.id, "head", moved.version)
    db_session.commit()
    items = pull(w1, c_w1)["items"]
    assert keys(items) == [("household", home.id, False), ("person", person["id"], False)]
    assert items[1]["data"]["household_id"] == home.id


def test_paging_returns_every_change_exactly_once(member, collect, pull, client):
    w1, _ = member("grid_worker", G111)
    made = [collect(w1, "buildings", at=G111) for _ in range(5)]
    seen, cursor, pages = [], None, 0
    while True:
        body = pull(w1, cursor, limit=2)
        assert len(body["items"]) <= 2
        seen += body["items"]
        cursor, pages = body["next_cursor"], pages + 1
        if pages == 1:
            # A change made while paging is not in this pull (its pages see one set of
            # changes) but in the next one.
            changed = client.patch(f"/buildings/{made[0]['id']}", headers=w1,
                                   json={"floors": 3, "version": 1})
            assert changed.status_code == 200
        if not body["has_more"]:
            break
    assert pages == 3
    assert [i["id"] for i in seen] == [b["id"] for b in made]
    assert [i["version"] for i in seen] == [1] * 5
    after = pull(w1, cursor)["items"]
    assert [(i["id"], i["version"]) for i in after] == [(made[0]["id"], 2)]


def test_paging_of_an_incremental_pull_with_tombstones(db_session, member, collect, pull_all,
                                                        tree):
    w1, _ = member("grid_worker", G111)
    _, staff = member("community_staff", "330183001001")
    people = [collect(w1, "persons", at=G111, name=f"人{i}") for i in range(4)]
    _, cursor, _ = pull_all(w1)
    actor = actor_of(db_session, staff)
    away, _ = create_household(db_session, actor, {"location": _fix(G112)}, None)
    for p in people[:2]:
        move_person(db_session, actor, p["id"], away.id, None, 1)
    fresh = [collect(w1, "buildings", at=G111) for _ in range(3)]
    db_session.commit()

    items, _, pages = pull_all(w1, cursor, limit=2)
    assert pages == 3
    assert keys(items) == ([("person", p["id"], True) for p in people[:2]]
                           + [("building", b["id"], False) for b in fresh])


def test_key_person_tags_only_for_roles_that_may_see_them(member, collect, pull, client):
    chief, _ = member("grid_chief", G111)
    worker, _ = member("grid_worker", G111)
    person = collect(chief, "persons", at=G111, name="王五",
                     tags=[{"tag": "elderly_alone"}, {"tag": "drug_user"}])
    chief_tags = [t["tag"] for t in pull(chief)["items"][0]["data"]["tags"]]
    worker_items = pull(worker)["items"]
    assert worker_items[0]["id"] == person["id"]
    assert sorted(chief_tags) == ["drug_user", "elderly_alone"]
    assert [t["tag"] for t in worker_items[0]["data"]["tags"]] == ["elderly_alone"]


def test_a_new_grid_starts_the_phone_over(db_session, member, collect, pull, tree):
    """Records of a grid one is newly given did not change, yet the phone needs them: a
    changed scope makes the next pull a full sync (reset) instead of a delta."""
    w1, u1 = member("grid_worker", G111)
    w2, _ = member("grid_worker", G112)
    mine = collect(w1, "buildings", at=G111)
    other = collect(w2, "buildings", at=G112)
    cursor = pull(w1)["next_cursor"]
    assert pull(w1, cursor)["reset"] is False
    area_memberships.add_membership(db_session, SYSTEM, {
        "user_id": u1.id, "area_id": tree[G112], "role": "grid_worker"})
    db_session.commit()

    body = pull(w1, cursor)
    assert body["reset"] is True
    assert {i["id"] for i in body["items"]} == {mine["id"], other["id"]}
    assert pull(w1, body["next_cursor"])["reset"] is False


def test_pull_needs_registry_read(auth_headers, client):
    response = client.get("/sync/pull", headers=auth_headers("resident"))
    assert_error_shape(response, 403)


def _cursor(body) -> str:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


GOOD_SNAP = {"s": "100:105:101,103"}
GARBAGE = [
    "not a cursor!",
    "x",
    _cursor(b"not json"),
    _cursor(b"[1, 2]"),
    _cursor({"v": 2, "h": "0" * 16, "p": None}),
    _cursor({"v": 1, "h": "scope", "p": None}),
    _cursor({"v": 1, "h": "0" * 16, "p": {"s": "1:2:3"}}),  # xip beyond xmax
    _cursor({"v": 1, "h": "0" * 16, "p": {"s": "5:2:"}}),  # xmin beyond xmax
    _cursor({"v": 1, "h": "0" * 16, "p": {"s": "100:105:'; DROP TABLE persons; --"}}),
    _cursor({"v": 1, "h": "0" * 16, "p": GOOD_SNAP, "c": GOOD_SNAP}),  # no "a"
    _cursor({"v": 1, "h": "0" * 16, "p": GOOD_SNAP, "c": GOOD_SNAP, "a": -1}),
    _cursor({"v": 1, "h": "0" * 16, "p": {"s": "200:200:"}, "c": GOOD_SNAP, "a": 1}),
    _cursor({"v": 1, "h": "0" * 16, "p": {"s": "100:105:", "x": 101}}),  # x without q
    _cursor({"v": 1, "h": "0" * 16, "p": {"s": f"1:{2**64}:"}}),
    _cursor({"v": 1, "h": "0" * 16, "p": None, "extra": 1}),
]


@pytest.mark.parametrize("cursor", GARBAGE)
def test_a_garbage_cursor_is_a_422(member, client, cursor):
    w1, _ = member("grid_worker", G111)
    response = client.get("/sync/pull", query_string={"cursor": cursor}, headers=w1)
    body = assert_error_shape(response, 422)
    assert "cursor" in body["errors"]["query"]


def test_a_cursor_from_another_database_starts_over(member, collect, pull):
    """Well-formed, but its snapshot is in this database's future (a cursor of another
    server, or of a database restored from a backup): a full sync, never a skipped change."""
    w1, _ = member("grid_worker", G111)
    building = collect(w1, "buildings", at=G111)
    scope = json.loads(base64.urlsafe_b64decode(pull(w1)["next_cursor"] + "==="))["h"]
    future = _cursor({"v": 1, "h": scope, "p": {"s": f"{2**62}:{2**62}:"}})
    body = pull(w1, future)
    assert body["reset"] is True and [i["id"] for i in body["items"]] == [building["id"]]


@pytest.mark.parametrize("limit", [0, PAGE_MAX + 1, "many"])
def test_the_page_size_is_bounded(member, client, limit):
    w1, _ = member("grid_worker", G111)
    response = client.get("/sync/pull", query_string={"limit": limit}, headers=w1)
    body = assert_error_shape(response, 422)
    assert "limit" in body["errors"]["query"]


def test_cursor_round_trip():
    cursor = sync.Cursor("0123456789abcdef", sync.Snapshot("10:20:12,15", 12, 99),
                         sync.Snapshot("30:30:"), 7)
    assert sync.Cursor.decode(cursor.encode()) == cursor
    assert set(cursor.encode()) <= set(
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


def _fix(code: str):
    """A location as the registry's services take it (loaded by the Point field)."""
    return Point().deserialize(point_in(code))



def test_a_household_moved_to_another_grid_takes_its_members_along(db_session, member,
                                                                   collect, pull, tree):
    """Moving a household into a house of another grid moves its members (registry
    `_follow`): the first grid's worker gets a tombstone for each, the second the records."""
    w1, _ = member("grid_worker", G111)
    w2, _ = member("grid_worker", G112)
    _, staff = member("community_staff", "330183001001")
    actor = actor_of(db_session, staff)
    household, _ = create_household(db_session, actor, {"location": _fix(G111)},
                                           None)
    people = [create_person(db_session, actor, {"name": n, "household_id":
                                                         household.id}, None)[0]
              for n in ("甲", "乙")]
    there = collect(w2, "buildings", at=G112)
    house, _ = create_house(db_session, actor, {"building_id": there["id"],
                                                         "room": "101"}, None)
    db_session.commit()
    c1, c2 = pull(w1)["next_cursor"], pull(w2)["next_cursor"]

    update_household(db_session, actor, household.id, {"house_id": house.id},
                              household.version)
    db_session.commit()
    gone = keys(pull(w1, c1)["items"])
    assert sorted(gone) == sorted([("household", household.id, True)]
                                  + [("person", p.id, True) for p in people])
    came = keys(pull(w2, c2)["items"])
    assert sorted(came) == sorted([("household", household.id, False)]
                                  + [("person", p.id, False) for p in people])

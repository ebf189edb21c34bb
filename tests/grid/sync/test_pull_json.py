"""A pull page is JSON built by PostgreSQL (grid.sync.pages): every record's `data` must be
what the register's masked schema dumps through the app's encoder, byte for byte — masked
personal data, tags by role, dates and times, floats (5.0, not 5), empty and null values,
ended records, tombstones, and points in the crs asked for."""

from __future__ import annotations

import json
import uuid

import pytest
import sqlalchemy as sa

from geo.fields import Point, set_output_crs
from grid.registry.people import move_person
from grid.registry.records import create_household
from grid.sync import record_types as sync
from tests.fixtures.areas import G111, G112
from tests.grid.sync.conftest import actor_of, id_number, point_in


def _encoded(value) -> str:
    """As the app's JSON provider writes a response (sorted keys, compact, no \\u escapes)."""
    return json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def _pull_and_compare(client, db_session, headers, actor, cursor=None, crs=None) -> dict:
    query = {k: v for k, v in {"cursor": cursor, "crs": crs}.items() if v}
    response = client.get("/sync/pull", query_string=query, headers=headers)
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert response.get_data(as_text=True) == _encoded(body) + "\n"
    set_output_crs(crs)
    try:
        for item in body["items"]:
            if item.get("deleted"):
                assert set(item) == {"type", "id", "change_seq", "deleted"}
                continue
            record = db_session.get(sync.TYPES[item["type"]].model, item["id"])
            # The marshmallow path (single records, push answers) is the reference.
            expected = sync._dump_one(db_session, actor, item["type"], record)
            assert _encoded(item["data"]) == _encoded(expected), item["type"]
            assert (item["version"], item["change_seq"]) == (record.version,
                                                              record.change_seq)
    finally:
        set_output_crs(None)
    return body


@pytest.fixture
def register(member, collect, client, db_session):
    """One record of every type in G111 with most of their fields set, and a second person
    (to end and to move away later)."""
    chief, chief_user = member("grid_chief", G111)
    worker, worker_user = member("grid_worker", G111)
    at = point_in(G111, accuracy_m=5, captured_at="2026-11-30T08:00:00+08:00")
    building = collect(chief, "buildings", name="3幢", address="东门路1号", floors=6,
                       units=2, leader_name="张三", leader_phone="13812345678", location=at)
    house = collect(chief, "houses", building_id=building["id"], unit="2单元", floor=3,
                    room="301", use="rented", floor_area_m2=80.0, owner_name="李四",
                    owner_phone="13912345678", rental_start="2026-01-01",
                    location=point_in(G111, crs="gcj02", accuracy_m=3.25,
                                      captured_at="2026-11-30T08:00:00.123456+08:00"))
    household = collect(chief, "households", house_id=house["id"], household_no="3301830001")
    person = collect(chief, "persons", household_id=household["id"], name='王"秀英\\',
                     id_number=id_number(), phone="13712345678", ethnicity="汉族",
                     relation_to_head="head",
                     tags=[{"tag": "elderly_alone", "note": "独居\n二楼"},
                           {"tag": "drug_user"}])
    other = collect(chief, "persons", at=G111, name="赵六")
    response = client.post("/organisations", headers=chief, json={
        "client_uuid": str(uuid.uuid4()), "location": point_in(G111), "name": "富春小吃店",
        "kind": "individual_business", "employees": 3, "phone": "0571-1234567",
        "risk_flags": ["nine_small_places"], "building_id": building["id"]})
    assert response.status_code == 201, response.get_json()
    organisation = response.get_json()
    db_session.execute(sa.text("UPDATE buildings SET needs_review = true, review_reasons = "
                               "ARRAY['位置待核实'] WHERE id = :id"), {"id": building["id"]})
    db_session.commit()
    return {"chief": (chief, chief_user), "worker": (worker, worker_user),
            "ids": {"building": building["id"], "house": house["id"],
                    "household": household["id"], "person": person["id"],
                    "organisation": organisation["id"]}, "other": other}


@pytest.mark.parametrize("role", ["chief", "worker"])
@pytest.mark.parametrize("crs", [None, "gcj02", "bd09"])
def test_a_full_sync_is_what_the_schemas_dump(register, client, db_session, role, crs):
    headers, user = register[role]
    body = _pull_and_compare(client, db_session, headers, actor_of(db_session, user),
                             crs=crs)
    got = {(i["type"], i["id"]) for i in body["items"]}
    assert {(t, i) for t, i in register["ids"].items()} <= got
    person = next(i["data"] for i in body["items"] if i["id"] == register["ids"]["person"]
                  and i["type"] == "person")
    assert [t["tag"] for t in person["tags"]] == (
        ["elderly_alone", "drug_user"] if role == "chief" else ["elderly_alone"])
    house = next(i["data"] for i in body["items"] if i["type"] == "house")
    assert house["floor_area_m2"] == 80.0 and isinstance(house["floor_area_m2"], float)
    assert house["location"]["crs"] == (crs or "wgs84")


def test_ended_records_and_tombstones_are_what_they_were(register, client, db_session,
                                                         member):
    headers, user = register["worker"]
    actor = actor_of(db_session, user)
    cursor = _pull_and_compare(client, db_session, headers, actor)["next_cursor"]
    chief = register["chief"][0]
    other = register["other"]
    ended = client.post(f"/organisations/{register['ids']['organisation']}/end",
                        headers=chief, json={"reason": "closed", "version": 1})
    assert ended.status_code == 200, ended.get_json()
    _, staff = member("community_staff", "330183001001")
    staff_actor = actor_of(db_session, staff)
    away, _ = create_household(db_session, staff_actor,
                                        {"location": _fix(G112)}, None)
    move_person(db_session, staff_actor, other["id"], away.id, "head", 1)
    db_session.commit()
    body = _pull_and_compare(client, db_session, headers, actor, cursor, crs="gcj02")
    kinds = [(i["type"], i["id"], bool(i.get("deleted"))) for i in body["items"]]
    assert kinds == [("organisation", register["ids"]["organisation"], False),
                     ("person", other["id"], True)]
    assert body["items"][0]["data"]["ended_at"] is not None


def _fix(code: str):
    """A location as the registry's services take it (loaded by the Point field)."""
    return Point().deserialize(point_in(code))

"""Building occupancy (楼栋入住): the households and present persons per building that the
registry's triggers keep (migration 0010) equal a live count of the register after every
kind of change, whichever way it was written, and the maps show them."""

from __future__ import annotations

import uuid

import sqlalchemy as sa

from grid.registry import counts
from tests.fixtures.areas import C11, G111, G211
from tests.fixtures.http import at
from tests.fixtures.ledgers import PERSON_HEADER, csv_bytes, id_number, upload

# what the maps counted live before the roll-up: households not ended in a house not
# ended; persons not ended and present in such a household
LIVE = """
SELECT hs.building_id, count(DISTINCT h.id),
       count(p.id) FILTER (WHERE p.ended_at IS NULL AND p.status = 'present')
FROM houses hs
JOIN households h ON h.house_id = hs.id AND h.ended_at IS NULL
LEFT JOIN persons p ON p.household_id = h.id
WHERE hs.ended_at IS NULL
GROUP BY hs.building_id
"""
KEPT = """
SELECT building_id, sum(households), sum(persons) FROM building_occupancy
GROUP BY building_id HAVING sum(households) <> 0 OR sum(persons) <> 0
"""


def occupancy(db_session) -> dict[int, tuple[int, int]]:
    """{building id: (households, persons)} from the roll-up, after checking that it equals
    the live count."""
    def rows(sql: str) -> dict:
        return {b: (int(h), int(p)) for b, h, p in db_session.execute(sa.text(sql))
                if (h, p) != (0, 0)}

    kept = rows(KEPT)
    assert kept == rows(LIVE)
    return kept


def test_occupancy_follows_every_kind_of_change(api, db_session, tree):
    w = api("grid_worker", G111, G211)
    chain = w.chain(G111)
    b1, house, household = chain["building"]["id"], chain["house"], chain["household"]
    spouse = w.person(household, name="李秀英", relation_to_head="spouse")
    child = w.person(household, name="王小明", relation_to_head="child")
    assert occupancy(db_session)[b1] == (1, 3)

    # a person moves out, another dies: both leave the count
    w.ok(w.post(f"/persons/{spouse['id']}/end", {"status": "moved_out", "version": 1}))
    w.ok(w.post(f"/persons/{child['id']}/end", {"status": "deceased", "version": 1}))
    assert occupancy(db_session)[b1] == (1, 1)

    # a person moves to a household of another building (another grid)
    other = w.building(G211, name="8幢", location=at(G211))
    b2 = other["id"]
    elsewhere = w.household(w.house(other, room="101"))
    lodger = w.person(household, name="张伟", relation_to_head="tenant")
    assert occupancy(db_session)[b1] == (1, 2)
    w.ok(w.post(f"/persons/{lodger['id']}/move",
                {"household_id": elsewhere["id"], "version": 1}))
    kept = occupancy(db_session)
    assert (kept[b1], kept[b2]) == ((1, 1), (1, 1))

    # the household moves house into the other building, members and all
    new_house = w.house(other, room="102")
    w.ok(w.patch(f"/households/{household['id']}", {"house_id": new_house["id"],
                                                     "version": 1}))
    kept = occupancy(db_session)
    assert b1 not in kept and kept[b2] == (2, 2)

    # the lodger's household ends once its member has left for one with no house
    homeless = w.household(location=at(G211))
    w.ok(w.post(f"/persons/{lodger['id']}/move",
                {"household_id": homeless["id"], "version": 2}))
    w.ok(w.post(f"/households/{elsewhere['id']}/end", {"reason": "merged", "version": 1}))
    assert occupancy(db_session)[b2] == (1, 1)

    # a house moved to another building (a correction), then a house ended
    db_session.execute(sa.text("UPDATE houses SET building_id = :b WHERE id = :h"),
                       {"b": b1, "h": new_house["id"]})
    kept = occupancy(db_session)
    assert kept[b1] == (1, 1) and b2 not in kept
    db_session.execute(sa.text("UPDATE houses SET ended_at = now() WHERE id = :h"),
                       {"h": new_house["id"]})
    assert b1 not in occupancy(db_session)
    db_session.execute(sa.text("UPDATE houses SET ended_at = NULL WHERE id = :h"),
                       {"h": new_house["id"]})
    assert occupancy(db_session)[b1] == (1, 1)
    # editing what does not count (a name, a phone) changes nothing
    rows = db_session.scalar(sa.text("SELECT count(*) FROM building_occupancy"))
    db_session.execute(sa.text("UPDATE persons SET name = name || '（改）'"))
    db_session.execute(sa.text("UPDATE households SET household_no = 'H9'"))
    assert db_session.scalar(sa.text("SELECT count(*) FROM building_occupancy")) == rows
    # the first house stays (not ended), now empty
    assert db_session.scalar(sa.text("SELECT ended_at IS NULL FROM houses WHERE id = :h"),
                             {"h": house["id"]})
    # the triggers and the daily recount (registry.counts) count the same thing
    assert counts.recount_occupancy(db_session) == {}


def test_sync_push_ledger_copy_and_bulk_writes_are_counted(api, db_session, client, tree):
    w = api("grid_worker", G111)
    staff = api("community_staff", C11)  # may import ledgers
    chain = w.chain(G111)
    building = chain["building"]["id"]
    household = w.ok(w.patch(f"/households/{chain['household']['id']}",
                             {"household_no": "H001", "version": 1}))

    # a phone's offline batch adds a member
    response = client.post("/sync/push", headers=w.headers, json={"items": [
        {"op": "create", "type": "person", "client_uuid": str(uuid.uuid4()),
         "data": {"name": "离线登记", "household_id": household["id"]}}]})
    assert response.status_code == 200 and response.get_json()["results"][0]["status"] == 201
    assert occupancy(db_session)[building] == (1, 2)

    # a ledger import COPYs persons into the household by its 户号
    ledger = [PERSON_HEADER] + [
        [i, f"导入{i}", id_number(100 + i), "", "汉族", "其他", "户籍人口", "人户同在", "H001",
         "东门路1号", G111] for i in range(1, 6)]
    staff.ok(upload(staff, "persons", csv_bytes(ledger)), 201)
    assert occupancy(db_session)[building] == (1, 7)

    # bulk SQL: 500 persons in one INSERT … SELECT, then a bulk end and a delete
    db_session.execute(sa.text(
        "INSERT INTO persons (source, area_id, name, household_id, population_type, "
        "registration_situation, status, needs_review, version) "
        "SELECT 'import', :area, '批量' || i, :hh, 'registered', 'both_here', 'present', "
        "false, 1 FROM generate_series(1, 500) AS i"),
        {"area": tree[G111], "hh": household["id"]})
    assert occupancy(db_session)[building] == (1, 507)
    db_session.execute(sa.text(
        "UPDATE persons SET status = 'moved_out', ended_at = now() "
        "WHERE name LIKE '批量%' AND right(name, 1) IN ('1', '2')"))
    assert occupancy(db_session)[building] == (1, 407)
    db_session.execute(sa.text("DELETE FROM persons WHERE name LIKE '批量%'"))
    assert occupancy(db_session)[building] == (1, 7)

    # the worker's folding keeps the sums and leaves one row per building
    assert counts.compact_occupancy(db_session)["folded_buildings"] >= 1
    assert occupancy(db_session)[building] == (1, 7)
    assert db_session.execute(sa.text(
        "SELECT count(*) = count(DISTINCT building_id) FROM building_occupancy")).scalar()

    # and the map shows it
    body = w.ok(w.get(f"/areas/{tree[G111]}/map"))
    [feature] = [f for f in body["buildings"]["features"] if f["id"] == building]
    assert (feature["properties"]["households"], feature["properties"]["persons"]) == (1, 7)
    assert counts.recount_occupancy(db_session) == {}  # the recount's rule is the triggers'


def test_the_daily_recount_puts_a_drift_right(worker, db_session):
    chain = worker.chain(G111)
    building = chain["building"]["id"]
    assert counts.recount_occupancy(db_session) == {}  # nothing to put right
    db_session.execute(sa.text("INSERT INTO building_occupancy (building_id, households, "
                               "persons) VALUES (:b, 0, 5)"), {"b": building})
    assert counts.recount_occupancy(db_session)["drifted"] == 1
    assert occupancy(db_session)[building] == (1, 1)
    assert db_session.execute(sa.text(
        "SELECT count(*) = count(DISTINCT building_id) FROM building_occupancy")).scalar()

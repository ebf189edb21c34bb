"""Feeds in from other systems (POST /feeds/batches): idempotent by the system's record key,
provenance per field, empty fields filled, what a grid worker collected never overwritten
(a review item in their tasks instead, which they keep, replace or edit), and a report per
batch with each rejected row's reasons."""

from __future__ import annotations

import sqlalchemy as sa

from grid.registry.models import Person
from tests.fixtures.areas import G111, G112
from tests.fixtures.http import at
from tests.fixtures.registry import ID_FEMALE_1988, ID_MORE, ID_WITH_X, USCC_A


def person_row(key: str, **fields) -> dict:
    return {"record_key": key, "name": "王秀英", "location": at(G111), **fields}


def test_a_batch_creates_records_once_and_reports_rejections(system, worker, db_session):
    rows = [person_row("P1", id_number=ID_MORE[0], phone="13812345678"),
            person_row("P2", id_number="110101198001010011"),  # bad check character
            person_row("P3", location=None),
            {"record_key": "P4"},  # no name
            person_row("P1", id_number=ID_MORE[1])]  # the same key twice
    report = system.ok("person", rows)
    assert (report["created"], report["rejected"], report["received"]) == (1, 4, 5)
    reasons = {r["row"]: r for r in report["rejections"]}
    assert set(reasons) == {1, 2, 3, 4}
    assert "id_number" in reasons[1]["errors"] and reasons[1]["record_key"] == "P2"
    assert "location" in reasons[2]["errors"]
    assert "name" in reasons[3]["errors"]
    assert "record_key" in reasons[4]["errors"]
    again = system.ok("person", rows[:1])
    assert (again["created"], again["updated"], again["unchanged"]) == (0, 0, 1)
    people = db_session.scalars(sa.select(Person).where(Person.name == "王秀英")).all()
    assert len(people) == 1
    person = people[0]
    assert person.source == "other_system" and person.phone_masked == "138****5678"
    assert person.id_number_enc and ID_MORE[0] not in person.id_number_enc
    # the grid's worker sees it, masked, with its provenance per field
    shown = worker.ok(worker.get(f"/persons/{person.id}"))
    assert shown["phone"] == "138****5678"
    prov = worker.ok(worker.get(f"/feeds/provenance/person/{person.id}"))
    assert prov["source"] == "other_system"
    assert prov["fields"]["phone"]["client_id"] == system.id
    assert prov["fields"]["phone"]["record_key"] == "P1"
    assert prov["fields"]["phone"]["source"] == "other_system"
    assert prov["feeds"][0]["client"] == system.name


def test_empty_fields_are_filled_and_systems_values_updated(system, worker, db_session):
    made = worker.person(name="李建国", location=at(G111))  # collected without phone/ID
    system.ok("person", [person_row("P9", name="李建国", id_number=ID_WITH_X,
                                    ethnicity="汉族")])
    # the ID number joined the worker's record? No: it had none, so this is a new person;
    # link by ID number instead: the worker's record gets one first
    worker.ok(worker.patch(f"/persons/{made['id']}", {"id_number": ID_FEMALE_1988},
                           headers={"If-Match": f'"{made["version"]}"'}))
    report = system.ok("person", [person_row("Q1", name="李建国", id_number=ID_FEMALE_1988,
                                             phone="13912345678", ethnicity="汉族")])
    assert (report["created"], report["updated"], report["queued_for_review"]) == (0, 1, 0)
    person = worker.ok(worker.get(f"/persons/{made['id']}"))
    assert person["phone"] == "139****5678" and person["ethnicity"] == "汉族"
    prov = worker.ok(worker.get(f"/feeds/provenance/person/{made['id']}"))
    assert prov["source"] == "grid_worker" and prov["fields"]["phone"]["record_key"] == "Q1"
    assert "name" not in prov["fields"]  # unchanged: still the worker's
    # a value that came from a system is updated by a system
    report = system.ok("person", [person_row("Q1", name="李建国", id_number=ID_FEMALE_1988,
                                             ethnicity="满族")])
    assert report["updated"] == 1
    assert worker.ok(worker.get(f"/persons/{made['id']}"))["ethnicity"] == "满族"


def test_a_disagreement_with_the_worker_becomes_a_review_item(system, worker, api,
                                                              db_session):
    made = worker.person(name="张三", id_number=ID_FEMALE_1988, phone="13700000001",
                         location=at(G111))
    report = system.ok("person", [person_row("K1", name="张三丰", id_number=ID_FEMALE_1988,
                                             phone="13700000002")])
    assert (report["queued_for_review"], report["updated"]) == (1, 0)
    person = worker.ok(worker.get(f"/persons/{made['id']}"))
    assert person["name"] == "张三" and person["phone"] == "137****0001"  # not overwritten
    tasks = worker.ok(worker.get("/me/tasks"))
    checks = {c["field"]: c for c in tasks["checks"]}
    assert set(checks) == {"name", "phone"} and tasks["checks_total"] == 2
    assert checks["name"]["current"] == "张三" and checks["name"]["proposed"] == "张三丰"
    assert checks["name"]["current_source"]["source"] == "grid_worker"
    assert checks["name"]["proposed_source"]["client_id"] == system.id
    assert checks["phone"]["proposed"] == "137****0002"  # masked
    # the same batch again: still one open item per field, nothing more
    system.ok("person", [person_row("K1", name="张三丰", id_number=ID_FEMALE_1988,
                                    phone="13700000002")])
    assert worker.ok(worker.get("/me/tasks"))["checks_total"] == 2
    # a worker of another grid sees none of it
    other = api("grid_worker", G112)
    assert other.ok(other.get("/me/tasks"))["checks"] == []
    assert other.post(f"/review-items/{checks['name']['id']}/resolve",
                      {"decision": "keep", "version": 1}).status_code == 404
    # keep the name (versioned), replace the phone
    stale = worker.post(f"/review-items/{checks['name']['id']}/resolve",
                        {"decision": "keep", "version": 9})
    assert stale.status_code == 412 and stale.get_json()["current"]["field"] == "name"
    kept = worker.ok(worker.post(f"/review-items/{checks['name']['id']}/resolve",
                                 {"decision": "keep", "version": 1}))
    assert kept["state"] == "kept"
    assert worker.ok(worker.post(f"/review-items/{checks['name']['id']}/resolve",
                                 {"decision": "keep", "version": 1}))["state"] == "kept"
    assert worker.post(f"/review-items/{checks['name']['id']}/resolve",
                       {"decision": "replace", "version": 2}).status_code == 409
    worker.ok(worker.post(f"/review-items/{checks['phone']['id']}/resolve",
                          {"decision": "replace", "version": 1}))
    person = worker.ok(worker.get(f"/persons/{made['id']}"))
    assert person["name"] == "张三" and person["phone"] == "137****0002"
    assert worker.ok(worker.get("/me/tasks"))["checks"] == []
    prov = worker.ok(worker.get(f"/feeds/provenance/person/{made['id']}"))
    assert prov["fields"]["name"]["verified"] and prov["fields"]["phone"]["verified"]
    # the proposal the worker kept does not come back
    system.ok("person", [person_row("K1", name="张三丰", id_number=ID_FEMALE_1988)])
    assert worker.ok(worker.get("/me/tasks"))["checks"] == []


def test_the_worker_edits_a_review_item_with_a_checked_value(system, worker):
    made = worker.organisation(uscc=USCC_A, employees=120)
    system.ok("organisation", [{"record_key": "O1", "name": "富春制衣有限公司",
                                "uscc": USCC_A, "employees": 300}])
    item = worker.ok(worker.get("/me/tasks"))["checks"][0]
    assert (item["field"], item["current"], item["proposed"]) == ("employees", 120, 300)
    bad = worker.post(f"/review-items/{item['id']}/resolve",
                      {"decision": "edit", "value": -5, "version": 1})
    assert bad.status_code == 422 and "value" in bad.get_json()["errors"]["json"]
    worker.ok(worker.post(f"/review-items/{item['id']}/resolve",
                          {"decision": "edit", "value": 280, "version": 1}))
    assert worker.ok(worker.get(f"/organisations/{made['id']}"))["employees"] == 280


def test_households_and_indicators_follow_their_parents_keys(system, worker, db_session):
    system.ok("building", [{"record_key": "B1", "name": "7幢", "location": at(G111)}])
    system.ok("house", [{"record_key": "H1", "building_key": "B1", "room": "502"}])
    system.ok("household", [{"record_key": "F1", "house_key": "H1", "household_no": "8801"}])
    report = system.ok("person", [{"record_key": "P1", "name": "赵六", "household_key": "F1",
                                   "relation_to_head": "head"},
                                  {"record_key": "P2", "name": "钱七", "household_key": "nope"}])
    assert report["created"] == 1 and report["rejections"][0]["errors"] == {
        "household_key": ["No current household with this key from your system."]}
    person = db_session.scalars(sa.select(Person).where(Person.name == "赵六")).one()
    assert worker.ok(worker.get(f"/households/{person.household_id}/members"))[0]["name"] \
        == "赵六"
    system.ok("organisation", [{"record_key": "O1", "name": "富春制衣", "location": at(G111)}])
    report = system.ok("organisation_indicator", [
        {"record_key": "I1", "organisation_key": "O1", "month": "2026-01", "water_m3": 12.5}])
    assert report["created"] == 1


def test_unsigned_or_wrong_kind_callers_are_refused(system, client, api):
    assert client.post("/feeds/batches", json={"kind": "person", "rows": []}).status_code == 401
    assert system.send("person", [person_row("X")], secret="wrong").status_code == 401
    assert system.send("person", []).status_code == 422


def test_a_workers_correction_of_a_fed_value_is_theirs(system, worker, db_session):
    system.ok("person", [person_row("C1", name="孙八", ethnicity="汉")])
    person = db_session.scalars(sa.select(Person).where(Person.name == "孙八")).one()
    worker.ok(worker.patch(f"/persons/{person.id}", {"ethnicity": "汉族"},
                           headers={"If-Match": f'"{person.version}"'}))
    report = system.ok("person", [person_row("C1", name="孙八", ethnicity="汉")])
    assert report["queued_for_review"] == 1
    assert worker.ok(worker.get(f"/persons/{person.id}"))["ethnicity"] == "汉族"
    check = worker.ok(worker.get("/me/tasks"))["checks"][0]
    assert (check["field"], check["current"], check["proposed"]) == ("ethnicity", "汉族", "汉")


def test_a_room_the_register_has_is_that_house(system, worker):
    system.ok("building", [{"record_key": "B1", "name": "9幢", "location": at(G111)}])
    report = system.ok("house", [{"record_key": "H1", "building_key": "B1", "unit": "1单元",
                                  "room": "301"},
                                 {"record_key": "H2", "building_key": "B1", "unit": "1单元",
                                  "room": "301", "floor": 3}])
    assert (report["created"], report["rejected"]) == (1, 1)
    assert "room" in report["rejections"][0]["errors"]
    again = system.ok("house", [{"record_key": "H3", "building_key": "B1", "unit": "1单元",
                                 "room": "301", "floor": 3}])
    assert (again["created"], again["updated"]) == (0, 1)  # the same house, floor filled


def test_a_month_a_worker_recorded_is_reviewed_not_overwritten(system, worker):
    org = worker.organisation(uscc=USCC_A)
    worker.ok(worker.put(f"/organisations/{org['id']}/indicators/2026-02",
                         {"water_m3": 40.0}))
    system.ok("organisation", [{"record_key": "O1", "name": "富春制衣有限公司", "uscc": USCC_A}])
    report = system.ok("organisation_indicator", [
        {"record_key": "I1", "organisation_key": "O1", "month": "2026-02", "water_m3": 55.5,
         "electricity_kwh": 1200}])
    assert report["queued_for_review"] == 1
    months = worker.ok(worker.get(f"/organisations/{org['id']}/indicators"))
    feb = next(m for m in months if m["month"] == "2026-02")
    assert feb["water_m3"] == 40.0 and feb["electricity_kwh"] == 1200  # filled, not replaced
    item = worker.ok(worker.get("/me/tasks"))["checks"][0]
    assert (item["field"], item["current"], item["proposed"]) == (
        "indicators.2026-02.water_m3", 40.0, 55.5)
    worker.ok(worker.post(f"/review-items/{item['id']}/resolve",
                          {"decision": "replace", "version": item["version"]}))
    months = worker.ok(worker.get(f"/organisations/{org['id']}/indicators"))
    assert next(m for m in months if m["month"] == "2026-02")["water_m3"] == 55.5

"""Residents' own declarations (自主申报, /declarations): a resident declares a fact about
their own household; it reaches the grid worker's tasks; only an accepted declaration
changes the register (with `self_declared` provenance); a refused one does not, and the
resident sees why. Idempotent by client_uuid, rate-limited, photos private."""

from __future__ import annotations

import uuid

import sqlalchemy as sa

from grid.registry.models import Person
from tests.conftest import inbox
from tests.fixtures.areas import C11, C21, G111, G112
from tests.fixtures.cases import photo
from tests.fixtures.http import at
from tests.fixtures.registry import ID_FEMALE_1988, ID_MORE


def declaration(kind: str = "moving_in", **facts) -> dict:
    return {"client_uuid": str(uuid.uuid4()), "kind": kind, "address": "春江路1号3幢301",
            "location": at(G111), "facts": {"name": "王小明", "id_number": ID_MORE[2],
                                            "phone": "13812340000", **facts}}


def visit(worker, household_id: int) -> int:
    body = {"household_id": household_id, "type": "inspection", "content": "入户核实申报",
            "location": at(G111)}
    return worker.ok(worker.post("/visits", body), 201)["id"]


def test_an_accepted_declaration_changes_the_register(api, worker, db_session):
    resident = api("resident", C11)
    household = worker.chain(G111)["household"]
    body = {**declaration(), "photo_ids": [photo(resident)]}
    made = resident.ok(resident.post("/declarations", body), 201)
    assert made["state"] == "submitted" and made["needs_visit"]
    assert made["id_number"] == "110101************" and made["phone"] == "138****0000"
    assert made["actions"] == ["withdraw"]
    # the same request again is the same declaration
    again = resident.post("/declarations", body)
    assert again.status_code == 200 and again.get_json()["id"] == made["id"]
    # the grid's worker has it in their tasks, and was told
    checks = worker.ok(worker.get("/me/tasks"))["checks"]
    assert [(c["type"], c["id"], c["kind"]) for c in checks] == [
        ("declaration", made["id"], "moving_in")]
    assert inbox(db_session, worker.user, "declaration_new")
    assert api("grid_worker", G112).ok(api("grid_worker", G112).get("/me/tasks"))["checks"] \
        == []
    shown = worker.ok(worker.get(f"/declarations/{made['id']}"))
    assert set(shown["actions"]) == {"accept", "refuse"}
    # accepting needs the visit that checked it
    url = f"/declarations/{made['id']}/actions/accept"
    missing = worker.post(url, {"household_id": household["id"], "version": 1})
    assert missing.status_code == 422 and "visit_id" in missing.get_json()["errors"]["json"]
    assert db_session.scalar(sa.select(Person.id).where(Person.name == "王小明")) is None
    stale = worker.post(url, {"household_id": household["id"], "version": 7})
    assert stale.status_code == 412 and stale.get_json()["current"]["id"] == made["id"]
    done = worker.ok(worker.post(url, {"household_id": household["id"],
                                       "visit_id": visit(worker, household["id"]),
                                       "version": 1}))
    assert done["state"] == "accepted" and done["result"]["type"] == "person"
    person = worker.ok(worker.get(f"/persons/{done['result']['id']}"))
    assert person["name"] == "王小明" and person["household_id"] == household["id"]
    assert person["phone"] == "138****0000"
    prov = worker.ok(worker.get(f"/feeds/provenance/person/{person['id']}"))
    assert prov["source"] == "self_declared"
    assert prov["fields"]["id_number"]["declaration_id"] == made["id"]
    # the resident sees it accepted, and was told; nothing is left to decide
    mine = resident.ok(resident.get("/declarations"))
    assert [(d["id"], d["state"]) for d in mine] == [(made["id"], "accepted")]
    assert inbox(db_session, resident.user, "declaration_decided")
    again = worker.post(url, {"household_id": household["id"], "version": 1})
    assert again.status_code == 200  # a resend of the same step
    assert worker.post(f"/declarations/{made['id']}/actions/refuse",
                       {"reason": "x", "version": done["version"]}).status_code == 409


def test_a_refused_declaration_leaves_the_register_and_says_why(api, worker, db_session):
    resident = api("resident", C11)
    person = worker.person(name="李四", id_number=ID_FEMALE_1988, phone="13700000001")
    made = resident.ok(resident.post("/declarations", declaration(
        "phone_change", id_number=ID_FEMALE_1988, phone="13711112222")), 201)
    url = f"/declarations/{made['id']}/actions/refuse"
    assert worker.post(url, {"version": 1}).status_code == 422  # a reason is required
    worker.ok(worker.post(url, {"reason": "电话核实不符，请本人到社区办理", "version": 1}))
    assert worker.ok(worker.get(f"/persons/{person['id']}"))["phone"] == "137****0001"
    mine = resident.ok(resident.get(f"/declarations/{made['id']}"))
    assert mine["state"] == "refused" and mine["refusal_reason"] == "电话核实不符，请本人到社区办理"
    # another phone change, accepted: the person is found by the declared ID number
    made = resident.ok(resident.post("/declarations", declaration(
        "phone_change", id_number=ID_FEMALE_1988, phone="13711112222")), 201)
    worker.ok(worker.post(f"/declarations/{made['id']}/actions/accept", {"version": 1}))
    assert worker.ok(worker.get(f"/persons/{person['id']}"))["phone"] == "137****2222"


def test_residents_see_their_own_and_declare_where_they_live(api, worker):
    resident, neighbour = api("resident", C11), api("resident", C11)
    made = resident.ok(resident.post("/declarations", declaration("newborn")), 201)
    assert neighbour.get(f"/declarations/{made['id']}").status_code == 404
    assert neighbour.ok(neighbour.get("/declarations")) == []
    assert neighbour.post(f"/declarations/{made['id']}/actions/withdraw",
                          {"version": 1}).status_code == 404
    assert api("grid_worker", G112).get(f"/declarations/{made['id']}").status_code == 404
    elsewhere = api("resident", C21)
    response = elsewhere.post("/declarations", declaration("newborn"))
    assert response.status_code == 422 and "location" in response.get_json()["errors"]["json"]
    bad = resident.post("/declarations", declaration("moving_in", id_number="123"))
    assert bad.status_code == 422
    withdrawn = resident.ok(resident.post(f"/declarations/{made['id']}/actions/withdraw",
                                          {"version": 1}))
    assert withdrawn["state"] == "withdrawn"
    assert worker.ok(worker.get("/me/tasks"))["checks"] == []


def test_declarations_are_rate_limited(api, app):
    resident = api("resident", C11)
    app.config["DECLARATION_LIMIT"] = 2
    try:
        for _ in range(2):
            resident.ok(resident.post("/declarations", declaration("newborn")), 201)
        over = resident.post("/declarations", declaration("newborn"))
        assert over.status_code == 429 and over.headers.get("Retry-After")
    finally:
        app.config.pop("DECLARATION_LIMIT")

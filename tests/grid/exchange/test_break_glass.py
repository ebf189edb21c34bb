"""Break-the-glass (紧急授权, /break-glass/grants): one record outside the actor's scope,
for a limited time, through the register's one scope filter; every read audited with the
grant; the auditors and the record's grid chief told at once; an auditor closes it with a
finding. Without the permission, after expiry or once closed, the record is a 404 again."""

from __future__ import annotations

from datetime import timedelta

from grid.exchange.models import AccessGrant
from server import clock
from tests.conftest import inbox
from tests.fixtures.areas import G111, G112
from tests.fixtures.http import audit_rows

REASON = "火灾现场需核实被困人员及家属联系方式"


def _open(actor, person_id: int, **extra):
    return actor.post("/break-glass/grants", {"object_type": "person", "object_id": person_id,
                                              "reason": REASON, **extra})


def test_a_grant_opens_that_one_record_for_a_while_audited_and_told(api, worker, db_session):
    chain = worker.chain(G111)
    person, other = chain["person"], worker.person(name="另一人")
    outsider = api("grid_chief", G112)
    chief = api("grid_chief", G111)
    auditor = api("auditor")
    assert outsider.get(f"/persons/{person['id']}").status_code == 404
    grant = outsider.ok(_open(outsider, person["id"]), 201)
    assert grant["active"] and grant["state"] == "open" and grant["reads"] == 0
    expires = clock.now() + timedelta(minutes=60)
    assert outsider.ok(outsider.get(f"/persons/{person['id']}"))["name"] == person["name"]
    outsider.ok(outsider.get(f"/persons/{person['id']}"))
    # that one record only, for reading only
    assert outsider.get(f"/persons/{other['id']}").status_code == 404
    assert outsider.get(f"/households/{chain['household']['id']}").status_code == 404
    assert outsider.patch(f"/persons/{person['id']}", {"name": "改名"},
                          headers={"If-Match": '"1"'}).status_code == 404
    reads = audit_rows(db_session, action="break_glass_read")
    assert [r.changes["grant_id"] for r in reads] == [grant["id"], grant["id"]]
    assert all(r.actor_id == outsider.user.id and r.object_id == str(person["id"])
               for r in reads)
    opened = audit_rows(db_session, action="break_glass_opened")
    assert opened[0].purpose == REASON
    # the auditor and the record's grid chief were told at once (urgent)
    for user in (auditor.user, chief.user):
        notes = inbox(db_session, user, "break_glass_opened")
        assert len(notes) == 1 and notes[0].urgent and notes[0].data["grant_id"] == grant["id"]
    assert inbox(db_session, worker.user, "break_glass_opened") == []
    assert outsider.ok(outsider.get(f"/break-glass/grants/{grant['id']}"))["reads"] == 2
    # expired: a 404 again
    row = db_session.get(AccessGrant, grant["id"])
    row.expires_at = clock.now() - timedelta(seconds=1)
    db_session.commit()
    assert expires > row.expires_at
    assert outsider.get(f"/persons/{person['id']}").status_code == 404


def test_without_the_permission_nothing_opens(api, worker):
    person = worker.chain(G111)["person"]
    other_worker = api("grid_worker", G112)
    assert _open(other_worker, person["id"]).status_code == 403
    assert other_worker.get(f"/persons/{person['id']}").status_code == 404
    chief = api("grid_chief", G112)
    assert _open(chief, 999999).status_code == 404
    in_scope = api("grid_chief", G111)
    assert _open(in_scope, person["id"]).status_code == 409  # no glass to break


def test_an_auditor_closes_the_grant_with_a_finding(api, worker, db_session):
    person = worker.chain(G111)["person"]
    outsider = api("grid_chief", G112)
    auditor = api("auditor")
    grant = outsider.ok(_open(outsider, person["id"]), 201)
    listed = auditor.ok(auditor.get("/break-glass/grants?state=open"))
    assert [g["id"] for g in listed] == [grant["id"]]
    assert outsider.post(f"/break-glass/grants/{grant['id']}/close",
                         {"finding": "justified", "version": 1}).status_code == 403
    assert auditor.post(f"/break-glass/grants/{grant['id']}/close",
                        {"finding": "justified"}).status_code == 428
    closed = auditor.ok(auditor.post(f"/break-glass/grants/{grant['id']}/close",
                                     {"finding": "justified", "note": "火警属实",
                                      "version": 1}))
    assert closed["state"] == "closed" and not closed["active"]
    assert auditor.ok(auditor.get("/break-glass/grants?state=open")) == []
    assert outsider.get(f"/persons/{person['id']}").status_code == 404
    assert closed["finding"] == "justified" and closed["finding_note"] == "火警属实"
    assert audit_rows(db_session, action="access_grant_close")[0].changes["state"] == [
        "open", "closed"]
    # the same finding again changes nothing; another one is refused
    assert auditor.ok(auditor.post(f"/break-glass/grants/{grant['id']}/close",
                                   {"finding": "justified", "note": "火警属实",
                                    "version": 1}))["version"] == closed["version"]
    assert auditor.post(f"/break-glass/grants/{grant['id']}/close",
                        {"finding": "unjustified",
                         "version": closed["version"]}).status_code == 409
    # the actor sees their own grants, not others'
    mine = outsider.ok(outsider.get("/break-glass/grants"))
    assert [g["id"] for g in mine] == [grant["id"]]
    assert api("grid_chief", G111).ok(api("grid_chief", G111).get("/break-glass/grants")) == []

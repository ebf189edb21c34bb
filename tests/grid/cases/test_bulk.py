"""Bulk actions (POST /cases/bulk-actions): per-case results in the one error shape, each
case in its own savepoint, idempotent by client_uuid, capped at 100 cases."""

from __future__ import annotations

import uuid

import sqlalchemy as sa

from grid.cases.models import Case, CaseEvent
from tests.conftest import assert_error_shape
from tests.fixtures.areas import G111, G112, G121, G211
from tests.fixtures.cases import act, report


def _bulk(who, action: str, cases: list[dict], status: int = 200, key=None, **fields):
    body = {"client_uuid": str(key or uuid.uuid4()), "action": action,
            "items": [{"id": c["id"], "version": c["version"]} for c in cases], **fields}
    response = who.post("/cases/bulk-actions", body)
    assert response.status_code == status, response.get_json()
    return response


def test_bulk_accept_with_one_moved_elsewhere(people, category, db_session):
    """Three reported cases, one accepted by a colleague meanwhile: two go through, the
    third answers 412 with the case as it is now; a case of another street is a 404 and
    does not stop the others."""
    p = people
    a, b, c = (report(p.worker, category, code) for code in (G111, G112, G121))
    other = report(p.worker2, category, G211)
    act(p.dispatcher, p.dispatcher.ok(p.dispatcher.get(f"/cases/{b['id']}")), "accept")
    answer = _bulk(p.dispatcher, "accept", [a, b, c, other]).get_json()
    by_id = {r["id"]: r for r in answer["results"]}
    assert [r["id"] for r in answer["results"]] == [a["id"], b["id"], c["id"], other["id"]]
    assert (answer["succeeded"], answer["failed"]) == (2, 2)
    for done in (a, c):
        assert by_id[done["id"]]["status"] == 200
        assert by_id[done["id"]]["case"]["state"] == "accepted"
        now = p.dispatcher.ok(p.dispatcher.get(f"/cases/{done['id']}"))
        assert by_id[done["id"]]["case"]["version"] == now["version"] > done["version"]
    stale = by_id[b["id"]]
    assert stale["status"] == 412 and stale["error"]["code"] == 412
    assert stale["error"]["current"]["state"] == "accepted"
    assert stale["error"]["current"]["version"] > b["version"]
    assert by_id[other["id"]]["status"] == 404
    assert "current" not in by_id[other["id"]]["error"]
    states = dict(db_session.execute(sa.select(Case.id, Case.state).where(
        Case.id.in_([a["id"], c["id"], other["id"]]))).all())
    assert states == {a["id"]: "accepted", c["id"]: "accepted", other["id"]: "reported"}


def test_409_names_what_is_allowed_and_dispatch_takes_one_department(people, category,
                                                                    department, db_session):
    p = people
    a, b = report(p.worker, category, G111), report(p.worker, category, G112)
    a = act(p.dispatcher, p.dispatcher.ok(p.dispatcher.get(f"/cases/{a['id']}")), "accept")
    answer = _bulk(p.dispatcher, "dispatch", [a, b], department_id=department.id).get_json()
    first, second = answer["results"]
    assert first["status"] == 200 and first["case"]["state"] == "dispatched"
    assert second["status"] == 409 and "accept" in second["error"]["allowed"]
    assert db_session.scalar(sa.select(Case.department_id).where(Case.id == a["id"])) \
        == department.id
    # a handler cannot accept: the cases of the street are not theirs (404 each)
    refused = _bulk(p.handler, "accept", [b]).get_json()
    assert refused["results"][0]["status"] == 404


def test_the_same_request_again_acts_once(people, category, db_session):
    p = people
    a, b = report(p.worker, category, G111), report(p.worker, category, G112)
    key = uuid.uuid4()
    first = _bulk(p.dispatcher, "accept", [a, b], key=key)
    assert first.headers.get("Idempotent-Replay") is None
    again = _bulk(p.dispatcher, "accept", [a, b], key=key)
    assert again.headers["Idempotent-Replay"] == "true"
    assert again.get_json() == first.get_json()
    accepted = db_session.scalar(sa.select(sa.func.count()).select_from(CaseEvent).where(
        CaseEvent.case_id.in_([a["id"], b["id"]]), CaseEvent.action == "accept"))
    assert accepted == 2  # not four
    other = _bulk(p.dispatcher, "reject", [a, b], status=409, key=key, reason="重复")
    assert_error_shape(other, 409)
    # someone else's UUID is not theirs to read
    assert_error_shape(_bulk(p.dispatcher2, "accept", [a, b], status=409, key=key), 409)


def test_the_batch_is_capped_and_checked(people, category):
    p = people
    a = report(p.worker, category, G111)
    many = [{"id": i, "version": 1} for i in range(1, 102)]
    for items in (many, [], [{"id": a["id"], "version": 1}] * 2):
        response = p.dispatcher.post("/cases/bulk-actions", {
            "client_uuid": str(uuid.uuid4()), "action": "accept", "items": items})
        assert_error_shape(response, 422)
    response = p.dispatcher.post("/cases/bulk-actions", {
        "client_uuid": str(uuid.uuid4()), "action": "merge",
        "items": [{"id": a["id"], "version": a["version"]}]})
    assert_error_shape(response, 422)
    # a field the action needs is an item's 422 (reject needs a reason)
    answer = _bulk(p.dispatcher, "reject", [a]).get_json()
    assert answer["results"][0]["status"] == 422
    assert "reason" in answer["results"][0]["error"]["errors"]["json"]

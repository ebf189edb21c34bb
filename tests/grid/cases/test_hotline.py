"""12345 hotline tickets, server to server (POST /cases/hotline).

An administrator issues a hotline key (the secret is shown once). A ticket signed with it
becomes a case of channel "hotline" in the grid of its point (or of its grid_code), with the
caller's phone masked in every answer; the same ticket again is the same case (200), the
same number with other content a 409. A bad signature, an unknown or disabled key, or a
stale timestamp is a 401 in the one error shape; a key's rate limit answers 429 with
Retry-After. A dispatcher sees the phone in clear only by stating a purpose, and that read
is audited.
"""

from __future__ import annotations

import json
import time

import pytest
import sqlalchemy as sa

from grid.cases.models import Case
from server.apiclients import sign
from tests.conftest import assert_error_shape, inbox
from tests.fixtures.areas import G111, G112, G211
from tests.fixtures.http import at, audit_rows

PHONE = "13812345678"


class Hotline:
    """The 12345 system calling us with its key."""

    def __init__(self, client, key: dict) -> None:
        self.client, self.key_id, self.secret = client, key["key_id"], key["secret"]

    def send(self, ticket: dict, *, key_id: str | None = None, secret: str | None = None,
             timestamp: int | None = None, signature: str | None = None):
        body = json.dumps(ticket, ensure_ascii=False).encode()
        ts = int(time.time()) if timestamp is None else timestamp
        headers = {"X-Api-Key": key_id or self.key_id, "X-Timestamp": str(ts),
                   "X-Signature": signature or sign(secret or self.secret, ts, body),
                   "Content-Type": "application/json"}
        return self.client.post("/cases/hotline", data=body, headers=headers)


def ticket(no: str = "12345-2026-000001", **fields) -> dict:
    return {"ticket_no": no, "category_code": "0102", "description": "小区门口有暴露垃圾",
            "address": "江滨路1号", "location": at(G111), "contact_name": "李先生",
            "contact_phone": PHONE, **fields}


@pytest.fixture
def admin(api):
    return api("admin")


@pytest.fixture
def new_key(admin, client):
    def _new(**fields) -> Hotline:
        body = admin.ok(admin.post("/api-clients", {"name": "12345热线", "kind": "hotline",
                                                    **fields}), 201)
        assert body["secret"] and body["api_key"] == f"{body['key_id']}.{body['secret']}"
        return Hotline(client, body)
    return _new


@pytest.fixture
def hotline(new_key) -> Hotline:
    return new_key()


def _cases(db_session, ticket_no: str) -> list[Case]:
    return list(db_session.scalars(sa.select(Case).where(Case.external_ref == ticket_no)))


def test_the_secret_is_shown_once(admin, hotline):
    listed = admin.ok(admin.get("/api-clients"))
    assert [k["key_id"] for k in listed] == [hotline.key_id]
    assert "secret" not in listed[0] and "api_key" not in listed[0]
    assert hotline.secret not in json.dumps(listed)


def test_only_administrators_issue_keys(api):
    dispatcher = api("street_dispatcher", "330183001")
    assert_error_shape(dispatcher.post("/api-clients", {"name": "x", "kind": "hotline"}), 403)


def test_a_signed_ticket_becomes_a_hotline_case(hotline, people, tree, db_session):
    response = hotline.send(ticket())
    case = response.get_json()
    assert response.status_code == 201, case
    assert (case["channel"], case["state"], case["area_id"]) == ("hotline", "reported",
                                                                 tree[G111])
    assert case["external_ref"] == "12345-2026-000001" and case["stage"] == "accept"
    assert case["contact_phone"] == "138****5678" and case["contact_name"] == "李先生"
    assert case["reporter_id"] is None
    # the street's dispatcher has it in the queue, to accept
    queue = people.dispatcher.ok(people.dispatcher.get("/cases?state=reported"))
    assert [c["id"] for c in queue] == [case["id"]]
    assert [n.kind for n in inbox(db_session, people.dispatcher.user)] == ["case_new"]


def test_the_same_ticket_twice_is_one_case(hotline, db_session):
    first = hotline.send(ticket())
    assert first.status_code == 201
    again = hotline.send(ticket())
    assert again.status_code == 200, again.get_json()
    assert again.get_json()["id"] == first.get_json()["id"]
    assert len(_cases(db_session, "12345-2026-000001")) == 1


def test_the_same_ticket_with_other_content_is_a_conflict(hotline, db_session):
    first = hotline.send(ticket()).get_json()
    body = assert_error_shape(hotline.send(ticket(description="另一件事")), 409)
    assert body["existing"]["id"] == first["id"]
    assert_error_shape(hotline.send(ticket(location=at(G112))), 409)
    assert len(_cases(db_session, "12345-2026-000001")) == 1
    # another ticket number is another case
    assert hotline.send(ticket("12345-2026-000002")).status_code == 201


@pytest.mark.parametrize("tamper", ["signature", "secret", "key", "old", "future",
                                    "no timestamp", "not a number", "non-ascii"])
def test_a_request_that_is_not_signed_right_is_refused(hotline, db_session, tamper):
    now = int(time.time())
    kw = {"signature": {"signature": "0" * 64}, "secret": {"secret": "not-the-secret"},
          "key": {"key_id": "0123456789abcdef"}, "old": {"timestamp": now - 301},
          "future": {"timestamp": now + 301}, "no timestamp": {},
          "not a number": {}, "non-ascii": {"signature": "é" * 64}}[tamper]
    if tamper in ("no timestamp", "not a number"):
        body = json.dumps(ticket()).encode()
        headers = {"X-Api-Key": hotline.key_id, "X-Signature": sign(hotline.secret, now, body),
                   "Content-Type": "application/json"}
        if tamper == "not a number":
            headers["X-Timestamp"] = "yesterday"
        response = hotline.client.post("/cases/hotline", data=body, headers=headers)
    else:
        response = hotline.send(ticket(), **kw)
    assert_error_shape(response, 401)
    assert _cases(db_session, "12345-2026-000001") == []


def test_a_timestamp_within_five_minutes_is_accepted(hotline):
    assert hotline.send(ticket(), timestamp=int(time.time()) - 280).status_code == 201


def test_a_disabled_key_is_refused(admin, hotline):
    keys = admin.ok(admin.get("/api-clients"))
    admin.ok(admin.post(f"/api-clients/{keys[0]['id']}/disable"))
    assert admin.ok(admin.get("/api-clients"))[0]["active"] is False
    assert_error_shape(hotline.send(ticket()), 401)


def test_a_key_of_another_kind_cannot_send_tickets(admin, client):
    body = admin.ok(admin.post("/api-clients", {"name": "某App", "kind": "open311"}), 201)
    assert_error_shape(Hotline(client, body).send(ticket()), 401)


WHY = {"purpose_code": "case_handling", "purpose": "回访核实"}


def test_the_phone_is_seen_in_clear_only_for_a_purpose(hotline, people, db_session):
    case = hotline.send(ticket()).get_json()
    seen = [hotline.send(ticket()).get_data(True)]
    for who in (people.dispatcher, people.worker):
        seen.append(who.get(f"/cases/{case['id']}").get_data(True))
        seen.append(who.get("/cases").get_data(True))
        seen.append(who.get(f"/cases/{case['id']}/timeline").get_data(True))
    assert all(PHONE not in text for text in seen) and "138****5678" in seen[1]
    # and not in the audit log or the database in clear
    assert PHONE not in json.dumps([(a.changes, a.purpose) for a in audit_rows(db_session)],
                                   ensure_ascii=False, default=str)
    assert PHONE not in (db_session.get(Case, case["id"]).contact_phone_enc or "")

    # a worker may not reveal it; a dispatcher must give a purpose
    assert_error_shape(people.worker.post(f"/cases/{case['id']}/contact",
                                          WHY), 403)
    assert_error_shape(people.dispatcher.post(f"/cases/{case['id']}/contact", {}), 422)
    revealed = people.dispatcher.ok(people.dispatcher.post(
        f"/cases/{case['id']}/contact", WHY))
    assert revealed == {"contact_name": "李先生", "contact_phone": PHONE}
    rows = audit_rows(db_session, action="case_contact_revealed")
    assert [(r.actor_id, r.object_id, r.purpose) for r in rows] == [
        (people.dispatcher.user.id, str(case["id"]), "回访核实")]
    # another street's dispatcher: the case does not exist
    assert_error_shape(people.dispatcher2.post(f"/cases/{case['id']}/contact",
                                               WHY), 404)


def test_a_contact_reveal_needs_a_code_and_a_real_purpose(hotline, people, db_session):
    """`{"purpose": "  "}` revealed the phone and audited two spaces."""
    case = hotline.send(ticket()).get_json()
    url = f"/cases/{case['id']}/contact"
    for body, field in (({"purpose": "  "}, "purpose_code"),
                        ({"purpose_code": "case_handling", "purpose": "  "}, "purpose"),
                        ({"purpose_code": "case_handling", "purpose": " 回访 "}, "purpose"),
                        ({"purpose_code": "gossip", "purpose": "回访核实"}, "purpose_code")):
        errors = assert_error_shape(people.dispatcher.post(url, body), 422)["errors"]
        assert field in errors["json"], errors
    assert audit_rows(db_session, action="case_contact_revealed") == []
    revealed = people.dispatcher.ok(people.dispatcher.post(
        url, {"purpose_code": "emergency", "purpose": "  来电人疑似被困，联系确认位置 "}))
    assert revealed["contact_phone"] == PHONE
    rows = audit_rows(db_session, action="case_contact_revealed")
    assert [(r.purpose_code, r.purpose) for r in rows] == [
        ("emergency", "来电人疑似被困，联系确认位置")]


def test_a_refused_contact_reveal_is_audited(hotline, people, db_session):
    case = hotline.send(ticket()).get_json()
    url = f"/cases/{case['id']}/contact"
    assert_error_shape(people.worker.post(url, WHY), 403)
    assert_error_shape(people.dispatcher2.post(url, WHY), 404)
    rows = audit_rows(db_session, action="case_contact_revealed_refused")
    assert [(r.actor_id, r.object_id, r.purpose_code, r.changes["status"]) for r in rows] == [
        (people.worker.user.id, str(case["id"]), "case_handling", 403),
        (people.dispatcher2.user.id, str(case["id"]), "case_handling", 404)]
    assert audit_rows(db_session, action="case_contact_revealed") == []


def test_a_ticket_needs_a_place(hotline, tree):
    no_place = ticket()
    del no_place["location"]
    body = assert_error_shape(hotline.send(no_place), 422)
    assert "location" in str(body["errors"])
    outside = ticket(location={"lon": 120.5, "lat": 30.5, "crs": "wgs84"})
    assert_error_shape(hotline.send(outside), 422)
    unknown = dict(no_place, grid_code="330183009009009")
    assert "grid_code" in str(assert_error_shape(hotline.send(unknown), 422)["errors"])
    assert_error_shape(hotline.send(ticket(category_code="01")), 422)  # a 大类
    assert_error_shape(hotline.send(ticket(category_code="XXXX")), 404)


def test_a_grid_code_puts_the_case_in_that_grid(hotline, tree, people):
    by_code = ticket("12345-2026-000009", grid_code=G211)
    del by_code["location"]
    response = hotline.send(by_code)
    case = response.get_json()
    assert response.status_code == 201, case
    assert case["area_id"] == tree[G211] and case["location"] is None
    # it is the other street's case
    assert [c["id"] for c in people.dispatcher2.ok(people.dispatcher2.get("/cases"))] \
        == [case["id"]]
    assert people.dispatcher.ok(people.dispatcher.get("/cases")) == []
    # the replay is still the same case
    assert hotline.send(by_code).status_code == 200


def test_each_key_has_its_rate_limit(new_key):
    slow, other = new_key(requests_per_minute=2), new_key()
    statuses, last = [], None
    # a minute boundary may fall between two requests: within 2 × limit + 1 requests some
    # minute sees its third one
    for i in range(5):
        last = slow.send(ticket(f"T-{i}"))
        statuses.append(last.status_code)
        if last.status_code == 429:
            break
    assert statuses[:2] == [201, 201] and statuses[-1] == 429, statuses
    body = assert_error_shape(last, 429)
    assert 1 <= int(last.headers["Retry-After"]) <= 60 and body["message"]
    # another key is not slowed down by it
    assert other.send(ticket("T-other")).status_code == 201


def test_an_unsigned_request_learns_nothing_about_the_body(client):
    response = client.post("/cases/hotline", json={"ticket_no": ""})
    assert_error_shape(response, 401)

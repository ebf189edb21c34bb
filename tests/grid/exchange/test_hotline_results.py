"""Results back to the 12345 hotline (回单).

A ticket the hotline sent reports its progress to the hotline client's subscription as
signed events — accepted, rejected with the reason, dispatched with the department,
handled with the result, closed, evaluated — and the hotline asks for a ticket's status
and result by its number, signing the request like the intake (timestamp + "." + path).
Cases from other channels say nothing to the hotline.
"""

from __future__ import annotations

import json
import time

from server.apiclients import sign
from tests.conftest import assert_error_shape
from tests.fixtures.areas import G111
from tests.fixtures.cases import act, report
from tests.fixtures.http import at
from tests.grid.exchange.conftest import verify

TICKET = "12345-2026-000777"


def send_ticket(client, key: dict, no: str = TICKET) -> dict:
    body = json.dumps({"ticket_no": no, "category_code": "T01", "description": "小区门口有暴露垃圾",
                       "address": "江滨路1号", "location": at(G111), "contact_name": "李先生",
                       "contact_phone": "13812345678", "attributes": {"size": "small"}},
                      ensure_ascii=False).encode()
    ts = int(time.time())
    response = client.post("/cases/hotline", data=body, headers={
        "X-Api-Key": key["key_id"], "X-Timestamp": str(ts),
        "X-Signature": sign(key["secret"], ts, body), "Content-Type": "application/json"})
    assert response.status_code == 201, response.get_json()
    return response.get_json()


def ask(client, key: dict, no: str = TICKET, secret: str | None = None, path: str | None = None):
    path = path or f"/exchange/hotline/tickets/{no}"
    ts = int(time.time())
    return client.get(f"/exchange/hotline/tickets/{no}", headers={
        "X-Api-Key": key["key_id"], "X-Timestamp": str(ts),
        "X-Signature": sign(secret or key["secret"], ts, path.encode())})


HOTLINE_TYPES = ["hotline.accepted", "hotline.rejected", "hotline.dispatched",
                 "hotline.handled", "hotline.closed", "hotline.evaluated"]


def test_a_tickets_progress_goes_back_to_the_hotline(client, people, category, department,
                                                     new_client, subscribe, receiver,
                                                     run_worker):
    key = new_client("hotline", "12345热线")
    sub = subscribe(HOTLINE_TYPES, client=key)
    case = send_ticket(client, key)
    d = people.dispatcher
    case = act(d, d.ok(d.get(f"/cases/{case['id']}")), "accept")
    case = act(d, case, "dispatch", department_id=department.id)
    case = act(people.handler, case, "sign")
    case = act(people.handler, case, "handle", result="已清运")
    report(people.worker, category)  # another channel: nothing for the hotline
    for _ in range(4):  # one event of the ticket per run (they go in order)
        run_worker()
    events = [r.event for r in receiver.received]
    assert [e["type"] for e in events] == ["hotline.accepted", "hotline.dispatched",
                                           "hotline.handled"]
    assert all(e["data"]["ticket_no"] == TICKET for e in events)
    assert events[1]["data"]["department"]["name"] == department.name
    assert events[2]["data"]["result"] == "已清运"
    assert all(verify(sub["secret"], r.headers, r.body) for r in receiver.received)

    status = ask(client, key)
    assert status.status_code == 200, status.get_json()
    body = status.get_json()
    assert (body["status"], body["result"], body["department"]["name"]) == (
        "handled", "已清运", department.name)
    assert [p["status"] for p in body["progress"]] == ["accepted", "dispatched", "handled"]


def test_a_rejection_carries_its_reason(client, people, new_client, subscribe, receiver,
                                        run_worker, category):
    key = new_client("hotline", "12345热线")
    subscribe(HOTLINE_TYPES, client=key)
    case = send_ticket(client, key)
    d = people.dispatcher
    act(d, d.ok(d.get(f"/cases/{case['id']}")), "reject", reason="不属于本辖区")
    run_worker()
    [got] = receiver.received
    assert (got.event["type"], got.event["data"]["reason"]) == ("hotline.rejected",
                                                                "不属于本辖区")
    body = ask(client, key).get_json()
    assert (body["status"], body["progress"][0]["detail"]["reason"]) == ("rejected",
                                                                        "不属于本辖区")


def test_the_status_request_is_signed(client, new_client, people, category):
    key = new_client("hotline", "12345热线")
    send_ticket(client, key)
    assert_error_shape(client.get(f"/exchange/hotline/tickets/{TICKET}"), 401)
    assert ask(client, key, secret="wrong").status_code == 401
    # a signature is good for its own path only
    assert ask(client, key, path="/exchange/hotline/tickets/other").status_code == 401
    other = new_client("system", "其他系统")
    assert ask(client, other).status_code == 401  # not a hotline key
    assert_error_shape(ask(client, key, no="12345-nope"), 404)
    assert ask(client, key).get_json()["status"] == "received"

"""Events out (webhooks), against a real local HTTP receiver.

An administrator subscribes a system client to event types, with filters by area subtree
and category; the secret is shown once. A case reported and moved on writes CloudEvents
envelopes to the outbox in the same transaction; the worker POSTs them signed (HMAC-SHA256
over timestamp + "." + body); network errors, 429 (at least Retry-After) and 5xx are
retried with backoff, other 4xx and the last attempt are dead letters; the delivery log
shows every attempt; replay sends again; a case's events reach a subscriber in order; a
rolled-back change sends nothing; personal data is masked unless granted (audited).
"""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
import sqlalchemy as sa

from grid.cases import actions
from grid.cases.models import CaseCategory
from grid.exchange import delivery
from grid.exchange.models import WebhookDelivery
from server import clock, db
from server.jobs import actor_of
from tests.fixtures.areas import G111, G211, S1, S2, D
from tests.fixtures.cases import act, report
from tests.fixtures.http import audit_rows, total
from tests.grid.exchange.conftest import SETTINGS, verify


def deliveries(db_session, sub: dict) -> list[WebhookDelivery]:
    return list(db_session.scalars(sa.select(WebhookDelivery).where(
        WebhookDelivery.subscription_id == sub["id"]).order_by(WebhookDelivery.id)))


def dispatcher_case(people, category, code: str = G111) -> dict:
    case = report(people.worker, category, code)
    return people.dispatcher.ok(people.dispatcher.get(f"/cases/{case['id']}"))


def test_a_signed_cloudevent_reaches_the_receiver(people, category, subscribe, receiver,
                                                  run_worker, admin):
    sub = subscribe(["case.reported", "case.transitioned"])
    assert sub["secret"].startswith("whsec_")
    listed = admin.ok(admin.get("/webhooks/subscriptions"))
    assert "secret" not in listed[0] and sub["secret"] not in json.dumps(listed)
    case = report(people.worker, category)
    assert receiver.received == []  # nothing is sent inside the request
    assert run_worker() == {"claimed": 1, "sent": 1}
    [got] = receiver.received
    assert verify(sub["secret"], got.headers, got.body)
    assert not verify("whsec_other", got.headers, got.body)
    assert got.headers["Content-Type"].startswith("application/cloudevents+json")
    event = got.event
    assert {k: event[k] for k in ("specversion", "type", "source", "subject",
                                  "datacontenttype")} == {
        "specversion": "1.0", "type": "case.reported", "source": "/cases",
        "subject": f"cases/{case['id']}", "datacontenttype": "application/json"}
    assert got.headers["Webhook-Id"] == event["id"] and event["time"]
    assert event["data"]["case"]["code"] == case["code"]
    assert event["data"]["case"]["category"]["code"] == "T01"
    log = admin.ok(admin.get(f"/webhooks/subscriptions/{sub['id']}/deliveries"))
    assert [(d["state"], d["attempts"], d["last_status"]) for d in log] == [("sent", 1, 200)]


def test_transitions_carry_the_action_and_close_is_its_own_type(people, category, subscribe,
                                                                receiver, run_worker):
    subscribe(["case.transitioned", "case.closed"])
    case = act(people.dispatcher, dispatcher_case(people, category), "accept")
    act(people.dispatcher, case, "reject", status=409)  # refused: nothing recorded
    run_worker()
    [got] = receiver.received
    data = got.event["data"]
    assert (got.event["type"], data["action"], data["from_state"], data["to_state"]) == (
        "case.transitioned", "accept", "reported", "accepted")


def test_retries_with_backoff_then_dead_letter_then_replay(people, category, subscribe,
                                                           receiver, run_worker, admin,
                                                           db_session):
    sub = subscribe(["case.reported"])
    report(people.worker, category)
    receiver.answer(503, 500, 502)
    assert run_worker()["pending"] == 1
    [row] = deliveries(db_session, sub)
    assert row.due_at > clock.now() + timedelta(seconds=4)  # backoff (base 10 s, jitter)
    assert run_worker() == {}  # not due yet
    run_worker(later=5)
    assert run_worker(later=10)["dead"] == 1
    assert len(receiver.received) == 3
    url = f"/webhooks/subscriptions/{sub['id']}/deliveries"
    [dead] = admin.ok(admin.get(url + "?state=dead"))
    detail = admin.ok(admin.get(f"{url}/{dead['id']}"))
    assert [a["status_code"] for a in detail["attempt_log"]] == [503, 500, 502]
    assert "gave up after 3 attempts" in detail["last_error"]
    replayed = admin.ok(admin.post(f"{url}/{dead['id']}/replay"))
    assert (replayed["state"], replayed["attempts"]) == ("pending", 0)
    assert audit_rows(db_session, action="webhook_delivery_replayed")
    assert run_worker()["sent"] == 1
    assert len({r.event["id"] for r in receiver.received}) == 1  # the same event each time


def test_429_waits_at_least_retry_after_and_network_errors_retry(
        people, category, subscribe, receiver, run_worker, db_session, admin, new_client):
    sub = subscribe(["case.reported"])
    report(people.worker, category)
    receiver.answer((429, {"Retry-After": "600"}))
    run_worker()
    [row] = deliveries(db_session, sub)
    assert row.state == "pending" and row.due_at >= clock.now() + timedelta(seconds=590)
    # a receiver that is not there: a network error, retried
    dead_end = subscribe(["case.reported"], url="http://127.0.0.1:9/hook")
    report(people.worker, category, description="另一处垃圾")
    run_worker()
    [row] = deliveries(db_session, dead_end)
    assert (row.state, row.last_status) == ("pending", None) and row.last_error


def test_a_refusing_receiver_is_dead_lettered_at_once(people, category, subscribe, receiver,
                                                      run_worker, db_session):
    sub = subscribe(["case.reported"])
    report(people.worker, category)
    receiver.answer(410)
    assert run_worker()["dead"] == 1
    [row] = deliveries(db_session, sub)
    assert (row.state, row.attempts, row.last_status) == ("dead", 1, 410)


def test_a_cases_events_arrive_in_order(people, category, subscribe, receiver, db_session):
    one_at_a_time = delivery.HttpSender(concurrency=1)  # the receiver sees the claim order

    def run_worker(later: float = 0) -> dict:
        return delivery.deliver(db_session, one_at_a_time, SETTINGS,
                                clock.now() + timedelta(minutes=later))

    sub = subscribe(["case.reported", "case.transitioned"])
    case = dispatcher_case(people, category)
    act(people.dispatcher, case, "accept")
    other = report(people.worker, category, description="另一处垃圾")
    receiver.answer(500)  # the first event of the first case fails
    run_worker()
    # the case's accept waits behind its report; the other case is not held up
    assert [(r.event["type"], r.event["subject"]) for r in receiver.received] == [
        ("case.reported", f"cases/{case['id']}"), ("case.reported", f"cases/{other['id']}")]
    assert [d.state for d in deliveries(db_session, sub)] == ["pending", "pending", "sent"]
    run_worker(later=5)
    run_worker(later=5)
    types = [(r.event["type"], r.event["subject"]) for r in receiver.received]
    assert types[2:] == [("case.reported", f"cases/{case['id']}"),
                         ("case.transitioned", f"cases/{case['id']}")]
    one_at_a_time.close()


def test_filters_by_type_area_subtree_and_category(people, category, subscribe, receiver,
                                                    run_worker, tree, db_session):
    east = subscribe(["case.reported"], area_id=tree[S2])
    west = subscribe(["case.reported"], area_id=tree[S1], category_ids=[category.parent_id])
    elsewhere = db_session.scalar(sa.select(CaseCategory.id).where(
        CaseCategory.parent_id.is_(None), CaseCategory.id != category.parent_id).limit(1))
    other_category = subscribe(["case.reported"], category_ids=[elsewhere])
    only_closed = subscribe(["case.closed"])
    report(people.worker, category, G111)
    report(people.worker2, category, G211)
    assert len(deliveries(db_session, west)) == 1
    assert len(deliveries(db_session, east)) == 1
    assert deliveries(db_session, other_category) == deliveries(db_session, only_closed) == []


def test_a_rolled_back_change_sends_nothing(people, category, subscribe, receiver,
                                            run_worker, db_session):
    sub = subscribe(["case.transitioned"])
    case = dispatcher_case(people, category)
    with pytest.raises(RuntimeError), db.unit_of_work() as s:
        actor = actor_of(s, people.dispatcher.user.id)
        actions.act(s, actor, case["id"], "accept", {}, case["version"])
        assert s.scalar(sa.select(sa.func.count()).select_from(WebhookDelivery)) == 1
        raise RuntimeError("the request failed after the change")
    assert deliveries(db_session, sub) == []
    assert run_worker() == {} and receiver.received == []


def test_personal_data_masked_unless_granted(people, category, subscribe, receiver,
                                             run_worker, db_session, admin):
    masked = subscribe(["case.reported"])
    granted = subscribe(["case.reported"], personal_data=True, reason="城管热线回访需联系人")
    assert audit_rows(db_session, action="webhook_personal_data_granted")
    from grid.cases.models import Case
    from server import pii
    case = report(people.worker, category)
    row = db_session.get(Case, case["id"])
    row.contact_name, row.contact_phone_masked = "李先生", pii.mask_phone("13812345678")
    row.contact_phone_enc = pii.encrypt("13812345678", "case.contact_phone")
    db_session.commit()
    act(people.dispatcher, dispatcher_case(people, category), "accept")
    db_session.execute(sa.delete(WebhookDelivery))
    from grid.exchange import events
    events.on_case_timeline(db_session, row, "report", None, None, {})
    bodies = {d.subscription_id: d.body for d in db_session.scalars(sa.select(WebhookDelivery))}
    assert "13812345678" not in bodies[masked["id"]] and "李先生" not in bodies[masked["id"]]
    assert "138****5678" in bodies[masked["id"]] or "*" in bodies[masked["id"]]
    assert "13812345678" in bodies[granted["id"]]
    assert audit_rows(db_session, action="webhook_personal_data_sent",
                      object_id=str(granted["id"]))


def test_registry_changes_and_broadcasts_are_events(api, subscribe, receiver, run_worker,
                                                    db_session, tree):
    subscribe(["registry.record_changed", "broadcast.sent"])
    worker = api("grid_worker", G111)
    person = worker.person(phone="13812345678", id_number=None)
    worker.ok(worker.patch(f"/persons/{person['id']}", {"phone": "13912345678",
                                                        "version": person["version"]}))
    dispatcher = api("street_dispatcher", S1)
    dispatcher.ok(dispatcher.post("/broadcasts", {"area_id": tree[S1], "level": "info",
                                                  "title": "停水通知", "text": "明日停水"}),
                  201)
    run_worker()
    run_worker()  # the person's update waits for its creation to be delivered
    events = sorted((r.event for r in receiver.received), key=lambda e: e["type"])
    assert [(e["type"], e["data"].get("action")) for e in events] == [
        ("broadcast.sent", None), ("registry.record_changed", "created"),
        ("registry.record_changed", "updated")]
    assert "phone" in events[2]["data"]["fields"] and "changes" not in events[2]["data"]
    assert "1381234" not in json.dumps(events) and "1391234" not in json.dumps(events)
    assert events[0]["data"]["broadcast"]["title"] == "停水通知"


def test_subscriptions_are_for_admins_and_urls_are_checked(api, subscribe, new_client,
                                                           receiver, admin):
    dispatcher = api("street_dispatcher", S1)
    client = new_client()
    body = {"client_id": client["id"], "url": "https://example.org/hook",
            "event_types": ["case.reported"]}
    assert dispatcher.post("/webhooks/subscriptions", body).status_code == 403
    for url in ("http://example.org/hook", "https://10.0.0.1/hook", "ftp://x.org/",
                "https://user:pw@example.org/", "https://localhost/hook"):
        errors = admin.ok(admin.post("/webhooks/subscriptions", body | {"url": url}), 422)
        assert "url" in errors["errors"]["json"], url
    wrong = admin.ok(admin.post("/webhooks/subscriptions",
                                body | {"event_types": ["hotline.accepted"]}), 422)
    assert "event_types" in wrong["errors"]["json"]
    ok = admin.ok(admin.post("/webhooks/subscriptions", body), 201)
    assert total(admin.get("/webhooks/subscriptions")) == 1
    assert total(admin.get(f"/webhooks/subscriptions?client_id={client['id'] + 1}")) == 0
    admin.ok(admin.post(f"/webhooks/subscriptions/{ok['id']}/disable"))
    assert admin.ok(admin.get(f"/webhooks/subscriptions/{ok['id']}"))["active"] is False


def test_insights_can_raise_a_warning_event(subscribe, receiver, run_worker, db_session,
                                            tree):
    from grid.exchange import events

    subscribe(["warning.raised"], area_id=tree[S1])
    assert events.warning_raised(db_session, 7, tree[G211], {"level": "red"}) == 0  # not S1
    assert events.warning_raised(db_session, 8, tree[G111], {"level": "red"}) == 1
    db_session.commit()
    run_worker()
    [got] = receiver.received
    warning = got.event["data"]["warning"]
    assert (got.event["type"], warning["id"], warning["level"], warning["area"]["id"]) == (
        "warning.raised", 8, "red", tree[G111])


def test_a_warning_the_worker_raises_reaches_its_subscribers(
        api, subscribe, receiver, run_worker, db_session, tree, people, category):
    """grid/insights' evaluation → the listener wired in grid/exchange/wiring.py → outbox."""
    import sqlalchemy as sa

    from grid.insights import warnings
    from grid.insights.models import Indicator
    from tests.fixtures.cases import report

    subscribe(["warning.raised"], area_id=tree[S1])
    admin = api("district_admin", D)
    admin.ok(admin.post("/indicators", {
        "code": "hook_daily", "area_id": tree[D], "name": "网格日新增案件", "kind": "new_cases",
        "area_level": "grid", "window_hours": 24, "every_minutes": 60,
        "thresholds": {"yellow": 2, "red": 5}}), 201)
    for _ in range(2):
        report(people.worker, category)
    indicator = db_session.scalar(sa.select(Indicator).where(Indicator.code == "hook_daily"))
    assert warnings.evaluate(db_session, indicator)["raised"] == 1
    db_session.commit()
    run_worker()
    [got] = [r for r in receiver.received if r.event["type"] == "warning.raised"]
    warning = got.event["data"]["warning"]
    assert (warning["level"], warning["value"], warning["area"]["id"]) == ("yellow", 2,
                                                                            tree[G111])
    assert warning["indicator"]["code"] == "hook_daily"

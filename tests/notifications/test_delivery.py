"""Delivery at the wire: notify() → outbox → the worker → the real firebase-admin SDK → the
FCM stand-in (a real HTTP server speaking FCM HTTP v1 and Google's OAuth token endpoint)."""

from __future__ import annotations

from datetime import datetime, time, timedelta

import sqlalchemy as sa

from notifications import inbox, service, worker
from notifications.models import Device, OutboxMessage
from notifications.providers.fcm import LogSender
from server import clock
from server.auth.actor import Actor
from tests.conftest import assert_error_shape
from tests.notifications.conftest import SETTINGS, deliver


def _notify(db_session, user, *, kind="test.case_moved", collapse_key="case:42", **data):
    data = {"case_no": "SJ-2026-0042", "step": "派遣", "summary": "井盖缺失", **data}
    ids = service.notify(db_session, [user.id], kind, data, collapse_key=collapse_key)
    db_session.commit()
    return ids[0]


def _outbox(db_session, notification_id) -> OutboxMessage:
    db_session.expire_all()
    return db_session.scalars(sa.select(OutboxMessage).where(
        OutboxMessage.notification_id == notification_id)).one()


def _device(db_session, token) -> Device:
    db_session.expire_all()
    return db_session.scalars(sa.select(Device).where(Device.token == token)).one()


def test_a_push_reaches_every_device_in_its_language_with_the_collapse_key(
        db_session, fcm, sender, recipient):
    user = recipient(("tok-android", "android", "zh-CN"), ("tok-ios", "ios", "en-US"),
                     ("tok-web", "web", "en"))
    nid = _notify(db_session, user)

    counts = deliver(db_session, sender)

    assert counts["sent"] == 1 and counts["pushes"] == 3
    android, = fcm.received_for("tok-android")
    ios, = fcm.received_for("tok-ios")
    web, = fcm.received_for("tok-web")
    assert android.message["notification"] == {"title": "案件SJ-2026-0042已派遣",
                                               "body": "您上报的问题：井盖缺失"}
    assert ios.message["notification"]["title"] == "Case SJ-2026-0042 派遣"
    # The collapse key, as each platform names it: a newer push replaces the older one.
    assert android.message["android"]["collapse_key"] == "case:42"
    assert android.message["android"]["notification"]["tag"] == "case:42"
    assert ios.message["apns"]["headers"]["apns-collapse-id"] == "case:42"
    assert web.message["webpush"]["headers"]["Topic"] == "case-42"
    assert web.message["webpush"]["notification"]["tag"] == "case:42"
    assert android.message["data"] == {"notification_id": str(nid), "kind": "test.case_moved",
                                       "collapse_key": "case:42"}
    # The SDK authenticated with a token from the stand-in's OAuth endpoint.
    assert android.headers["authorization"].startswith("Bearer ya29.standin-")
    row = _outbox(db_session, nid)
    assert row.state == "sent" and row.sent_at is not None and row.attempts == 1
    assert row.claimed_until is None and row.note is None
    # Nothing is sent twice.
    assert deliver(db_session, sender) == {}
    assert len(fcm.received) == 3


def test_urgent_pushes_are_high_priority(db_session, fcm, sender, recipient):
    user = recipient(("tok-urgent", "android", "zh-CN"), ("tok-urgent-ios", "ios", "zh-CN"))
    _notify(db_session, user, kind="test.escalated")
    deliver(db_session, sender)
    assert fcm.received_for("tok-urgent")[0].message["android"]["priority"] == "high"
    assert fcm.received_for("tok-urgent-ios")[0].message["apns"]["headers"][
        "apns-priority"] == "10"


def test_unregistered_token_is_disabled_and_gets_nothing_more(db_session, fcm, sender,
                                                             recipient):
    user = recipient(("tok-gone", "android", "zh-CN"), ("tok-live", "android", "zh-CN"))
    fcm.fail("tok-gone", "UNREGISTERED")
    nid = _notify(db_session, user)

    deliver(db_session, sender)

    gone = _device(db_session, "tok-gone")
    assert gone.disabled_at is not None and gone.disabled_reason == "UNREGISTERED"
    assert _outbox(db_session, nid).state == "sent"  # the other phone got it
    assert len(fcm.received_for("tok-live")) == 1
    _notify(db_session, user, collapse_key=None)
    deliver(db_session, sender)
    assert fcm.attempts("tok-gone") == 1  # never tried again
    assert len(fcm.received_for("tok-live")) == 2


def test_sender_id_mismatch_disables_the_token(db_session, fcm, sender, recipient):
    user = recipient(("tok-other-project", "ios", "zh-CN"))
    fcm.fail("tok-other-project", "SENDER_ID_MISMATCH")
    nid = _notify(db_session, user)
    deliver(db_session, sender)
    assert _device(db_session, "tok-other-project").disabled_reason == "SENDER_ID_MISMATCH"
    row = _outbox(db_session, nid)
    assert row.state == "sent" and "disabled" in row.note


def test_unavailable_is_retried_after_retry_after(db_session, fcm, sender, recipient):
    user = recipient(("tok-503", "android", "zh-CN"))
    fcm.fail("tok-503", "UNAVAILABLE", retry_after=120)
    nid = _notify(db_session, user)
    t0 = clock.now()

    deliver(db_session, sender, t0)

    row = _outbox(db_session, nid)
    assert row.state == "pending" and row.attempts == 1
    assert "UnavailableError" in row.last_error
    assert row.due_at >= t0 + timedelta(seconds=120)  # Retry-After honoured
    assert fcm.attempts("tok-503") == 1  # the SDK did not retry (and sleep) by itself
    assert deliver(db_session, sender, t0 + timedelta(seconds=60)) == {}  # not due yet
    deliver(db_session, sender, t0 + timedelta(seconds=121))
    row = _outbox(db_session, nid)
    assert row.state == "sent" and row.attempts == 2
    assert len(fcm.received_for("tok-503")) == 1


def test_quota_exceeded_backs_off_exponentially_with_jitter(db_session, fcm, sender, recipient):
    user = recipient(("tok-429", "android", "zh-CN"))
    fcm.fail("tok-429", "QUOTA_EXCEEDED", times=2)  # no Retry-After: the backoff decides
    nid = _notify(db_session, user)
    t0 = clock.now()

    deliver(db_session, sender, t0)
    first = _outbox(db_session, nid)
    assert first.state == "pending" and "QuotaExceededError" in first.last_error
    delay1 = (first.due_at - t0).total_seconds()
    assert 5 <= delay1 <= 10  # base 10 s, jittered between half and all of it

    t1 = first.due_at
    deliver(db_session, sender, t1)
    delay2 = (_outbox(db_session, nid).due_at - t1).total_seconds()
    assert 10 <= delay2 <= 20  # doubled

    deliver(db_session, sender, t1 + timedelta(seconds=delay2 + 1))
    assert _outbox(db_session, nid).state == "sent"


def test_a_retry_goes_only_to_the_devices_that_did_not_get_it(db_session, fcm, sender,
                                                               recipient):
    user = recipient(("tok-fine", "android", "zh-CN"), ("tok-flaky", "android", "zh-CN"))
    fcm.fail("tok-flaky", "INTERNAL")
    nid = _notify(db_session, user)
    t0 = clock.now()
    deliver(db_session, sender, t0)
    deliver(db_session, sender, t0 + timedelta(hours=1))
    assert len(fcm.received_for("tok-fine")) == 1
    assert len(fcm.received_for("tok-flaky")) == 1
    assert _outbox(db_session, nid).state == "sent"


def test_invalid_argument_fails_without_retry(db_session, fcm, sender, recipient):
    user = recipient(("tok-invalid", "web", "zh-CN"))
    fcm.fail("tok-invalid", "INVALID_ARGUMENT")
    nid = _notify(db_session, user)
    t0 = clock.now()
    deliver(db_session, sender, t0)
    row = _outbox(db_session, nid)
    assert row.state == "failed" and "InvalidArgumentError" in row.last_error
    deliver(db_session, sender, t0 + timedelta(days=1))
    assert fcm.attempts("tok-invalid") == 1


def test_a_message_fcm_would_refuse_is_failed_not_retried(db_session, fcm, sender, recipient):
    """The stand-in checks payloads as FCM does: a 4 kB body is INVALID_ARGUMENT."""
    user = recipient(("tok-big", "android", "zh-CN"))
    nid = _notify(db_session, user, summary="长" * 2000)
    deliver(db_session, sender)
    assert _outbox(db_session, nid).state == "failed"
    assert "too big" in _outbox(db_session, nid).last_error


def test_dead_letter_after_the_last_attempt_then_requeued_by_an_admin(
        db_session, client, fcm, sender, recipient, auth_headers):
    user = recipient(("tok-down", "android", "zh-CN"))
    fcm.fail("tok-down", "UNAVAILABLE", times=None)
    nid = _notify(db_session, user)
    now = clock.now()
    for _ in range(SETTINGS.max_attempts):
        deliver(db_session, sender, now)
        now += timedelta(hours=2)
    row = _outbox(db_session, nid)
    assert row.state == "dead" and row.attempts == SETTINGS.max_attempts
    assert fcm.attempts("tok-down") == SETTINGS.max_attempts
    assert deliver(db_session, sender, now + timedelta(days=1)) == {}

    admin = auth_headers("admin")
    listed = client.get("/notifications/outbox", headers=admin)
    assert listed.status_code == 200
    item, = [i for i in listed.get_json() if i["id"] == row.id]
    assert item["state"] == "dead" and item["kind"] == "test.case_moved"
    assert "UnavailableError" in item["last_error"]
    # Not for everyone.
    assert_error_shape(client.get("/notifications/outbox",
                                  headers=auth_headers("district_admin")), 403)
    assert_error_shape(client.post(f"/notifications/outbox/{row.id}/requeue",
                                   headers=auth_headers("street_dispatcher")), 403)

    fcm.reset()  # FCM is back
    requeued = client.post(f"/notifications/outbox/{row.id}/requeue", headers=admin)
    assert requeued.status_code == 200 and requeued.get_json()["state"] == "pending"
    assert requeued.get_json()["attempts"] == 0
    deliver(db_session, sender)
    assert _outbox(db_session, nid).state == "sent"
    assert len(fcm.received_for("tok-down")) == 1
    again = client.post(f"/notifications/outbox/{row.id}/requeue", headers=admin)
    assert_error_shape(again, 409)
    assert_error_shape(client.post("/notifications/outbox/999999999/requeue", headers=admin),
                       404)


def test_a_crash_between_claim_and_send_loses_nothing(db_session, fcm, sender, recipient):
    user = recipient(("tok-crash", "android", "zh-CN"))
    nid = _notify(db_session, user)
    t0 = clock.now()
    batch = worker.claim(db_session, SETTINGS, t0)  # claimed and committed…
    assert [r.notification_id for r in batch.rows] == [nid]
    # …and the worker dies here: nothing sent, nothing recorded.
    row = _outbox(db_session, nid)
    assert row.state == "pending" and row.claimed_until == t0 + timedelta(seconds=60)

    # Another worker leaves it alone while the lease holds…
    assert deliver(db_session, sender, t0 + timedelta(seconds=30)) == {}
    assert fcm.received == []
    # …and takes it over once it has passed.
    deliver(db_session, sender, t0 + timedelta(seconds=61))
    row = _outbox(db_session, nid)
    assert row.state == "sent" and row.attempts == 2
    assert len(fcm.received_for("tok-crash")) == 1


def test_a_worker_that_outlived_its_lease_records_nothing(db_session, fcm, sender, recipient):
    """Results are recorded under the claim's token: the late worker's are ignored."""
    user = recipient(("tok-late", "android", "zh-CN"))
    nid = _notify(db_session, user)
    t0 = clock.now()
    slow = worker.claim(db_session, SETTINGS, t0)
    deliver(db_session, sender, t0 + timedelta(seconds=61))  # a second worker takes over
    assert _outbox(db_session, nid).state == "sent"
    result, _ = worker.settle(slow.rows[0], [worker.Outcome("retry", "late")], SETTINGS, None)
    worker._record(db_session, slow.token, [result], [], t0)
    db_session.commit()
    assert _outbox(db_session, nid).state == "sent"


def test_a_row_whose_worker_keeps_dying_is_dead_lettered(db_session, sender, recipient):
    user = recipient(("tok-poison", "android", "zh-CN"))
    nid = _notify(db_session, user)
    now = clock.now()
    for _ in range(SETTINGS.max_attempts):
        worker.claim(db_session, SETTINGS, now)
        now += timedelta(seconds=61)
    deliver(db_session, sender, now)
    row = _outbox(db_session, nid)
    assert row.state == "dead" and "lease expired" in row.last_error


def test_a_newer_push_of_the_same_thread_supersedes_a_queued_one(db_session, fcm, sender,
                                                                  recipient):
    user = recipient(("tok-thread", "android", "zh-CN"))
    older = _notify(db_session, user, step="受理")
    newer = _notify(db_session, user, step="派遣")
    deliver(db_session, sender)
    pushed, = fcm.received_for("tok-thread")
    assert pushed.message["notification"]["title"] == "案件SJ-2026-0042已派遣"
    assert _outbox(db_session, older).note == f"superseded by notification {newer}"


def test_read_in_the_app_before_the_push_means_no_push(db_session, client, fcm, sender,
                                                       recipient, login):
    user = recipient(("tok-read", "android", "zh-CN"))
    nid = _notify(db_session, user)
    headers = {"Authorization": f"Bearer {login(user.username)['access_token']}"}
    assert client.post(f"/me/notifications/{nid}/read", headers=headers).status_code == 200
    deliver(db_session, sender)
    assert fcm.received == []
    assert _outbox(db_session, nid).state == "sent"


def test_no_device_means_inbox_only(db_session, fcm, sender, make_user):
    user = make_user("resident")
    nid = _notify(db_session, user)
    deliver(db_session, sender)
    row = _outbox(db_session, nid)
    assert row.state == "sent" and row.note == "no active device: inbox only"


def test_without_firebase_credentials_the_worker_logs_and_marks_sent(
        db_session, fcm, recipient, caplog):
    sender = worker.sender_for({"FIREBASE_CREDENTIALS": "", "FCM_ENDPOINT": "x",
                                "FCM_TIMEOUT_S": 1, "NOTIFY_BATCH_SIZE": 500})
    assert isinstance(sender.providers["fcm"], LogSender)
    user = recipient(("tok-dev", "android", "zh-CN"))
    nid = _notify(db_session, user)
    with caplog.at_level("INFO", logger="notifications.fcm"):
        deliver(db_session, sender)
    assert fcm.received == []
    row = _outbox(db_session, nid)
    assert row.state == "sent" and "FIREBASE_CREDENTIALS not set" in row.note
    assert any(r.message == "would push" and r.title == "案件SJ-2026-0042已派遣"
               for r in caplog.records)


def test_fcm_down_entirely_is_retried(db_session, recipient):
    """No connection at all (nothing listens on the endpoint): UnavailableError → retry."""
    from notifications.providers.fcm import FcmSender

    dead = FcmSender(_standalone_credential(), endpoint="http://127.0.0.1:9", timeout_s=2)
    try:
        user = recipient(("tok-nowhere", "android", "zh-CN"))
        nid = _notify(db_session, user)
        deliver(db_session, dead)
        row = _outbox(db_session, nid)
        assert row.state == "pending" and row.attempts == 1
    finally:
        dead.close()


def _standalone_credential():
    from firebase_admin import credentials

    from tests.notifications.fcm_standin import make_service_account

    info, _ = make_service_account("http://127.0.0.1:9/token", "grid-nowhere")
    return credentials.Certificate(info)


# --- preferences: mutes and quiet hours ------------------------------------------------------


def _prefs(db_session, user, **data):
    service.set_preferences(db_session, Actor(user_id=user.id), {
        "muted_kinds": [], "quiet_hours": None, "timezone": None, **data})
    db_session.commit()


def test_a_muted_kind_reaches_the_inbox_but_not_the_phone(db_session, fcm, sender, recipient):
    user = recipient(("tok-muted", "android", "zh-CN"))
    _prefs(db_session, user, muted_kinds=["test.case_moved"])
    nid = _notify(db_session, user)
    assert db_session.scalar(sa.select(sa.func.count()).select_from(OutboxMessage).where(
        OutboxMessage.notification_id == nid)) == 0
    _notify(db_session, user, kind="test.escalated")  # urgent: mutes do not apply
    deliver(db_session, sender)
    pushed, = fcm.received_for("tok-muted")
    assert pushed.message["notification"]["title"] == "督办：SJ-2026-0042"
    assert inbox.unread_count(db_session, Actor(user_id=user.id)) == 2


def test_quiet_hours_delay_a_push_to_their_end_but_not_an_urgent_one(
        db_session, fcm, sender, recipient):
    user = recipient(("tok-night", "android", "zh-CN"))
    # Quiet for all but the minute an hour from now (local time), so "now" is inside.
    zone = service._zone("Asia/Shanghai")
    local = clock.now().astimezone(zone)
    end = (local + timedelta(hours=1)).time().replace(second=0, microsecond=0)
    start = (local + timedelta(hours=1, minutes=1)).time().replace(second=0, microsecond=0)
    _prefs(db_session, user, quiet_hours={"start": start.strftime("%H:%M"),
                                          "end": end.strftime("%H:%M")})
    quiet = _notify(db_session, user, collapse_key="case:1")
    urgent = _notify(db_session, user, kind="test.escalated", collapse_key="case:2")

    deliver(db_session, sender)
    assert [r.message["notification"]["title"] for r in fcm.received] == ["督办：SJ-2026-0042"]
    assert _outbox(db_session, urgent).state == "sent"
    row = _outbox(db_session, quiet)
    assert row.state == "pending"
    assert row.due_at.astimezone(zone).time() == end
    assert timedelta(minutes=58) < row.due_at - clock.now() <= timedelta(hours=1)
    deliver(db_session, sender, row.due_at)
    assert len(fcm.received) == 2


def test_quiet_hours_across_midnight():
    zone = service._zone("Asia/Shanghai")
    night, morning = time(22, 0), time(7, 0)

    def at(h, m=0):
        return datetime(2026, 3, 10, h, m, tzinfo=zone)

    assert service.quiet_until(at(23, 30), night, morning, zone) == datetime(
        2026, 3, 11, 7, 0, tzinfo=zone)
    assert service.quiet_until(at(3), night, morning, zone) == at(7)
    assert service.quiet_until(at(7), night, morning, zone) is None
    assert service.quiet_until(at(12), night, morning, zone) is None
    assert service.quiet_until(at(22), night, morning, zone) == datetime(
        2026, 3, 11, 7, 0, tzinfo=zone)
    # a daytime window
    assert service.quiet_until(at(13), time(12), time(14), zone) == at(14)
    assert service.quiet_until(at(14), time(12), time(14), zone) is None
    assert service.quiet_until(at(14), None, None, zone) is None


def test_backoff_grows_and_honours_retry_after():
    s = worker.DeliverySettings(backoff_base_s=10, backoff_max_s=300)
    for attempts, (low, high) in {1: (5, 10), 2: (10, 20), 3: (20, 40), 9: (150, 300)}.items():
        for _ in range(20):
            assert low <= worker.backoff_s(attempts, s) <= high
    assert worker.backoff_s(1, s, retry_after_s=3600) == 3600


def test_retry_after_as_seconds_or_http_date():
    from notifications.providers.fcm import retry_after_seconds

    now = datetime(2026, 11, 22, 12, 0, tzinfo=clock.now().tzinfo)
    assert retry_after_seconds("30") == 30
    assert retry_after_seconds("Sun, 22 Nov 2026 12:01:00 GMT", now) == 60
    assert retry_after_seconds("soon") is None and retry_after_seconds(None) is None


def test_a_failed_push_requeued_goes_to_the_device_again(db_session, client, fcm, sender,
                                                         recipient, auth_headers):
    user = recipient(("tok-rejected", "android", "zh-CN"))
    fcm.fail("tok-rejected", "INVALID_ARGUMENT")
    nid = _notify(db_session, user)
    deliver(db_session, sender)
    row = _outbox(db_session, nid)
    assert row.state == "failed"
    listed = client.get("/notifications/outbox?state=failed", headers=auth_headers("admin"))
    assert [i["id"] for i in listed.get_json()] == [row.id]
    assert client.post(f"/notifications/outbox/{row.id}/requeue",
                       headers=auth_headers("admin")).status_code == 200
    deliver(db_session, sender)
    assert _outbox(db_session, nid).state == "sent"
    assert len(fcm.received_for("tok-rejected")) == 1

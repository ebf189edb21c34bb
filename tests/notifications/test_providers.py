"""The providers against their stand-ins, through the worker: Huawei Push Kit for a
person's notifications (success, an invalid token disabled, flow control retried with
backoff, an expired OAuth token renewed), topic (un)subscription at FCM and Push Kit
(idempotent, retried, dead tokens leave), memberships moving a phone's topics, and urgent
broadcasts by SMS (Aliyun SendSms) to residents without the app, with caps."""

from __future__ import annotations

from datetime import timedelta

import pytest
import sqlalchemy as sa

from grid.areas import memberships as area_memberships
from grid.areas.models import Membership
from notifications import broadcasts, service, sms, topics
from notifications.models import Device, DeviceTopic, OutboxMessage, SmsMessage, TopicTask
from notifications.providers import sms_for
from notifications.providers.sms import AliyunSms, percent_encode
from server import clock
from server.auth.actor import Actor
from tests.fixtures.areas import C11, G111, G211, SYSTEM
from tests.notifications.conftest import SETTINGS, deliver


def _notify(db_session, user, **data):
    data = {"case_no": "SJ-9", "step": "派遣", "summary": "井盖缺失", **data}
    ids = service.notify(db_session, [user.id], "test.case_moved", data, collapse_key="case:9")
    db_session.commit()
    return ids[0]


def _outbox(db_session, nid) -> OutboxMessage:
    db_session.expire_all()
    return db_session.scalars(sa.select(OutboxMessage).where(
        OutboxMessage.notification_id == nid)).one()


def _topic_tokens(db_session, token) -> set[str]:
    return set(db_session.scalars(sa.select(DeviceTopic.topic).join(
        Device, Device.id == DeviceTopic.device_id).where(Device.token == token)))


# --- Huawei Push Kit, a person's notifications ---------------------------------------------


def test_a_persons_notification_reaches_a_huawei_phone(db_session, recipient, hms, fcm,
                                                       sender):
    user = recipient(("tok-hw", "android", "zh-CN", "hms"), ("tok-g", "ios", "en"))
    nid = _notify(db_session, user)
    counts = deliver(db_session, sender)
    assert counts["sent"] == 1 and counts["pushes"] == 2
    on_hms, = [r for r in hms.received if r.get("tokens")]
    assert on_hms["tokens"] == ["tok-hw"]
    message = on_hms["message"]
    assert message["notification"]["title"] == "案件SJ-9已派遣"
    assert message["android"]["notification"]["tag"] == "case:9"
    assert f'"notification_id":"{nid}"' in message["data"]  # a string, as Push Kit wants
    assert [r.token for r in fcm.received] == ["tok-g"]  # the iPhone through FCM
    assert _outbox(db_session, nid).state == "sent"


def test_a_huawei_token_push_kit_refuses_is_disabled_and_leaves_its_topics(
        db_session, recipient, member, hms, sender):
    _, user = member("resident", G111)
    for token in ("tok-hw-dead", "tok-hw-ok"):
        service.register_device(db_session, Actor(user_id=user.id), {
            "token": token, "platform": "android", "provider": "hms", "locale": "zh-CN"})
    db_session.commit()
    assert _topic_tokens(db_session, "tok-hw-dead")
    hms.fail("tok-hw-dead", "invalid", times=None)
    nid = _notify(db_session, user)
    deliver(db_session, sender)  # one request with both tokens: 80100000, one illegal
    assert _outbox(db_session, nid).state == "sent"
    dead = db_session.scalars(sa.select(Device).where(Device.token == "tok-hw-dead")).one()
    assert dead.disabled_at is not None and "illegal" in dead.disabled_reason
    assert _topic_tokens(db_session, "tok-hw-dead") == set()
    assert _topic_tokens(db_session, "tok-hw-ok")


def test_push_kit_flow_control_is_retried_with_backoff(db_session, recipient, hms, sender):
    user = recipient(("tok-hw-busy", "android", "zh-CN", "hms"))
    hms.fail("tok-hw-busy", "rate", times=1)
    nid = _notify(db_session, user)
    now = clock.now()
    deliver(db_session, sender, now)
    row = _outbox(db_session, nid)
    assert row.state == "pending" and row.attempts == 1 and "80300001" in row.last_error
    assert row.due_at >= now + timedelta(seconds=30)  # at least Retry-After
    deliver(db_session, sender, row.due_at + timedelta(seconds=1))
    assert _outbox(db_session, nid).state == "sent"
    assert [r["tokens"] for r in hms.received if r.get("tokens")] == [["tok-hw-busy"]]


def test_an_expired_push_kit_token_is_renewed_once(db_session, recipient, hms, sender):
    user = recipient(("tok-hw-2", "android", "zh-CN", "hms"))
    grants = hms.grants
    hms.expire_next = True
    nid = _notify(db_session, user)
    deliver(db_session, sender)
    assert _outbox(db_session, nid).state == "sent" and hms.grants == grants + 1


# --- topics --------------------------------------------------------------------------------


def _run(db_session, sender, now=None):
    return topics.run(db_session, sender, SETTINGS, service.render, now)


def test_topic_subscription_is_retried_and_a_dead_token_leaves(db_session, member, fcm,
                                                               sender):
    _, user = member("resident", G111)
    actor = Actor(user_id=user.id)
    for token in ("tok-busy", "tok-gone", "tok-fine"):
        service.register_device(db_session, actor, {"token": token, "platform": "android",
                                                    "locale": "zh-CN"})
    db_session.commit()
    topic = topics.topic_name(G111, "warning", "zh-CN")
    fcm.fail("tok-busy", "QUOTA_EXCEEDED", times=None)
    fcm.fail("tok-gone", "UNREGISTERED", times=None)
    now = clock.now()
    counts = _run(db_session, sender, now)
    assert counts["subscribe:pending"] >= 1
    assert fcm.subscribed(topic) == {"tok-fine"}
    gone = db_session.scalars(sa.select(Device).where(Device.token == "tok-gone")).one()
    assert gone.disabled_at is not None and _topic_tokens(db_session, "tok-gone") == set()
    db_session.expire_all()
    retried = db_session.scalars(sa.select(TopicTask).where(
        TopicTask.state == "pending", TopicTask.topic == topic)).one()
    assert retried.tokens == ["tok-busy"] and retried.due_at > now  # only what is left
    fcm.state.scripts.pop("tok-busy")  # FCM has quota again
    _run(db_session, sender, now + timedelta(hours=1))  # every retry due
    assert fcm.subscribed(topic) == {"tok-fine", "tok-busy"}
    # Registering again changes nothing: no new task, the topics are already theirs.
    service.register_device(db_session, actor, {"token": "tok-fine", "platform": "android",
                                                "locale": "zh-CN"})
    assert db_session.scalar(sa.select(sa.func.count()).select_from(TopicTask).where(
        TopicTask.state == "pending")) == 0


def test_a_membership_change_moves_the_phones_topics(db_session, member, tree, fcm, hms,
                                                     sender):
    _, user = member("resident", G111)
    service.register_device(db_session, Actor(user_id=user.id), {
        "token": "tok-mover", "platform": "android", "provider": "hms", "locale": "zh-CN"})
    db_session.commit()
    _run(db_session, sender)
    old, new = (topics.topic_name(code, "info", "zh-CN") for code in (C11, G211))
    assert "tok-mover" in hms.topics[old]
    area_memberships.add_membership(db_session, SYSTEM, {
        "user_id": user.id, "area_id": tree[G211], "role": "resident"})
    moved_from = db_session.scalar(sa.select(Membership.id).where(
        Membership.user_id == user.id, Membership.area_id == tree[G111]))
    area_memberships.remove_membership(db_session, SYSTEM, moved_from)
    db_session.commit()
    _run(db_session, sender)
    assert "tok-mover" in hms.topics[new] and "tok-mover" not in hms.topics[old]


def test_a_removed_device_leaves_its_topics(db_session, member, fcm, sender):
    _, user = member("resident", G111)
    actor = Actor(user_id=user.id)
    service.register_device(db_session, actor, {"token": "tok-bye", "platform": "android"})
    db_session.commit()
    _run(db_session, sender)
    topic = topics.topic_name(G111, "emergency", "zh-CN")
    assert "tok-bye" in fcm.subscribed(topic)
    service.remove_device(db_session, actor, "tok-bye")
    db_session.commit()
    _run(db_session, sender)
    assert "tok-bye" not in fcm.subscribed(topic)


# --- SMS -----------------------------------------------------------------------------------


@pytest.fixture
def sms_settings(sms_standin):
    return sms.SmsSettings(template="SMS_480000001", per_number_daily=1, daily_cap=100)


def _emergency(client, headers, area_id, title="燃气泄漏，立即撤离"):
    posted = client.post("/broadcasts", json={"area_id": area_id, "level": "emergency",
                                              "title": title, "text": "请立即离开住所。"},
                         headers=headers)
    assert posted.status_code == 201, posted.get_json()
    return posted.get_json()


def test_an_urgent_broadcast_reaches_residents_without_the_app_by_sms(
        db_session, client, member, tree, sms_standin, sms_settings, caplog):
    staff, _ = member("community_staff", C11)
    member("resident", G111, phone="13900000001")  # no app
    _, with_app = member("resident", G111, phone="13900000002")
    service.register_device(db_session, Actor(user_id=with_app.id),
                            {"token": "tok-has-app", "platform": "android"})
    member("resident", G111)  # no app, no phone
    db_session.commit()
    _emergency(client, staff, tree[G111])
    assert broadcasts.walk(db_session, sms=True) == 3  # the residents of G111
    provider = sms_for(sms_standin.config())
    assert isinstance(provider, AliyunSms)
    with caplog.at_level("DEBUG"):
        counts = sms.run(db_session, provider, sms_settings)
    assert counts == {"sent": 1}
    sent, = sms_standin.sent
    assert sent["phones"] == ["13900000001"] and sent["template"] == "SMS_480000001"
    assert sent["params"] == {"title": "燃气泄漏，立即撤离", "text": "请立即离开住所。"}
    assert sent["sign"] == "富阳网格"
    assert not any("13900000001" in r.getMessage() or "13900000001" in str(r.__dict__)
                   for r in caplog.records)  # never logged
    # The per-number cap: a second emergency the same day is not sent to the same number.
    _emergency(client, staff, tree[G111], title="二次预警")
    broadcasts.walk(db_session, sms=True)
    assert sms.run(db_session, provider, sms_settings) == {"failed": 1}
    db_session.expire_all()
    capped = db_session.scalars(sa.select(SmsMessage).where(SmsMessage.state == "failed")).one()
    assert capped.note == "per-number cap reached"


def test_sms_flow_control_is_retried_and_the_daily_cap_waits(
        db_session, client, member, tree, sms_standin, sms_settings):
    staff, _ = member("community_staff", C11)
    member("resident", G111, phone="13900000011")
    member("resident", G111, phone="13900000012")
    db_session.commit()
    _emergency(client, staff, tree[G111])
    broadcasts.walk(db_session, sms=True)
    provider = sms_for(sms_standin.config())
    sms_standin.fail("13900000011", "isv.BUSINESS_LIMIT_CONTROL", times=1)
    now = clock.now()
    assert sms.run(db_session, provider, sms_settings, now) == {"pending": 2}
    db_session.expire_all()
    rows = db_session.scalars(sa.select(SmsMessage).order_by(SmsMessage.id)).all()
    assert all(r.due_at > now and r.last_error == "Aliyun 200 isv.BUSINESS_LIMIT_CONTROL"
               for r in rows)
    later = max(r.due_at for r in rows) + timedelta(seconds=1)
    capped = sms.SmsSettings(template="SMS_480000001", daily_cap=1)
    assert sms.run(db_session, provider, capped, later) == {"sent": 1, "pending": 1}
    db_session.expire_all()
    waiting = db_session.scalars(sa.select(SmsMessage).where(
        SmsMessage.state == "pending")).one()
    assert waiting.note == "daily cap reached" and waiting.due_at > later + timedelta(hours=0)


def test_aliyun_refuses_a_wrong_signature(sms_standin):
    wrong = AliyunSms(sms_standin.key_id, "not-the-secret", "富阳网格",
                      endpoint=sms_standin.endpoint, rate_per_s=0)
    outcome, = wrong.send(["13900000021"], "SMS_480000001", {"title": "t", "text": "x"})
    assert outcome.status == "retry" and "SignatureDoesNotMatch" in outcome.error
    right = AliyunSms(sms_standin.key_id, sms_standin.secret, "富阳网格",
                      endpoint=sms_standin.endpoint, rate_per_s=0)
    assert [o.status for o in right.send(["13900000021", "1234"], "SMS_480000001",
                                         {"title": "t", "text": "x"})] == ["ok", "disable"]


def test_percent_encoding_is_rfc_3986():
    assert percent_encode("a b*~-_.") == "a%20b%2A~-_."
    assert percent_encode("台风") == "%E5%8F%B0%E9%A3%8E"


def test_push_kit_topic_subscription_of_a_dead_token_disables_it(db_session, member, hms,
                                                                 sender):
    _, user = member("resident", G111)
    for token in ("tok-hw-topic-dead", "tok-hw-topic-ok"):
        service.register_device(db_session, Actor(user_id=user.id), {
            "token": token, "platform": "android", "provider": "hms", "locale": "en"})
    db_session.commit()
    hms.fail("tok-hw-topic-dead", "invalid", times=None)
    _run(db_session, sender)
    topic = topics.topic_name(G111, "emergency", "en")
    assert hms.topics[topic] == {"tok-hw-topic-ok"}
    dead = db_session.scalars(sa.select(Device).where(
        Device.token == "tok-hw-topic-dead")).one()
    assert dead.disabled_at is not None
    assert _topic_tokens(db_session, "tok-hw-topic-dead") == set()


def test_a_device_registers_with_its_provider(client, make_user, login):
    user = make_user("resident")
    headers = {"Authorization": f"Bearer {login(user.username)['access_token']}"}
    body = {"token": "hms-token-AAAA", "platform": "android"}
    huawei = client.post("/me/devices", json={**body, "provider": "hms"}, headers=headers)
    assert huawei.status_code == 201 and huawei.get_json()["provider"] == "hms"
    plain = client.post("/me/devices", json={"token": "fcm-token-B", "platform": "ios"},
                        headers=headers)
    assert plain.get_json()["provider"] == "fcm"  # the default
    unknown = client.post("/me/devices", json={**body, "provider": "carrier-pigeon"},
                          headers=headers)
    assert unknown.status_code == 422 and "provider" in unknown.get_json()["errors"]["json"]

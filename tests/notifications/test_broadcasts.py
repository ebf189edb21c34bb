"""Broadcasts (通知公告/预警): staff send an alert to an area subtree of their scope; it is in
every covered inbox at once (fan-out on read: one area row, no row per person) and on their
phones as one topic message per provider and language, the devices being subscribed to the
topics of their users' areas.

Changed with issue 20: the first three tests asserted the per-person fan-out (an inbox row
and a push per resident after `expand_broadcasts`); they now assert the topic messages,
the subscriptions and the inboxes read through the API instead."""

from __future__ import annotations

import uuid

import pytest
import sqlalchemy as sa

from notifications import broadcasts, inbox, service, topics
from notifications.models import Broadcast, Notification
from server.audit import AuditEntry
from server.auth.actor import Actor
from tests.conftest import assert_error_shape
from tests.fixtures.areas import C11, C12, G111, G112, G121, G211, S1
from tests.notifications.conftest import SETTINGS

TYPHOON = {"level": "warning", "title": "台风蓝色预警",
           "text": "预计今夜有8级大风，请关好门窗，减少外出。", "link": "https://example.org/typhoon"}


@pytest.fixture
def district(member, tree, db_session):
    """Staff of community C11, residents in its two grids (with phones; the last on Huawei
    Push Kit, in English), a worker in C12 and one in the other street."""
    staff_headers, staff = member("community_staff", C11)
    residents, headers = [], []
    for i, code in enumerate((G111, G112, G112)):
        h, user = member("resident", code)
        service.register_device(db_session, Actor(user_id=user.id), {
            "token": f"tok-resident-{i}", "platform": "android",
            "provider": "hms" if i == 2 else "fcm", "locale": "en" if i == 2 else "zh-CN"})
        residents.append(user)
        headers.append(h)
    south_headers, south = member("grid_worker", G121)
    _, east = member("grid_worker", G211)
    db_session.commit()
    return {"headers": staff_headers, "staff": staff, "residents": residents,
            "resident_headers": headers, "outside": [south, east],
            "outside_headers": south_headers, "tree": tree}


def _post(client, headers, area_id, **body):
    return client.post("/broadcasts", json={"area_id": area_id, **TYPHOON, **body},
                       headers=headers)


def _run_topics(db_session, sender):
    return topics.run(db_session, sender, SETTINGS, service.render)


def test_a_broadcast_is_in_every_covered_inbox_at_once_and_one_topic_message_per_provider(
        db_session, client, district, fcm, hms, sender):
    _run_topics(db_session, sender)  # the residents' phones join their areas' topics
    zh, en = (topics.topic_name(C11, "warning", lang) for lang in ("zh-CN", "en"))
    assert fcm.subscribed(zh) == {"tok-resident-0", "tok-resident-1"}
    assert hms.topics[en] == {"tok-resident-2"}
    assert hms.topics[topics.topic_name(G112, "emergency", "en")] == {"tok-resident-2"}

    posted = _post(client, district["headers"], district["tree"][C11])
    assert posted.status_code == 201, posted.get_json()
    b = posted.get_json()
    assert b["state"] == "pending" and b["level"] == "warning"
    # No row per person: one area row for the whole subtree.
    assert db_session.scalar(sa.select(sa.func.count()).select_from(Notification).where(
        Notification.data["broadcast_id"].as_integer() == b["id"])) == 1
    # In every covered inbox before the worker has done anything, in its language.
    for headers in district["resident_headers"] + [district["headers"]]:
        listed = client.get("/me/notifications", headers=headers)
        assert listed.headers["X-Unread-Count"] == "1"
        assert listed.get_json()[0]["kind"] == "broadcast.warning"
        assert listed.get_json()[0]["body"] == TYPHOON["text"] and not listed.get_json()[0][
            "read"]
    outside = client.get("/me/notifications", headers=district["outside_headers"])
    assert outside.get_json() == [] and outside.headers["X-Unread-Count"] == "0"

    counts = _run_topics(db_session, sender)
    assert counts["send:sent"] == 4  # FCM and Push Kit, zh-CN and en
    sent = {r.message["topic"]: r.message for r in fcm.topic_messages()}
    assert set(sent) == {zh, en}
    assert sent[zh]["notification"]["title"] == "【预警】台风蓝色预警"
    assert sent[en]["notification"]["title"] == "[Warning] 台风蓝色预警"
    assert sent[zh]["data"]["link"] == TYPHOON["link"]
    assert sent[zh]["android"]["collapse_key"] == f"broadcast:{b['id']}"
    on_hms = {r["topic"]: r["message"] for r in hms.received if "topic" in r}
    assert set(on_hms) == {zh, en}
    assert on_hms[en]["notification"]["title"] == "[Warning] 台风蓝色预警"
    assert fcm.received_for("tok-resident-0") == []  # no push per device

    assert broadcasts.walk(db_session, sms=False) == 4  # 3 residents + the staff member
    db_session.expire_all()
    done = db_session.get(Broadcast, b["id"])
    assert done.state == "done" and done.recipients == 4 and done.done_at is not None


def test_the_walk_over_members_in_batches_is_idempotent(db_session, client, district):
    b = _post(client, district["headers"], district["tree"][C11]).get_json()
    # Batches of two users per transaction; budget 0: one batch per call.
    assert broadcasts.walk(db_session, False, batch_size=2, budget_s=0) == 2
    db_session.expire_all()
    half = db_session.get(Broadcast, b["id"])
    assert half.state == "pending" and half.recipients == 2
    assert broadcasts.walk(db_session, False, batch_size=2, budget_s=0) == 2
    assert broadcasts.walk(db_session, False, batch_size=2, budget_s=0) == 0  # marks done
    assert broadcasts.walk(db_session, False, batch_size=2) == 0
    db_session.expire_all()
    done = db_session.get(Broadcast, b["id"])
    assert done.state == "done" and done.recipients == 4


def test_an_emergency_ignores_mutes(db_session, client, district, fcm, sender):
    """Muting a level leaves its topics; an emergency's topics cannot be left. Both
    broadcasts are in the inbox regardless."""
    muted = district["residents"][0]
    service.set_preferences(db_session, Actor(user_id=muted.id), {
        "muted_kinds": ["broadcast.info", "broadcast.warning", "broadcast.emergency"],
        "quiet_hours": {"start": "00:00", "end": "23:59"}, "timezone": None})
    db_session.commit()
    _run_topics(db_session, sender)
    assert "tok-resident-0" not in fcm.subscribed(topics.topic_name(G111, "info", "zh-CN"))
    assert "tok-resident-0" in fcm.subscribed(topics.topic_name(G111, "emergency", "zh-CN"))
    _post(client, district["headers"], district["tree"][G111], level="info", title="停水通知")
    _post(client, district["headers"], district["tree"][G111], level="emergency",
          title="燃气泄漏，立即撤离")
    _run_topics(db_session, sender)
    pushed = {r.message["topic"]: r.message for r in fcm.topic_messages()}
    emergency = pushed[topics.topic_name(G111, "emergency", "zh-CN")]
    assert emergency["notification"]["title"] == "【紧急】燃气泄漏，立即撤离"
    assert emergency["android"]["priority"] == "high"
    assert inbox.unread_count(db_session, Actor(user_id=muted.id)) == 2


def test_broadcasts_are_read_one_by_one_or_all_at_once(db_session, client, district):
    tree, staff = district["tree"], district["headers"]
    first = _post(client, staff, tree[C11]).get_json()
    _post(client, staff, tree[G112], title="停电通知")
    one, two = district["resident_headers"][1], district["resident_headers"][2]
    assert client.get("/me/notifications/unread-count", headers=one).get_json() == {"unread": 2}
    row = client.get("/me/notifications", headers=one).get_json()[-1]
    read = client.post(f"/me/notifications/{row['id']}/read", headers=one)
    assert read.status_code == 200 and read.get_json()["read"] is True
    again = client.post(f"/me/notifications/{row['id']}/read", headers=one)
    assert again.get_json()["read_at"] == read.get_json()["read_at"]  # the first time kept
    assert client.get("/me/notifications/unread-count", headers=one).get_json() == {"unread": 1}
    # Another resident's marks are their own.
    assert client.get("/me/notifications/unread-count", headers=two).get_json() == {"unread": 2}
    unread = client.get("/me/notifications?unread=true", headers=one).get_json()
    assert [x["title"] for x in unread] == ["【预警】停电通知"]
    assert client.post("/me/notifications/read-all", headers=one).get_json() == {"marked": 1}
    assert client.get("/me/notifications/unread-count", headers=one).get_json() == {"unread": 0}
    # Someone the broadcast does not reach cannot read it (404, as for another's row).
    assert_error_shape(client.post(f"/me/notifications/{first['id']}/read",
                                   headers=district["outside_headers"]), 404)
    assert db_session.scalar(sa.select(sa.func.count()).select_from(Broadcast)) == 2


def test_only_areas_of_ones_own_scope(db_session, client, district, member):
    tree, headers = district["tree"], district["headers"]
    assert_error_shape(_post(client, headers, tree[C12]), 404)  # a sibling community
    assert_error_shape(_post(client, headers, tree[S1]), 404)  # an ancestor: visible, not own
    assert_error_shape(_post(client, headers, 987654321), 404)
    resident_headers, _ = member("resident", G111)
    assert_error_shape(_post(client, resident_headers, tree[G111]), 403)
    assert db_session.scalar(sa.select(sa.func.count()).select_from(Broadcast)) == 0


def test_broadcasts_are_listed_to_staff_of_the_area_only(db_session, client, district,
                                                         member):
    b = _post(client, district["headers"], district["tree"][C11]).get_json()
    listed = client.get("/broadcasts", headers=district["headers"]).get_json()
    assert [x["id"] for x in listed] == [b["id"]]
    dispatcher, _ = member("street_dispatcher", "330183002")
    assert client.get("/broadcasts", headers=dispatcher).get_json() == []
    assert_error_shape(client.get(f"/broadcasts/{b['id']}", headers=dispatcher), 404)
    one = client.get(f"/broadcasts/{b['id']}", headers=district["headers"])
    assert one.status_code == 200 and one.get_json()["title"] == TYPHOON["title"]


def test_broadcasts_are_audited(db_session, client, district):
    b = _post(client, district["headers"], district["tree"][C11]).get_json()
    entry = db_session.scalars(sa.select(AuditEntry).where(
        AuditEntry.action == "broadcast_sent", AuditEntry.object_id == str(b["id"]))).one()
    assert entry.actor_id == district["staff"].id
    assert entry.changes["area_code"] == C11 and entry.changes["level"] == "warning"


def test_rate_limited_per_sender(app, client, district, member, monkeypatch):
    monkeypatch.setitem(app.config, "BROADCAST_LIMIT_PER_SENDER", 2)
    area = district["tree"][C11]
    for i in range(2):
        assert _post(client, district["headers"], area, title=f"通知{i}").status_code == 201
    limited = _post(client, district["headers"], area, title="通知3")
    assert_error_shape(limited, 429)
    assert int(limited.headers["Retry-After"]) >= 1
    other, _ = member("community_staff", C11)
    assert _post(client, other, area).status_code == 201  # per sender


def test_a_resent_broadcast_is_stored_once(db_session, client, district):
    area, key = district["tree"][C11], str(uuid.uuid4())
    first = _post(client, district["headers"], area, client_uuid=key)
    again = _post(client, district["headers"], area, client_uuid=key)
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.headers["Idempotent-Replay"] == "true"
    assert again.get_json()["id"] == first.get_json()["id"]
    assert db_session.scalar(sa.select(sa.func.count()).select_from(Broadcast)) == 1
    changed = _post(client, district["headers"], area, client_uuid=key, title="别的")
    assert_error_shape(changed, 409)


def test_broadcast_input_is_checked(client, district):
    area = district["tree"][C11]
    for body in ({"level": "apocalypse"}, {"title": ""}, {"text": "x" * 2001},
                 {"link": "javascript:alert(1)"}, {"title": "t" * 101}):
        assert_error_shape(_post(client, district["headers"], area, **body), 422)

"""Broadcasts (通知公告/预警): staff send an alert to an area subtree of their scope; the
worker fans it out to everyone with a membership there, inbox and push."""

from __future__ import annotations

import uuid

import pytest
import sqlalchemy as sa

from notifications import service, worker
from notifications.models import Broadcast, Notification
from server.audit import AuditEntry
from server.auth.actor import Actor
from tests.conftest import assert_error_shape
from tests.fixtures.areas import C11, C12, G111, G112, G121, G211, S1
from tests.notifications.conftest import deliver

TYPHOON = {"level": "warning", "title": "台风蓝色预警",
           "text": "预计今夜有8级大风，请关好门窗，减少外出。", "link": "https://example.org/typhoon"}


@pytest.fixture
def district(member, tree, db_session):
    """Staff of community C11, residents in its two grids (with phones), a worker in C12
    and one in the other street."""
    staff_headers, staff = member("community_staff", C11)
    residents = []
    for i, code in enumerate((G111, G112, G112)):
        _, user = member("resident", code)
        service.register_device(db_session, Actor(user_id=user.id), {
            "token": f"tok-resident-{i}", "platform": "android",
            "locale": "en" if i == 2 else "zh-CN"})
        residents.append(user)
    _, south = member("grid_worker", G121)
    _, east = member("grid_worker", G211)
    db_session.commit()
    return {"headers": staff_headers, "staff": staff, "residents": residents,
            "outside": [south, east], "tree": tree}


def _post(client, headers, area_id, **body):
    return client.post("/broadcasts", json={"area_id": area_id, **TYPHOON, **body},
                       headers=headers)


def _inbox_users(db_session, broadcast_id) -> list[int]:
    return sorted(db_session.scalars(sa.select(Notification.user_id).where(
        Notification.data["broadcast_id"].as_integer() == broadcast_id)))


def test_a_broadcast_reaches_everyone_in_the_subtree_inbox_and_phone(
        db_session, client, district, fcm, sender, login):
    posted = _post(client, district["headers"], district["tree"][C11])
    assert posted.status_code == 201, posted.get_json()
    b = posted.get_json()
    assert b["state"] == "pending" and b["recipients"] == 0 and b["level"] == "warning"
    # The request wrote one row; nothing is fanned out yet.
    assert _inbox_users(db_session, b["id"]) == []

    assert worker.expand_broadcasts(db_session) == 4  # 3 residents + the staff member
    expected = sorted([u.id for u in district["residents"]] + [district["staff"].id])
    assert _inbox_users(db_session, b["id"]) == expected
    db_session.expire_all()
    done = db_session.get(Broadcast, b["id"])
    assert done.state == "done" and done.recipients == 4 and done.done_at is not None

    deliver(db_session, sender)
    titles = {r.token: r.message["notification"]["title"] for r in fcm.received}
    assert titles == {"tok-resident-0": "【预警】台风蓝色预警",
                      "tok-resident-1": "【预警】台风蓝色预警",
                      "tok-resident-2": "[Warning] 台风蓝色预警"}
    pushed = fcm.received_for("tok-resident-0")[0].message
    assert pushed["data"]["link"] == TYPHOON["link"]
    assert pushed["android"]["collapse_key"] == f"broadcast:{b['id']}"

    resident = district["residents"][0]
    inbox = client.get("/me/notifications", headers={
        "Authorization": f"Bearer {login(resident.username)['access_token']}"}).get_json()
    assert inbox[0]["kind"] == "broadcast.warning"
    assert inbox[0]["body"] == TYPHOON["text"]


def test_fan_out_in_batches_is_idempotent(db_session, client, district):
    b = _post(client, district["headers"], district["tree"][C11]).get_json()
    # One batch of two users per transaction; budget 0: one batch per call.
    assert worker.expand_broadcasts(db_session, batch_size=2, budget_s=0) == 2
    db_session.expire_all()
    half = db_session.get(Broadcast, b["id"])
    assert half.state == "pending" and half.recipients == 2
    assert len(_inbox_users(db_session, b["id"])) == 2
    assert worker.expand_broadcasts(db_session, batch_size=2, budget_s=0) == 2
    assert worker.expand_broadcasts(db_session, batch_size=2, budget_s=0) == 0  # marks done
    assert worker.expand_broadcasts(db_session, batch_size=2) == 0
    users = _inbox_users(db_session, b["id"])
    assert len(users) == len(set(users)) == 4
    db_session.expire_all()
    assert db_session.get(Broadcast, b["id"]).state == "done"


def test_an_emergency_ignores_mutes_and_quiet_hours(db_session, client, district, fcm,
                                                    sender):
    muted = district["residents"][0]
    service.set_preferences(db_session, Actor(user_id=muted.id), {
        "muted_kinds": ["broadcast.info", "broadcast.warning", "broadcast.emergency"],
        "quiet_hours": {"start": "00:00", "end": "23:59"}, "timezone": None})
    db_session.commit()
    _post(client, district["headers"], district["tree"][G111], level="info", title="停水通知")
    _post(client, district["headers"], district["tree"][G111], level="emergency",
          title="燃气泄漏，立即撤离")
    worker.expand_broadcasts(db_session)
    deliver(db_session, sender)
    pushed = [r.message for r in fcm.received_for("tok-resident-0")]
    assert [m["notification"]["title"] for m in pushed] == ["【紧急】燃气泄漏，立即撤离"]
    assert pushed[0]["android"]["priority"] == "high"
    assert service.unread_count(db_session, Actor(user_id=muted.id)) == 2  # both in the inbox


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

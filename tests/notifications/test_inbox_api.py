"""What a phone does through the API: register its token, read the inbox in its language,
mark things read, set mutes and quiet hours, stop pushes at logout."""

from __future__ import annotations

import json

import sqlalchemy as sa

from notifications import service
from notifications.models import Device, OutboxMessage
from tests.conftest import assert_error_shape
from tests.notifications.conftest import deliver

TOKEN = "fcm-token-aaaaaaaaaaaaaaaaaaaa:APA91bH-xyz_123"


def _headers(login, user) -> dict:
    return {"Authorization": f"Bearer {login(user.username)['access_token']}"}


def _notify(db_session, user, **data):
    data = {"case_no": "SJ-7", "step": "办结", "summary": "路灯不亮", **data}
    ids = service.notify(db_session, [user.id], "test.case_moved", data, collapse_key="case:7")
    db_session.commit()
    return ids[0]


def test_register_a_device_then_again(client, make_user, login):
    headers = _headers(login, make_user("resident"))
    body = {"token": TOKEN, "platform": "android", "app_version": "2.3.1", "locale": "en"}
    first = client.post("/me/devices", json=body, headers=headers)
    assert first.status_code == 201
    assert first.get_json()["platform"] == "android" and first.get_json()["locale"] == "en"
    again = client.post("/me/devices", json={**body, "app_version": "2.4.0"}, headers=headers)
    assert again.status_code == 200 and again.get_json()["app_version"] == "2.4.0"
    assert again.get_json()["id"] == first.get_json()["id"]
    listed = client.get("/me/devices", headers=headers).get_json()
    assert [d["token"] for d in listed] == [TOKEN]


def test_several_devices_per_user(client, make_user, login):
    headers = _headers(login, make_user("grid_worker"))
    for i, platform in enumerate(("android", "ios", "web")):
        assert client.post("/me/devices", json={"token": f"{TOKEN}{i}", "platform": platform},
                           headers=headers).status_code == 201
    assert len(client.get("/me/devices", headers=headers).get_json()) == 3


def test_a_token_that_moves_to_another_user_is_rebound(db_session, client, make_user, login,
                                                       fcm, sender):
    alice, bob = make_user("resident"), make_user("resident")
    a, b = _headers(login, alice), _headers(login, bob)
    client.post("/me/devices", json={"token": TOKEN, "platform": "android"}, headers=a)
    moved = client.post("/me/devices", json={"token": TOKEN, "platform": "android"}, headers=b)
    assert moved.status_code == 200
    assert client.get("/me/devices", headers=a).get_json() == []
    assert [d["token"] for d in client.get("/me/devices", headers=b).get_json()] == [TOKEN]
    _notify(db_session, alice, summary="给 Alice")
    _notify(db_session, bob, summary="给 Bob")
    deliver(db_session, sender)
    pushed, = fcm.received_for(TOKEN)
    assert pushed.message["notification"]["body"] == "您上报的问题：给 Bob"


def test_device_input_is_checked(client, make_user, login):
    headers = _headers(login, make_user("resident"))
    for body in ({"token": TOKEN, "platform": "blackberry"},
                 {"token": "has space", "platform": "ios"},
                 {"token": TOKEN, "platform": "ios", "locale": "not a locale"},
                 {"platform": "ios"}):
        assert_error_shape(client.post("/me/devices", json=body, headers=headers), 422)
    assert_error_shape(client.post("/me/devices", json={"token": TOKEN, "platform": "ios"}),
                       401)


def test_remove_a_device(client, make_user, login):
    headers = _headers(login, make_user("resident"))
    other = _headers(login, make_user("resident"))
    client.post("/me/devices", json={"token": TOKEN, "platform": "ios"}, headers=headers)
    assert_error_shape(client.delete(f"/me/devices/{TOKEN}", headers=other), 404)
    assert client.delete(f"/me/devices/{TOKEN}", headers=headers).status_code == 204
    assert client.get("/me/devices", headers=headers).get_json() == []
    assert_error_shape(client.delete(f"/me/devices/{TOKEN}", headers=headers), 404)


def test_logout_stops_pushes_to_that_phone_and_the_worker_forgets_it(
        db_session, client, make_user, login, fcm, sender):
    from notifications import worker

    user = make_user("resident")
    phone, tablet = _headers(login, user), _headers(login, user)
    client.post("/me/devices", json={"token": "tok-phone", "platform": "android"}, headers=phone)
    client.post("/me/devices", json={"token": "tok-tablet", "platform": "ios"}, headers=tablet)
    assert client.post("/auth/logout", headers=phone).status_code == 204

    _notify(db_session, user)
    deliver(db_session, sender)
    assert fcm.received_for("tok-phone") == []
    assert len(fcm.received_for("tok-tablet")) == 1

    assert worker.prune_devices(db_session) >= 1
    db_session.commit()
    assert db_session.scalars(sa.select(Device.token).where(Device.user_id == user.id)
                              ).all() == ["tok-tablet"]


def test_inbox_in_the_requests_language_with_unread_count(db_session, client, make_user,
                                                          login):
    user = make_user("resident")
    headers = _headers(login, user)
    first = _notify(db_session, user)
    second = _notify(db_session, user, summary="又坏了")

    zh = client.get("/me/notifications", headers=headers)
    assert zh.status_code == 200
    assert [i["id"] for i in zh.get_json()] == [second, first]  # newest first
    item = zh.get_json()[1]
    assert item["title"] == "案件SJ-7已办结" and item["body"] == "您上报的问题：路灯不亮"
    assert item["read"] is False and item["read_at"] is None
    assert item["data"]["summary"] == "路灯不亮" and item["collapse_key"] == "case:7"
    assert zh.headers["X-Unread-Count"] == "2"
    assert json.loads(zh.headers["X-Pagination"])["total"] == 2

    en = client.get("/me/notifications", headers={
        **headers, "Accept-Language": "en-GB,en;q=0.9,zh;q=0.5"}).get_json()
    assert en[1]["title"] == "Case SJ-7 办结"
    fr = client.get("/me/notifications", headers={**headers, "Accept-Language": "fr"})
    assert fr.get_json()[1]["title"] == "案件SJ-7已办结"  # zh-CN by default

    paged = client.get("/me/notifications?page=2&page_size=1", headers=headers)
    assert [i["id"] for i in paged.get_json()] == [first]
    count = client.get("/me/notifications/unread-count", headers=headers)
    assert count.get_json() == {"unread": 2}


def test_mark_one_then_all_read(db_session, client, make_user, login):
    user = make_user("resident")
    headers = _headers(login, user)
    ids = [_notify(db_session, user, summary=str(i)) for i in range(3)]

    read = client.post(f"/me/notifications/{ids[0]}/read", headers=headers)
    assert read.status_code == 200 and read.get_json()["read"] is True
    first_read_at = read.get_json()["read_at"]
    again = client.post(f"/me/notifications/{ids[0]}/read", headers=headers)
    assert again.get_json()["read_at"] == first_read_at  # the first time is kept
    assert client.get("/me/notifications/unread-count", headers=headers).get_json() == {
        "unread": 2}
    unread = client.get("/me/notifications?unread=true", headers=headers).get_json()
    assert [i["id"] for i in unread] == [ids[2], ids[1]]

    marked = client.post("/me/notifications/read-all", json={"up_to_id": ids[1]},
                         headers=headers)
    assert marked.get_json() == {"marked": 1}
    marked = client.post("/me/notifications/read-all", json={}, headers=headers)
    assert marked.get_json() == {"marked": 1}
    assert client.get("/me/notifications/unread-count", headers=headers).get_json() == {
        "unread": 0}


def test_one_cannot_see_or_mark_someone_elses_notifications(db_session, client, make_user,
                                                            login):
    owner, other = make_user("resident"), make_user("resident")
    nid = _notify(db_session, owner)
    headers = _headers(login, other)
    assert client.get("/me/notifications", headers=headers).get_json() == []
    assert_error_shape(client.post(f"/me/notifications/{nid}/read", headers=headers), 404)
    assert client.post("/me/notifications/read-all", json={}, headers=headers).get_json() == {
        "marked": 0}
    assert client.get("/me/notifications/unread-count",
                      headers=_headers(login, owner)).get_json() == {"unread": 1}


def test_preferences_round_trip_and_validation(db_session, client, make_user, login):
    user = make_user("resident")
    headers = _headers(login, user)
    default = client.get("/me/notification-preferences", headers=headers)
    assert default.get_json() == {"muted_kinds": [], "quiet_hours": None,
                                  "timezone": "Asia/Shanghai"}
    body = {"muted_kinds": ["broadcast.info", "test.case_moved"],
            "quiet_hours": {"start": "22:00", "end": "07:00"}, "timezone": "Asia/Urumqi"}
    put = client.put("/me/notification-preferences", json=body, headers=headers)
    assert put.status_code == 200 and put.get_json() == body
    assert client.get("/me/notification-preferences", headers=headers).get_json() == body

    for bad in ({"quiet_hours": {"start": "25:00", "end": "07:00"}},
                {"quiet_hours": {"start": "07:00", "end": "07:00"}},
                {"timezone": "Mars/Olympus"}, {"timezone": "../../etc/passwd"},
                {"muted_kinds": ["Not A Kind!"]}):
        assert_error_shape(client.put("/me/notification-preferences", json=bad,
                                      headers=headers), 422)
    # A muted kind gets no outbox row, the inbox row is there.
    nid = _notify(db_session, user)
    assert db_session.scalar(sa.select(sa.func.count()).select_from(OutboxMessage).where(
        OutboxMessage.notification_id == nid)) == 0
    assert client.get("/me/notifications/unread-count", headers=headers).get_json() == {
        "unread": 1}

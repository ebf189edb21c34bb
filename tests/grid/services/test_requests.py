"""Request-type services (上门维修 for an elderly resident): the request goes to the
providing staff, who accept, schedule and complete it; the resident hears of each step."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from tests.conftest import assert_error_shape, inbox
from tests.fixtures.http import new_uuid
from tests.fixtures.services import make_service
from tests.grid.services.conftest import act


def test_a_home_repair_request_from_asked_to_rated(people, tree, db_session):
    svc = make_service(people.staff, tree, db_session, category="housekeeping",
                       name="老年人上门维修", booking_mode="request")
    key = new_uuid()
    body = {"client_uuid": key, "note": "厨房水管漏水", "address": "北社区3幢201"}
    asked = people.resident.ok(people.resident.post(f"/services/{svc['id']}/requests", body), 201)
    assert asked["state"] == "requested" and asked["kind"] == "request"
    replay = people.resident.ok(people.resident.post(f"/services/{svc['id']}/requests", body))
    assert replay["id"] == asked["id"]
    [note] = inbox(db_session, people.staff.user, "service_request_new")
    assert note.data["note"] == "厨房水管漏水"
    assert inbox(db_session, people.staff21.user) == []  # another community's staff
    assert_error_shape(people.staff21.get(f"/bookings/{asked['id']}"), 404)

    seen = people.staff.ok(people.staff.get(f"/bookings/{asked['id']}"))
    assert set(seen["actions"]) == {"accept", "schedule", "decline"}
    accepted = act(people.staff, seen, "accept")
    when = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    scheduled = act(people.staff, accepted, "schedule", scheduled_at=when)
    assert scheduled["state"] == "scheduled" and scheduled["starts_at"]
    act(people.resident, scheduled, "rate", status=409, rating=5)  # not done yet
    done = act(people.staff, scheduled, "complete", result="已更换水管接头")
    steps = [n.data["state_en"] for n in inbox(db_session, people.resident.user,
                                               "service_request_changed")]
    assert steps == ["accepted", "scheduled", "completed"]
    rated = act(people.resident, people.resident.ok(people.resident.get(
        f"/bookings/{done['id']}")), "rate", rating=5)
    assert rated["rating"] == 5


def test_a_declined_request_needs_a_reason_and_a_slot_service_takes_no_requests(
        people, tree, db_session):
    svc = make_service(people.staff, tree, db_session, booking_mode="request")
    asked = people.resident.ok(people.resident.post(f"/services/{svc['id']}/requests",
                                                    {"note": "需要助浴"}), 201)
    act(people.staff, asked, "decline", status=422)
    declined = act(people.staff, asked, "decline", reason="本服务暂不含助浴")
    assert declined["state"] == "declined"
    assert inbox(db_session, people.resident.user, "service_request_changed")[0] \
        .data["detail"] == "本服务暂不含助浴"
    slots = make_service(people.staff, tree, db_session)
    assert_error_shape(people.resident.post(f"/services/{slots['id']}/requests",
                                            {"note": "x"}), 409)


def test_a_resident_withdraws_a_request_and_the_staff_hear_of_it(people, tree, db_session):
    svc = make_service(people.staff, tree, db_session, booking_mode="request")
    asked = people.resident.ok(people.resident.post(f"/services/{svc['id']}/requests",
                                                    {"note": "需要理发"}), 201)
    act(people.resident, asked, "cancel", reason="已自行解决")
    [note] = inbox(db_session, people.staff.user, "service_request_changed")
    assert note.data["state_en"] == "cancelled"

"""Booking a slot: one per resident per slot, never beyond capacity, limits per service,
cancel and reschedule until the cut-off, attended / no-show, blocking after repeated
no-shows, ratings, idempotency, versions, and the staff's view of one service."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

from grid.services import catalogue
from tests.conftest import assert_error_shape
from tests.fixtures.http import new_uuid, total
from tests.fixtures.services import add_slot, book, make_service
from tests.grid.services.conftest import act, move_to_past, slot_row

DAY, HOUR = timedelta(days=1), timedelta(hours=1)


def test_book_a_slot_once_and_never_beyond_capacity(people, tree, db_session, api):
    svc = make_service(people.staff, tree, db_session)
    slot = add_slot(db_session, svc["id"], 2 * DAY, capacity=2)
    first = book(people.resident, slot, note="头晕")
    assert first["state"] == "booked" and "cancel" in first["actions"]
    again = assert_error_shape(people.resident.post("/bookings", {"slot_id": slot}), 409)
    assert again["existing"]["id"] == first["id"]
    book(people.resident2, slot)
    from tests.fixtures.areas import C11

    late = api("resident", C11)
    assert "full" in assert_error_shape(late.post("/bookings", {"slot_id": slot}), 409)["message"]
    assert slot_row(db_session, slot).booked == 2
    # only residents book
    assert_error_shape(people.staff.post("/bookings", {"slot_id": slot}), 403)
    assert_error_shape(people.resident.post("/bookings", {"slot_id": 10**12}), 404)


def test_a_client_uuid_makes_a_booking_once(people, tree, db_session):
    svc = make_service(people.staff, tree, db_session)
    slot = add_slot(db_session, svc["id"], 2 * DAY)
    key = new_uuid()
    first = book(people.resident, slot, client_uuid=key)
    replay = book(people.resident, slot, status=200, client_uuid=key)
    assert replay["id"] == first["id"] and slot_row(db_session, slot).booked == 1
    other = add_slot(db_session, svc["id"], 3 * DAY)
    assert_error_shape(people.resident.post("/bookings", {"slot_id": other,
                                                          "client_uuid": key}), 409)


def test_a_resident_holds_at_most_the_services_limit(people, tree, db_session):
    svc = make_service(people.staff, tree, db_session, max_active_per_resident=2)
    slots = [add_slot(db_session, svc["id"], n * DAY) for n in (1, 2, 3)]
    a = book(people.resident, slots[0])
    book(people.resident, slots[1])
    body = assert_error_shape(people.resident.post("/bookings", {"slot_id": slots[2]}), 409)
    assert "at most 2" in body["message"]
    act(people.resident, a, "cancel")  # a cancelled booking frees the place
    book(people.resident, slots[2])


def test_cancel_until_the_cut_off_releases_the_place(people, tree, db_session):
    svc = make_service(people.staff, tree, db_session)  # default cut-off: 120 minutes
    soon = add_slot(db_session, svc["id"], timedelta(minutes=90))
    later = add_slot(db_session, svc["id"], 2 * DAY)
    near = book(people.resident, soon)
    body = act(people.resident, near, "cancel", status=409)
    assert "cut-off" in body["message"]
    far = book(people.resident2, later)
    assert slot_row(db_session, later).booked == 1
    cancelled = act(people.resident2, far, "cancel", reason="临时有事")
    assert cancelled["state"] == "cancelled" and cancelled["actions"] == []
    assert slot_row(db_session, later).booked == 0
    act(people.resident2, cancelled, "cancel", status=409)  # with `allowed`
    # a service's own cut-off
    quick = make_service(people.staff, tree, db_session, cancel_cutoff_minutes=30)
    soon2 = add_slot(db_session, quick["id"], timedelta(minutes=90))
    act(people.resident, book(people.resident, soon2), "cancel")


def test_reschedule_moves_the_place_until_the_cut_off(people, tree, db_session):
    svc = make_service(people.staff, tree, db_session)
    a = add_slot(db_session, svc["id"], 2 * DAY)
    b = add_slot(db_session, svc["id"], 3 * DAY, capacity=1)
    c = add_slot(db_session, svc["id"], 4 * DAY, capacity=1)
    mine = book(people.resident, a)
    moved = act(people.resident, mine, "reschedule", slot_id=b)
    assert moved["slot_id"] == b and moved["starts_at"] != mine["starts_at"]
    assert (slot_row(db_session, a).booked, slot_row(db_session, b).booked) == (0, 1)
    book(people.resident2, c)
    act(people.resident, moved, "reschedule", status=409, slot_id=c)  # full
    assert slot_row(db_session, b).booked == 1
    other = make_service(people.staff, tree, db_session)
    foreign = add_slot(db_session, other["id"], 2 * DAY)
    act(people.resident, moved, "reschedule", status=422, slot_id=foreign)
    soon = add_slot(db_session, svc["id"], timedelta(minutes=60))
    near = book(people.resident2, soon)
    act(people.resident2, near, "reschedule", status=409, slot_id=a)  # past the cut-off


def test_actions_need_the_version_and_the_right_party(people, tree, db_session):
    svc = make_service(people.staff, tree, db_session)
    slot = add_slot(db_session, svc["id"], 2 * DAY)
    mine = book(people.resident, slot)
    url = f"/bookings/{mine['id']}/actions/cancel"
    assert_error_shape(people.resident.post(url, {}), 428)
    assert assert_error_shape(people.resident.post(url, {"version": 99}),
                              412)["current"]["state"] == "booked"
    assert_error_shape(people.resident2.post(url, {"version": 1}), 404)  # not theirs
    assert_error_shape(people.staff21.post(url, {"version": 1}), 404)  # not their service
    assert_error_shape(people.staff.post(url, {"version": 1}), 403)  # staff do not cancel
    assert_error_shape(people.resident.post(f"/bookings/{mine['id']}/actions/attend",
                                            {"version": 1}), 403)
    assert_error_shape(people.resident.post(f"/bookings/{mine['id']}/actions/fly",
                                            {"version": 1}), 404)


def test_attended_then_rated_and_no_shows_block_booking_for_a_while(people, tree,
                                                                      db_session, app):
    svc = make_service(people.staff, tree, db_session, max_active_per_resident=10)
    visit = book(people.resident, add_slot(db_session, svc["id"], 2 * DAY))
    attended = act(people.staff, people.staff.ok(people.staff.get(
        f"/bookings/{visit['id']}")), "attend")
    assert attended["state"] == "attended"
    rated = act(people.resident, attended, "rate", rating=5, comment="医生很耐心")
    assert rated["rating"] == 5 and "rate" not in rated["actions"]
    act(people.resident, rated, "rate", status=409, rating=4)
    # a no-show is marked only once the slot has begun
    early = book(people.resident, add_slot(db_session, svc["id"], 2 * DAY + HOUR))
    act(people.staff, early, "no_show", status=409)
    limit = app.config["SERVICE_NO_SHOW_LIMIT"]
    assert limit == 3
    for i in range(limit):
        missed = book(people.resident, add_slot(db_session, svc["id"], (3 + i) * DAY))
        move_to_past(db_session, missed["id"], ago=timedelta(days=i + 1))
        act(people.staff, people.staff.ok(people.staff.get(f"/bookings/{missed['id']}")),
            "no_show")
    body = assert_error_shape(people.resident.post(
        "/bookings", {"slot_id": add_slot(db_session, svc["id"], 9 * DAY)}), 403)
    assert "no-shows" in body["message"]
    # others are not affected; the block lifts when the oldest no-show leaves the window
    book(people.resident2, add_slot(db_session, svc["id"], 9 * DAY + HOUR))
    configured = catalogue.settings()
    catalogue.configure(dataclasses.replace(configured, no_show_window_days=2))
    try:
        book(people.resident, add_slot(db_session, svc["id"], 10 * DAY))
    finally:
        catalogue.configure(configured)


def test_staff_see_a_days_bookings_and_the_figures(people, tree, db_session):
    svc = make_service(people.staff, tree, db_session, max_active_per_resident=5)
    slot = add_slot(db_session, svc["id"], timedelta(minutes=10), capacity=4)
    a, b = book(people.resident, slot), book(people.resident2, slot)
    move_to_past(db_session, a["id"], ago=timedelta(minutes=5))
    a = act(people.staff, people.staff.ok(people.staff.get(f"/bookings/{a['id']}")), "attend")
    act(people.resident, a, "rate", rating=4)
    act(people.staff, people.staff.ok(people.staff.get(f"/bookings/{b['id']}")), "no_show")
    from datetime import UTC, datetime
    from zoneinfo import ZoneInfo

    today = datetime.now(UTC).astimezone(ZoneInfo("Asia/Shanghai")).date()
    if slot_row(db_session, slot).starts_at.astimezone(ZoneInfo("Asia/Shanghai")).date() \
            != today:  # run just after local midnight: the slot began yesterday
        today -= timedelta(days=1)
    listed = people.staff.get(f"/services/{svc['id']}/bookings?day={today}")
    assert total(listed) == 2
    assert {x["state"] for x in listed.get_json()} == {"attended", "no_show"}
    figures = people.staff.ok(people.staff.get(
        f"/services/{svc['id']}/stats?from={today - timedelta(days=1)}&to={today}"))
    assert len(figures["days"]) == 2 and figures["days"][0]["bookings"] == 0
    day = figures["days"][1]
    assert (day["capacity"], day["bookings"], day["attended"], day["no_shows"]) == (4, 2, 1, 1)
    assert day["utilization"] == 0.5 and day["no_show_rate"] == 0.5
    assert day["mean_rating"] == 4.0 and figures["total"]["bookings"] == 2
    # outside the staff's scope, and for residents, the service's books are closed
    assert_error_shape(people.staff21.get(f"/services/{svc['id']}/stats?from={today}&to={today}"),
                       404)
    assert_error_shape(people.resident.get(f"/services/{svc['id']}/bookings"), 403)
    assert_error_shape(people.staff.get(
        f"/services/{svc['id']}/stats?from={today}&to={today - timedelta(days=1)}"), 422)


def test_residents_list_their_own_bookings(people, tree, db_session):
    svc = make_service(people.staff, tree, db_session)
    mine = book(people.resident, add_slot(db_session, svc["id"], 2 * DAY))
    book(people.resident2, add_slot(db_session, svc["id"], 3 * DAY))
    listed = people.resident.get("/bookings?upcoming=true")
    assert [b["id"] for b in listed.get_json()] == [mine["id"]] and total(listed) == 1


def test_days_out_of_range_are_a_422_not_a_500(people, tree, db_session):
    svc = make_service(people.staff, tree, db_session)
    for url in (f"/services/{svc['id']}/slots?from=9999-12-31&to=9999-12-31",
                f"/services/{svc['id']}/stats?from=0001-01-01&to=0001-01-02",
                f"/services/{svc['id']}/bookings?day=9999-12-31"):
        assert_error_shape(people.staff.get(url), 422)


def test_two_residents_swap_slots(people, tree, db_session):
    svc = make_service(people.staff, tree, db_session)
    a = add_slot(db_session, svc["id"], 2 * DAY, capacity=1)
    b = add_slot(db_session, svc["id"], 3 * DAY, capacity=2)
    mine, theirs = book(people.resident, a), book(people.resident2, b)
    mine = act(people.resident, mine, "reschedule", slot_id=b)
    act(people.resident2, theirs, "reschedule", slot_id=a)
    assert (slot_row(db_session, a).booked, slot_row(db_session, b).booked) == (1, 1)

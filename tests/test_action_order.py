"""The one order of checks of the action engine (server/actions.py), seen through the API:
a case and a booking answer the same stale request from the wrong party the same way
(403 before 412), and the right party's stale request gets 412 with the record as its own
GET answers it now."""

from __future__ import annotations

from datetime import timedelta

from tests.conftest import assert_error_shape
from tests.fixtures.areas import C11
from tests.fixtures.cases import act, report
from tests.fixtures.services import add_slot, book, make_service


def _case_and_booking(people, category, api, tree, db_session):
    """A case that moved on (accepted) and a booking that moved on (rescheduled), with the
    versions their parties read before."""
    case = report(people.resident, category)
    act(people.dispatcher, case, "accept")
    staff, resident = api("community_staff", C11), api("resident", C11)
    service = make_service(staff, tree, db_session)
    first = add_slot(db_session, service["id"], timedelta(days=2))
    second = add_slot(db_session, service["id"], timedelta(days=3))
    booking = book(resident, first)
    moved = resident.post(f"/bookings/{booking['id']}/actions/reschedule",
                          {"version": booking["version"], "slot_id": second})
    assert moved.status_code == 200, moved.get_json()
    return case, booking, staff, resident


def test_the_same_stale_request_from_the_wrong_party_gets_the_same_answer(
        people, category, api, tree, db_session):
    case, booking, staff, resident = _case_and_booking(people, category, api, tree,
                                                       db_session)
    # the worker of the case's grid sees the case but is not its department; the staff
    # member sees the booking but is not its booker — both with the stale version
    on_case = people.worker.post(f"/cases/{case['id']}/actions/sign",
                                 {"version": case["version"]})
    on_booking = staff.post(f"/bookings/{booking['id']}/actions/rate",
                            {"version": booking["version"], "rating": 5})
    assert on_case.status_code == on_booking.status_code == 403
    assert_error_shape(on_case, 403), assert_error_shape(on_booking, 403)


def test_the_right_party_stale_gets_412_with_the_record_as_its_get_answers(
        people, category, api, tree, db_session):
    case, booking, staff, resident = _case_and_booking(people, category, api, tree,
                                                       db_session)
    stale_case = people.dispatcher.post(f"/cases/{case['id']}/actions/dispatch",
                                        {"version": case["version"]})
    stale_booking = resident.post(f"/bookings/{booking['id']}/actions/cancel",
                                  {"version": booking["version"]})
    for stale, path, who in ((stale_case, f"/cases/{case['id']}", people.dispatcher),
                             (stale_booking, f"/bookings/{booking['id']}", resident)):
        body = assert_error_shape(stale, 412)
        assert body["current"] == who.ok(who.get(path))


def test_no_version_from_the_wrong_party_is_still_403(people, category, api, tree,
                                                      db_session):
    case, booking, staff, resident = _case_and_booking(people, category, api, tree,
                                                       db_session)
    assert people.worker.post(f"/cases/{case['id']}/actions/sign", {}).status_code == 403
    assert staff.post(f"/bookings/{booking['id']}/actions/cancel", {}).status_code == 403
    assert people.dispatcher.post(f"/cases/{case['id']}/actions/dispatch",
                                  {}).status_code == 428
    assert resident.post(f"/bookings/{booking['id']}/actions/cancel", {}).status_code == 428

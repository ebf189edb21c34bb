"""From a change in the domain to the phone: a case moving and a booking reminder reach the
resident's inbox and, through the worker and the real firebase-admin SDK, the FCM stand-in."""

from __future__ import annotations

from datetime import timedelta

from grid.services import reminders
from grid.services.models import Booking
from tests.fixtures.areas import C11, member, tree  # noqa: F401
from tests.fixtures.cases import act, category, department, people, report  # noqa: F401
from tests.fixtures.http import api  # noqa: F401
from tests.fixtures.services import add_slot, book, make_service
from tests.fixtures.users import make_user  # noqa: F401
from tests.notifications.conftest import (  # noqa: F401
    _fresh_standin,
    credentials_file,
    deliver,
    fcm,
    fcm_config,
    sender,
)


def test_a_case_transition_and_a_booking_reminder_reach_the_phone(people, category, api,  # noqa: F811
                                                                  tree, db_session, fcm,  # noqa: F811
                                                                  sender):  # noqa: F811
    resident = people.resident
    resident.ok(resident.post("/me/devices", {"token": "tok-resident", "platform": "android",
                                              "locale": "zh-CN"}), 201)
    case = report(resident, category)
    act(people.dispatcher, people.dispatcher.ok(people.dispatcher.get(f"/cases/{case['id']}")),
        "accept")
    db_session.commit()
    deliver(db_session, sender)
    pushed, = fcm.received_for("tok-resident")
    assert pushed.message["notification"]["title"] == "事件立案"
    assert pushed.message["data"]["kind"] == "case_changed"
    assert pushed.message["android"]["collapse_key"] == f"case:{case['id']}"
    inbox = resident.ok(resident.get("/me/notifications"))
    assert [n["kind"] for n in inbox] == ["case_changed"]

    staff = api("community_staff", C11)
    offered = make_service(staff, tree, db_session)
    booking = book(resident, add_slot(db_session, offered["id"], timedelta(days=3)))
    starts = db_session.get(Booking, booking["id"]).starts_at
    assert reminders.send_reminders(db_session, starts - timedelta(hours=23)) == {
        "service_reminder_day": 1}
    db_session.commit()
    deliver(db_session, sender)
    reminder = fcm.received_for("tok-resident")[-1]
    assert reminder.message["notification"]["title"].startswith("预约提醒")
    assert reminder.message["data"]["kind"] == "service_reminder_day"

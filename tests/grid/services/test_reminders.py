"""Reminders: the day before and an hour before, each exactly once, through the outbox."""

from __future__ import annotations

from datetime import timedelta

from grid.services import reminders
from grid.services.models import Booking
from server.cli import periodic_tasks
from tests.conftest import inbox
from tests.fixtures.services import add_slot, book, make_service
from tests.grid.services.conftest import outbox


def test_the_day_before_and_the_hour_before_each_once(people, tree, db_session):
    svc = make_service(people.staff, tree, db_session)
    slot = add_slot(db_session, svc["id"], timedelta(days=3))
    mine = book(people.resident, slot)
    starts = db_session.get(Booking, mine["id"]).starts_at
    assert reminders.send_reminders(db_session, starts - timedelta(hours=30)) == {}
    assert reminders.send_reminders(db_session, starts - timedelta(hours=23)) == {
        "service_reminder_day": 1}
    assert reminders.send_reminders(db_session, starts - timedelta(hours=22)) == {}
    assert reminders.send_reminders(db_session, starts - timedelta(minutes=50)) == {
        "service_reminder_hour": 1}
    assert reminders.send_reminders(db_session, starts - timedelta(minutes=10)) == {}
    db_session.commit()
    notes = inbox(db_session, people.resident.user)
    assert [n.kind for n in notes] == ["service_reminder_day", "service_reminder_hour"]
    assert notes[0].data["booking_id"] == mine["id"] and notes[0].data["service"] == svc["name"]
    assert len(outbox(db_session, people.resident.user)) == 2
    # the inbox speaks the resident's language
    shown = people.resident.ok(people.resident.get("/me/notifications"))
    assert shown[0]["title"].startswith("预约提醒")


def test_cancelled_bookings_and_late_bookings_get_no_extra_reminders(people, tree, db_session):
    svc = make_service(people.staff, tree, db_session)
    cancelled = book(people.resident, add_slot(db_session, svc["id"], timedelta(days=3)))
    from tests.grid.services.conftest import act

    act(people.resident, cancelled, "cancel")
    soon = book(people.resident2, add_slot(db_session, svc["id"], timedelta(minutes=40)))
    assert reminders.send_reminders(db_session) == {}  # booked within the hour: no reminder
    assert db_session.get(Booking, soon["id"]).reminded_hour_at is not None
    assert inbox(db_session, people.resident.user, "service_reminder_day") == []


def test_the_worker_runs_the_reminders_every_minute():
    task = next(t for t in periodic_tasks if t.name == "service_reminders")
    assert task.every_s == 60
    assert any(t.name == "service_slots" for t in periodic_tasks)

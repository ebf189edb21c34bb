"""Weekly schedules generate slots ahead on the calendar's working days (public holidays
skipped, make-up days kept); staff close a slot and its residents are told."""

from __future__ import annotations

from datetime import date, time, timedelta
from zoneinfo import ZoneInfo

import sqlalchemy as sa

from grid.calendar.service import clear_cache
from grid.services import schedules
from grid.services.models import Schedule, Slot
from server import clock
from tests.conftest import assert_error_shape, inbox
from tests.fixtures.areas import C21
from tests.fixtures.maps import counting
from tests.fixtures.services import add_slot, book, make_service
from tests.grid.services.conftest import outbox, slot_row

SHANGHAI = ZoneInfo("Asia/Shanghai")


def test_a_schedule_skips_the_may_day_holiday_and_opens_the_make_up_saturday(
        people, tree, db_session):
    svc = make_service(people.staff, tree, db_session)
    schedule = Schedule(service_id=svc["id"], weekdays=[1, 2, 3, 4, 5],
                        start_time=time(8, 30), end_time=time(10, 0), slot_minutes=30,
                        capacity=4, working_days_only=True)
    db_session.add(schedule)
    db_session.flush()
    # 劳动节 2026: Fri 05-01 … Tue 05-05 off, Sat 05-09 a make-up working day (调休)
    created = schedules.generate_slots(db_session, schedule, date(2026, 4, 30), date(2026, 5, 11))
    starts = db_session.scalars(sa.select(Slot.starts_at).where(
        Slot.schedule_id == schedule.id).order_by(Slot.starts_at)).all()
    days = sorted({s.astimezone(SHANGHAI).date() for s in starts})
    assert days == [date(2026, 4, 30), date(2026, 5, 6), date(2026, 5, 7), date(2026, 5, 8),
                    date(2026, 5, 9), date(2026, 5, 11)]
    assert created == len(starts) == 6 * 3  # 08:30, 09:00, 09:30 each day
    first = [s.astimezone(SHANGHAI).strftime("%H:%M") for s in starts[:3]]
    assert first == ["08:30", "09:00", "09:30"]
    # generating again creates nothing new (re-runnable by the worker)
    assert schedules.generate_slots(db_session, schedule, date(2026, 4, 30),
                                  date(2026, 5, 11)) == 0


def test_a_schedule_for_every_day_ignores_the_calendar(people, tree, db_session):
    svc = make_service(people.staff, tree, db_session)
    schedule = Schedule(service_id=svc["id"], weekdays=[5, 6], start_time=time(9),
                        end_time=time(10), slot_minutes=60, capacity=4,
                        working_days_only=False)
    db_session.add(schedule)
    db_session.flush()
    schedules.generate_slots(db_session, schedule, date(2026, 4, 27), date(2026, 5, 3))
    starts = db_session.scalars(sa.select(Slot.starts_at).where(
        Slot.schedule_id == schedule.id)).all()
    assert sorted(s.astimezone(SHANGHAI).date() for s in starts) == [date(2026, 5, 1),
                                                                     date(2026, 5, 2)]


def test_the_workers_top_up_runs_as_many_statements_for_three_schedules_as_for_one(
        people, tree, db_session, app):
    def every_day(service_id: int) -> None:
        db_session.add(Schedule(service_id=service_id, weekdays=[1, 2, 3, 4, 5, 6, 7],
                                start_time=time(9), end_time=time(10), slot_minutes=60,
                                capacity=4, working_days_only=False))
        db_session.flush()

    def top_up() -> tuple[dict, int]:
        clear_cache()  # the calendars are read again, as by a fresh worker
        with counting(app) as seen:
            result = schedules.generate_ahead(db_session)
        return result, len(seen)

    days = app.config["SERVICE_SLOT_DAYS_AHEAD"] + 1
    every_day(make_service(people.staff, tree, db_session)["id"])
    one, n_one = top_up()
    assert one == {"slots_created": days}
    every_day(make_service(people.staff, tree, db_session)["id"])
    every_day(make_service(people.staff21, tree, db_session, code=C21)["id"])
    three, n_three = top_up()
    assert three == {"slots_created": 2 * days}  # the first schedule's slots exist already
    assert n_three == n_one
    assert schedules.generate_ahead(db_session) == {}


def test_staff_define_a_schedule_through_the_api(people, tree, db_session):
    svc = make_service(people.staff, tree, db_session)
    body = {"weekdays": [1, 2, 3, 4, 5, 6, 7], "start_time": "09:00", "end_time": "11:00",
            "slot_minutes": 60, "capacity": 10, "working_days_only": False}
    made = people.staff.ok(people.staff.post(f"/services/{svc['id']}/schedules", body), 201)
    assert made["slots_created"] == 2 * 15  # today and the 14 days ahead
    slots = people.resident.ok(people.resident.get(f"/services/{svc['id']}/slots"))
    assert len(slots) == 2 * 7 and all(s["available"] == 10 for s in slots)
    # other staff, residents, and a service without slots
    assert_error_shape(people.staff21.post(f"/services/{svc['id']}/schedules", body), 404)
    assert_error_shape(people.resident.post(f"/services/{svc['id']}/schedules", body), 403)
    guide = make_service(people.staff, tree, db_session, booking_mode="none")
    assert_error_shape(people.staff.post(f"/services/{guide['id']}/schedules", body), 409)
    bad = {**body, "end_time": "08:00"}
    assert_error_shape(people.staff.post(f"/services/{svc['id']}/schedules", bad), 422)
    # ending it removes the future slots nobody booked; today's slots that already began
    # (between 09:00 and 11:00 Beijing time) stay as history
    book(people.resident, slots[-1]["id"])
    begun = set(db_session.scalars(sa.select(Slot.id).where(
        Slot.service_id == svc["id"], Slot.starts_at <= clock.now())))
    assert people.staff.client.delete(f"/services/{svc['id']}/schedules/{made['id']}",
                                      headers=people.staff.headers).status_code == 204
    left = db_session.scalars(sa.select(Slot.id).where(Slot.service_id == svc["id"])).all()
    assert set(left) == begun | {slots[-1]["id"]}


def test_closing_a_slot_cancels_its_bookings_and_tells_the_residents(people, tree,
                                                                     db_session):
    svc = make_service(people.staff, tree, db_session)
    slot = add_slot(db_session, svc["id"], timedelta(days=2))
    a, b = book(people.resident, slot), book(people.resident2, slot)
    assert_error_shape(people.staff21.post(f"/slots/{slot}/close", {"reason": "x"}), 404)
    closed = people.staff.ok(people.staff.post(f"/slots/{slot}/close",
                                               {"reason": "医生外出义诊"}))
    assert closed["state"] == "closed" and closed["available"] == 0
    assert slot_row(db_session, slot).booked == 0
    for who, booking in ((people.resident, a), (people.resident2, b)):
        shown = who.ok(who.get(f"/bookings/{booking['id']}"))
        assert shown["state"] == "cancelled" and shown["reason"] == "医生外出义诊"
        [note] = inbox(db_session, who.user, "service_slot_closed")
        assert note.data["reason"] == "医生外出义诊"
        assert len(outbox(db_session, who.user)) == 1
    assert_error_shape(people.resident.post("/bookings", {"slot_id": slot}), 409)
    assert_error_shape(people.staff.post(f"/slots/{slot}/close", {"reason": "again"}), 409)

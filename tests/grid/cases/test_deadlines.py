"""Deadlines, lights and escalation (督办) of a case, as the people on it see them.

A stage's clock runs on the district's working calendar: 1 working day started on Friday
16:00 is due on Monday 16:00, a holiday week does not count, and a district's own calendar
replaces the default. The light is green to 80 % of the limit, yellow to 100 %, red beyond.
The sweep gives a yellow card at the due time and a red card at 150 %, once each, with a
timeline entry and notices to the street's dispatchers and the department's head (and, for
red, the district's administrators). On hold the light freezes and nothing escalates;
resuming shifts the clock by the time on hold; an approved extension moves it by the
extension in working hours. The queue filters `overdue` and `light` find these cases.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from grid.areas.models import Area
from grid.calendar import service as calendar
from grid.cases import sweep
from grid.cases.models import CaseEvent, light_of
from notifications.models import OutboxMessage
from tests.conftest import inbox
from tests.fixtures.areas import D
from tests.fixtures.cases import act, set_case_times, utc
from tests.fixtures.http import total
from tests.grid.cases.conftest import in_progress, local, start_clock, stored

HOUR = 3600.0


def _shown(who, case_id: int) -> dict:
    return who.ok(who.get(f"/cases/{case_id}"))


# --- due times on the calendar -------------------------------------------------------------


def test_a_one_day_limit_started_on_friday_afternoon_is_due_on_monday(people, category,
                                                                      department, db_session):
    case = in_progress(people, category, department)
    assert case["stage"] == "handle"
    start_clock(db_session, case["id"], local("2026-03-06 16:00"))
    shown = _shown(people.handler, case["id"])
    # 7.5 working hours a day: 1.5 h on Friday, 3.5 h Monday morning, 2.5 h after 13:30
    assert utc(shown["due_at"]) == local("2026-03-09 16:00")
    # 80 % = 6 h: Monday 14:30; 150 % = 11.25 h: Tuesday 10:45
    assert utc(shown["warn_at"]) == local("2026-03-09 14:30")
    assert stored(db_session, case["id"]).red_at == local("2026-03-10 10:45")


def test_a_holiday_week_does_not_count(people, category, department, db_session):
    case = in_progress(people, category, department)
    start_clock(db_session, case["id"], local("2026-09-30 16:00"))  # 国庆节 1–7 October
    assert utc(_shown(people.handler, case["id"])["due_at"]) == local("2026-10-08 16:00")


def test_a_make_up_saturday_counts(people, category, department, db_session):
    case = in_progress(people, category, department)
    start_clock(db_session, case["id"], local("2026-02-13 16:00"))  # before the Spring Festival
    # the make-up Saturday 14 February is a working day
    assert utc(_shown(people.handler, case["id"])["due_at"]) == local("2026-02-14 16:00")


def test_the_district_calendar_replaces_the_default(api, tree, people, category, department,
                                                    db_session):
    admin = api("district_admin", D)
    admin.ok(admin.put(f"/calendars/{tree[D]}", {
        "windows": [["09:00", "12:00"], ["13:00", "18:00"]],
        "days": [{"day": "2030-03-11", "kind": "holiday", "name": "区庆"}]}))
    case = in_progress(people, category, department)
    start_clock(db_session, case["id"], local("2030-03-08 16:00"))  # a Friday
    # 8 h a day: 2 h Friday, Monday is the district's holiday, 3 h + 3 h on Tuesday
    assert utc(_shown(people.handler, case["id"])["due_at"]) == local("2030-03-12 16:00")


def test_each_stage_has_its_own_clock(people, category, department, db_session):
    """Accepting within the hour: the accept stage (default 1 working hour) is replaced by
    the dispatch stage's clock, started when the case was accepted."""
    case = in_progress(people, category, department)
    row = stored(db_session, case["id"])
    assert (row.stage, row.stage_unit) == ("handle", "working_days")
    wt = calendar.working_time(db_session, db_session.get(Area, row.area_id))
    assert wt.between(row.stage_started_at, row.due_at) == pytest.approx(wt.day_seconds)


# --- lights --------------------------------------------------------------------------------


def test_the_light_turns_at_80_and_100_percent(people, category, department, db_session):
    case = in_progress(people, category, department)
    row = start_clock(db_session, case["id"], local("2026-03-06 16:00"))
    tick = timedelta(microseconds=1)
    assert light_of(row, local("2026-03-06 16:00")) == "green"
    assert light_of(row, row.warn_at) == "green"  # exactly 80 %
    assert light_of(row, row.warn_at + tick) == "yellow"
    assert light_of(row, row.due_at) == "yellow"  # exactly 100 %
    assert light_of(row, row.due_at + tick) == "red"


@pytest.mark.parametrize("warn, due, light", [
    (+2, +4, "green"), (-2, +4, "yellow"), (-4, -2, "red")])
def test_the_light_shown_and_filtered(people, category, department, db_session, warn, due,
                                      light):
    case = in_progress(people, category, department)
    other = in_progress(people, category, department)
    now = datetime.now(UTC)
    set_case_times(db_session, case["id"], warn_at=now + timedelta(hours=warn),
                   due_at=now + timedelta(hours=due), red_at=now + timedelta(hours=due + 2))
    set_case_times(db_session, other["id"], warn_at=now + timedelta(hours=1),
                   due_at=now + timedelta(hours=2), red_at=now + timedelta(hours=3))
    assert _shown(people.dispatcher, case["id"])["light"] == light
    listed = people.dispatcher.get(f"/cases?light={light}")
    ids = [c["id"] for c in people.dispatcher.ok(listed)]
    assert case["id"] in ids and (other["id"] in ids) == (light == "green")
    overdue = people.dispatcher.ok(people.dispatcher.get("/cases?overdue=true"))
    assert [c["id"] for c in overdue] == ([case["id"]] if light == "red" else [])
    on_time = people.dispatcher.ok(people.dispatcher.get("/cases?overdue=false&open=true"))
    assert (case["id"] in [c["id"] for c in on_time]) == (light != "red")


# --- the sweep (督办) ------------------------------------------------------------------------


def _sweep(db_session, at: datetime) -> dict:
    """Run the sweep as the worker does (its own unit of work) and forget what this test's
    session had loaded, as the next request would."""
    done = sweep.sweep(db_session, at)
    db_session.commit()
    db_session.expire_all()
    return done


def _escalations(db_session, case_id: int) -> list[tuple[str, dict]]:
    return [(e.note, e.data) for e in db_session.scalars(
        sa.select(CaseEvent).where(CaseEvent.case_id == case_id,
                                   CaseEvent.action == "escalate").order_by(CaseEvent.id))]


def _cards(db_session, user) -> list[str]:
    return [n.data["card"] for n in inbox(db_session, user) if n.kind == "case_escalated"]


def test_the_sweep_gives_a_yellow_then_a_red_card_once_each(api, people, category,
                                                            department, db_session):
    leader = api("district_admin", D)
    case = in_progress(people, category, department)
    row = start_clock(db_session, case["id"], local("2026-03-06 16:00"))
    due, red = row.due_at, row.red_at

    # before the due time: nothing
    assert _sweep(db_session, due) == {}
    db_session.commit()
    before = _shown(people.dispatcher, case["id"])
    assert (before["escalation"], before["overdue"]) == (0, False)

    # past due: a yellow card, told to the street's dispatchers and the department's head
    assert _sweep(db_session, due + timedelta(seconds=1)) == {"yellow card": 1,
                                                                      "red card": 0}
    db_session.commit()
    shown = _shown(people.dispatcher, case["id"])
    assert (shown["escalation"], shown["overdue"], shown["light"]) == (1, True, "red")
    assert shown["version"] == before["version"] + 1  # a phone's stale copy gets a 412
    assert _escalations(db_session, case["id"]) == [("黄牌", {"level": 1})]
    assert _cards(db_session, people.dispatcher.user) == ["黄牌"]
    assert _cards(db_session, people.head.user) == ["黄牌"]
    assert _cards(db_session, people.handler.user) == []  # not the head
    assert _cards(db_session, people.dispatcher2.user) == []  # another street
    assert _cards(db_session, leader.user) == []  # not yet the district
    notice = [n for n in inbox(db_session, people.head.user) if n.kind == "case_escalated"][0]
    assert notice.urgent and notice.data["code"] == case["code"]
    assert db_session.scalar(sa.select(sa.func.count()).select_from(OutboxMessage).where(
        OutboxMessage.notification_id == notice.id)) == 1

    # the same sweep again, or a later one before 150 %: no second yellow card
    assert _sweep(db_session, due + timedelta(seconds=1)) == {}
    assert _sweep(db_session, red) == {}
    db_session.commit()
    assert len(_escalations(db_session, case["id"])) == 1
    assert _cards(db_session, people.dispatcher.user) == ["黄牌"]

    # past 150 %: a red card, told to the district's administrators as well
    assert _sweep(db_session, red + timedelta(seconds=1)) == {"yellow card": 0,
                                                                      "red card": 1}
    db_session.commit()
    assert _shown(people.dispatcher, case["id"])["escalation"] == 2
    assert _escalations(db_session, case["id"]) == [("黄牌", {"level": 1}),
                                                    ("红牌", {"level": 2})]
    assert _cards(db_session, leader.user) == ["红牌"]
    assert _cards(db_session, people.dispatcher.user) == ["黄牌", "红牌"]
    assert _cards(db_session, people.head.user) == ["黄牌", "红牌"]

    assert _sweep(db_session, red + timedelta(days=30)) == {}
    db_session.commit()
    assert len(_escalations(db_session, case["id"])) == 2

    timeline = people.dispatcher.ok(people.dispatcher.get(f"/cases/{case['id']}/timeline"))
    assert [e["action"] for e in timeline][-2:] == ["escalate", "escalate"]
    assert timeline[-1]["actor_id"] is None  # the system


def test_the_sweep_leaves_cases_without_a_running_clock(people, category, department,
                                                        db_session):
    closed = in_progress(people, category, department)
    set_case_times(db_session, closed["id"], state="closed", due_at=None, warn_at=None,
                   red_at=None)
    late = in_progress(people, category, department)
    start_clock(db_session, late["id"], local("2026-03-06 16:00"))
    assert _sweep(db_session, local("2026-06-01 09:00")) == {"yellow card": 1,
                                                                    "red card": 1}
    db_session.commit()
    assert stored(db_session, closed["id"]).escalation == 0
    assert stored(db_session, late["id"]).escalation == 2


# --- on hold, resume, extension ------------------------------------------------------------


def _put_on_hold(people, case: dict, kind: str = "defer") -> dict:
    case = act(people.handler, case, f"request_{kind}", reason="等待施工队")
    case = act(people.dispatcher, _shown(people.dispatcher, case["id"]), "approve")
    assert (case["state"], case["hold_kind"]) == ("on_hold", kind)
    return case


def test_on_hold_the_light_freezes_and_nothing_escalates(people, category, department,
                                                         db_session):
    case = in_progress(people, category, department)
    start_clock(db_session, case["id"], local("2026-03-06 16:00"))
    case = _put_on_hold(people, _shown(people.handler, case["id"]))
    # held before 80 % of the limit: green for as long as it is on hold
    set_case_times(db_session, case["id"], held_at=local("2026-03-09 09:00"))
    assert _sweep(db_session, local("2026-06-01 09:00")) == {}
    db_session.commit()
    shown = _shown(people.dispatcher, case["id"])
    assert (shown["light"], shown["escalation"], shown["overdue"]) == ("green", 0, False)
    green = people.dispatcher.ok(people.dispatcher.get("/cases?light=green"))
    assert [c["id"] for c in green] == [case["id"]]
    assert people.dispatcher.ok(people.dispatcher.get("/cases?overdue=true")) == []


def test_resuming_shifts_the_clock_by_the_time_on_hold(people, category, department,
                                                       db_session):
    case = in_progress(people, category, department)
    start_clock(db_session, case["id"], local("2026-11-02 08:30"))  # a Monday
    case = _shown(people.handler, case["id"])
    old_due = utc(case["due_at"])
    assert old_due == local("2026-11-02 17:30")  # one working day
    case = _put_on_hold(people, case)
    held_at = local("2026-11-02 10:30")  # put on hold 2 h into the day: 5.5 h were left
    set_case_times(db_session, case["id"], held_at=held_at)
    case = _shown(people.dispatcher, case["id"])
    assert case["light"] == "green"  # frozen where it was

    wt = calendar.working_time(db_session, db_session.get(Area, case["area_id"]))
    t0 = datetime.now(UTC)
    case = act(people.dispatcher, case, "resume")
    t1 = datetime.now(UTC)
    assert (case["state"], case["hold_kind"]) == ("in_progress", None)
    new_due = utc(case["due_at"])
    # 5.5 working hours are left from the moment it resumed
    assert wt.between(t1, new_due) <= 5.5 * HOUR + 1e-3 <= wt.between(t0, new_due) + 2e-3
    # i.e. the due time moved by the working time spent on hold
    on_hold = (wt.between(held_at, t0), wt.between(held_at, t1))
    assert on_hold[0] > 100 * HOUR  # a month of working days, at least
    assert on_hold[0] - 1e-3 <= wt.between(old_due, new_due) <= on_hold[1] + 1e-3
    row = stored(db_session, case["id"])
    assert row.held_at is None
    assert on_hold[0] - 1e-3 <= row.held_working_s <= on_hold[1] + 1e-3
    assert case["light"] in ("green", "yellow") and not case["overdue"]


def test_a_limit_of_years_still_gets_a_due_time(people, category, department, db_session):
    """A category may set up to 10,000 working days; 800 (over three years) must not break
    reporting or dispatching with a 500."""
    category.time_limits = {"handle": {"amount": 800, "unit": "working_days"}}
    db_session.commit()
    case = in_progress(people, category, department)
    row = stored(db_session, case["id"])
    wt = calendar.working_time(db_session, db_session.get(Area, row.area_id))
    assert wt.between(row.stage_started_at, row.due_at) == pytest.approx(800 * wt.day_seconds)


def test_an_approved_extension_moves_the_due_time(people, category, department, db_session):
    case = in_progress(people, category, department)
    start_clock(db_session, case["id"], local("2030-03-08 16:00"))  # due Monday 16:00
    case = _shown(people.handler, case["id"])
    assert utc(case["due_at"]) == local("2030-03-11 16:00")
    case = act(people.handler, case, "request_extension", reason="需协调供电部门",
               extension_hours=4)
    assert utc(case["due_at"]) == local("2030-03-11 16:00")  # not before approval
    case = act(people.dispatcher, _shown(people.dispatcher, case["id"]), "approve")
    # + 4 working hours: 1.5 h on Monday, 2.5 h on Tuesday morning
    assert utc(case["due_at"]) == local("2030-03-12 11:00")
    # the light's 80 % moves by 80 % of it, the red card's 150 % by 150 %
    assert utc(case["warn_at"]) == local("2030-03-12 08:42")
    assert stored(db_session, case["id"]).red_at == local("2030-03-13 09:15")
    requests = people.handler.ok(people.handler.get(f"/cases/{case['id']}/requests"))
    assert [(r["kind"], r["state"], r["extension_hours"]) for r in requests] == [
        ("extension", "approved", 4.0)]


def test_a_refused_extension_changes_nothing(people, category, department, db_session):
    case = in_progress(people, category, department)
    start_clock(db_session, case["id"], local("2030-03-08 16:00"))
    case = act(people.handler, _shown(people.handler, case["id"]), "request_extension",
               reason="需协调", extension_hours=8)
    case = act(people.dispatcher, _shown(people.dispatcher, case["id"]), "refuse",
               reason="不符合延期条件")
    assert utc(case["due_at"]) == local("2030-03-11 16:00")


def test_overdue_cases_are_listed_in_the_street_queue(people, category, department,
                                                      db_session):
    late = in_progress(people, category, department)
    start_clock(db_session, late["id"], local("2026-03-06 16:00"))  # long past
    fresh = in_progress(people, category, department)
    start_clock(db_session, fresh["id"], local("2030-03-08 16:00"))
    response = people.dispatcher.get("/cases?overdue=true")
    assert [c["id"] for c in people.dispatcher.ok(response)] == [late["id"]]
    assert total(response) == 1
    red = people.dispatcher.ok(people.dispatcher.get("/cases?light=red"))
    assert [c["id"] for c in red] == [late["id"]]
    # the grid's worker sees it too; the other street's dispatcher does not
    assert [c["id"] for c in people.worker.ok(people.worker.get("/cases?overdue=true"))] \
        == [late["id"]]
    assert people.dispatcher2.ok(people.dispatcher2.get("/cases?overdue=true")) == []
    # sorted by due time, the late one comes first
    by_due = people.dispatcher.ok(people.dispatcher.get("/cases?sort=due_at"))
    assert [c["id"] for c in by_due] == [late["id"], fresh["id"]]

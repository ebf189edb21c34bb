"""Working calendars (工作日历): what "N working hours/days" means.

`WorkingTime` is tested directly on hand-computed instants — across lunch, a weekend, the
2026 Spring Festival and National Day, landing on a make-up Saturday (调休) — plus a
hypothesis property (`between` undoes `add`). Calendar units ignore the calendar. Then the
API: the seeded default calendar, a district administrator setting their district's own
calendar (which the district's grids then use), its validation, and its scope.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
import sqlalchemy as sa
from hypothesis import given, settings
from hypothesis import strategies as st

from grid.areas.models import Area
from grid.calendar.models import DEFAULT_WINDOWS
from grid.calendar.service import WorkingTime, elapsed, limit_end
from tests.conftest import assert_error_shape
from tests.fixtures.areas import C11, G111, S1, S2, D
from tests.grid.cases.conftest import local

HOUR = 3600.0
DAY = 7.5 * HOUR  # the default windows 08:30–12:00 and 13:30–17:30


def _days(first: str, last: str) -> list[date]:
    a, b = date.fromisoformat(first), date.fromisoformat(last)
    return [a + timedelta(days=i) for i in range((b - a).days + 1)]


# The 2026 calendar as seeded by migration 0007 (the parts these tests walk through).
HOLIDAYS = _days("2026-02-15", "2026-02-23") + _days("2026-10-01", "2026-10-07") \
    + _days("2026-01-01", "2026-01-03")
MAKEUP = [date(2026, 1, 4), date(2026, 2, 14), date(2026, 2, 28), date(2026, 9, 20),
          date(2026, 10, 10)]
WT = WorkingTime.of("Asia/Shanghai", DEFAULT_WINDOWS,
                    [(d, "holiday") for d in HOLIDAYS] + [(d, "workday") for d in MAKEUP])
PLAIN = WorkingTime.of("Asia/Shanghai", DEFAULT_WINDOWS, [])


# --- WorkingTime, by hand ------------------------------------------------------------------


def test_a_day_is_the_sum_of_its_windows():
    assert WT.day_seconds == DAY
    assert WorkingTime.of("Asia/Shanghai", [["09:00", "12:00"], ["13:00", "18:00"]],
                          []).day_seconds == 8 * HOUR


@pytest.mark.parametrize("start, hours, expected", [
    # inside the morning window
    ("2026-03-04 09:00", 2, "2026-03-04 11:00"),
    # across lunch: 11:00 + 2 h = 12:00 (1 h) … 13:30 + 1 h
    ("2026-03-04 11:00", 2, "2026-03-04 14:30"),
    # started during lunch: the clock waits for 13:30
    ("2026-03-04 12:30", 1, "2026-03-04 14:30"),
    # ends exactly at the end of a window: not pushed to the next one
    ("2026-03-04 09:00", 3, "2026-03-04 12:00"),
    # started at night: the clock waits for the next morning
    ("2026-03-04 20:00", 1, "2026-03-05 09:30"),
    # across a weekend: Friday 16:00 + 3 h = 1.5 h on Friday, 1.5 h on Monday
    ("2026-03-06 16:00", 3, "2026-03-09 10:00"),
    # started on a Saturday: nothing counts before Monday 08:30
    ("2026-03-07 10:00", 1, "2026-03-09 09:30"),
])
def test_adding_working_hours(start, hours, expected):
    assert WT.add(local(start), hours * HOUR) == local(expected)


def test_one_working_day_from_friday_afternoon_is_monday_afternoon():
    # 1.5 h on Friday (16:00–17:30), 3.5 h Monday morning, 2.5 h after 13:30
    assert limit_end(WT, local("2026-03-06 16:00"), 1, "working_days") == \
        local("2026-03-09 16:00")


def test_a_public_holiday_week_does_not_count():
    # 国庆节 2026-10-01…07: a day started on Wednesday 30 September ends on Thursday 8 October
    assert limit_end(WT, local("2026-09-30 16:00"), 1, "working_days") == \
        local("2026-10-08 16:00")
    # the same on a calendar without holidays: the next day, Thursday 1 October
    assert limit_end(PLAIN, local("2026-09-30 16:00"), 1, "working_days") == \
        local("2026-10-01 16:00")


def test_landing_on_a_make_up_saturday():
    # 2026-02-28 is a Saturday worked for the Spring Festival (春节调休)
    assert limit_end(WT, local("2026-02-27 16:00"), 1, "working_days") == \
        local("2026-02-28 16:00")
    # without the calendar the same limit ends on Monday 2 March
    assert limit_end(PLAIN, local("2026-02-27 16:00"), 1, "working_days") == \
        local("2026-03-02 16:00")


def test_through_the_spring_festival():
    # Friday 13 Feb 16:00 + 2 working days: 1.5 h Fri, 7.5 h on the make-up Saturday 14 Feb,
    # nine days of holiday (15–23 Feb), then 6 h from Tuesday 24 Feb 08:30
    assert limit_end(WT, local("2026-02-13 16:00"), 2, "working_days") == \
        local("2026-02-24 16:00")
    assert WT.between(local("2026-02-13 16:00"), local("2026-02-24 16:00")) == 2 * DAY


def test_working_days_are_n_times_the_day_length():
    start = local("2026-03-02 10:00")  # a Monday
    for n in (1, 2, 5, 10):
        end = limit_end(WT, start, n, "working_days")
        assert end == WT.add(start, n * DAY)
        assert WT.between(start, end) == n * DAY
    # 5 working days from Monday 10:00 is the next Monday 10:00
    assert limit_end(WT, start, 5, "working_days") == local("2026-03-09 10:00")


def test_between_counts_only_working_windows():
    assert WT.between(local("2026-03-06 08:00"), local("2026-03-06 20:00")) == DAY
    assert WT.between(local("2026-03-07 00:00"), local("2026-03-09 00:00")) == 0  # weekend
    assert WT.between(local("2026-10-01 00:00"), local("2026-10-08 00:00")) == 0  # 国庆节
    assert WT.between(local("2026-02-14 00:00"), local("2026-02-15 00:00")) == DAY  # 调休
    assert WT.between(local("2026-03-06 12:00"), local("2026-03-06 11:00")) == 0  # backwards


def test_calendar_units_ignore_the_calendar():
    start = local("2026-09-30 16:00")  # the eve of National Day
    assert limit_end(WT, start, 2, "urgent_hours") == local("2026-09-30 18:00")
    assert limit_end(WT, start, 3, "calendar_days") == local("2026-10-03 16:00")
    assert elapsed(WT, start, local("2026-10-01 16:00"), "calendar_days") == 24 * HOUR
    assert elapsed(WT, start, local("2026-10-01 16:00"), "working_days") == 1.5 * HOUR
    with pytest.raises(ValueError):
        limit_end(WT, start, 1, "fortnights")


def test_a_calendar_in_another_zone_counts_its_own_windows():
    london = WorkingTime.of("Europe/London", [["09:00", "17:00"]], [])
    # 09:00 in London in March (GMT) is 17:00 in Shanghai
    start = datetime(2026, 3, 4, 9, 0, tzinfo=UTC)
    assert london.add(start, 8 * HOUR) == datetime(2026, 3, 4, 17, 0, tzinfo=UTC)


def test_limits_of_years_have_an_end():
    # categories may set up to 10,000 working days; 800 working days is over three years
    start = local("2026-03-02 08:30")
    end = limit_end(WT, start, 800, "working_days")
    assert end > local("2029-03-01 00:00")
    assert WT.between(start, end) == pytest.approx(800 * DAY)
    assert limit_end(PLAIN, start, 10_000, "working_days") > local("2064-01-01 00:00")


def test_a_calendar_without_working_days_is_refused_not_looped():
    every_day = [(date(2026, 1, 1) + timedelta(days=i), "holiday") for i in range(800)]
    broken = WorkingTime.of("Asia/Shanghai", DEFAULT_WINDOWS, every_day)
    with pytest.raises(ValueError):
        broken.add(local("2026-01-01 09:00"), HOUR)


# --- WorkingTime, by property --------------------------------------------------------------

_starts = st.datetimes(min_value=datetime(2025, 12, 1), max_value=datetime(2027, 1, 31),
                       timezones=st.just(UTC))
_amounts = st.floats(min_value=0, max_value=400 * HOUR, allow_nan=False)


@settings(max_examples=300, deadline=None)
@given(start=_starts, seconds=_amounts)
def test_between_undoes_add(start, seconds):
    end = WT.add(start, seconds)
    assert end >= start
    assert abs(WT.between(start, end) - seconds) < 1e-3
    # and the end is inside working time (or at the end of a window) unless nothing was added
    if seconds >= 1:
        assert WT.between(end - timedelta(seconds=1), end) > 0


@settings(max_examples=200, deadline=None)
@given(start=_starts, a=_amounts, b=_amounts)
def test_adding_in_two_steps_is_adding_once(start, a, b):
    once, twice = WT.add(start, a + b), WT.add(WT.add(start, a), b)
    assert abs((once - twice).total_seconds()) < 1e-3 or WT.between(
        min(once, twice), max(once, twice)) < 1e-3


# --- the API -------------------------------------------------------------------------------

WINDOWS = [["09:00", "12:00"], ["13:00", "18:00"]]


def test_the_default_calendar_has_the_2026_holidays(api, tree):
    worker = api("grid_worker", G111)
    body = worker.ok(worker.get(f"/calendars/{tree[G111]}"))
    assert body["area_id"] is None and body["timezone"] == "Asia/Shanghai"
    assert body["windows"] == [["08:30", "12:00"], ["13:30", "17:30"]]
    days = {d["day"]: d["kind"] for d in body["days"]}
    assert days["2026-10-01"] == days["2026-02-17"] == days["2026-05-05"] == "holiday"
    assert days["2026-02-28"] == days["2026-10-10"] == "workday"
    assert "2026-03-06" not in days
    assert sum(k == "holiday" for k in days.values()) == 33
    assert sum(k == "workday" for k in days.values()) == 6


def test_a_district_admin_sets_the_district_calendar_and_its_grids_use_it(api, tree,
                                                                         db_session):
    from grid.calendar import service as calendar

    admin = api("district_admin", D)
    body = admin.ok(admin.put(f"/calendars/{tree[D]}", {
        "name": "测试区工作日历", "windows": WINDOWS,
        "days": [{"day": "2030-03-11", "kind": "holiday", "name": "区庆"},
                 {"day": "2030-03-16", "kind": "workday", "name": "调休"}]}))
    assert body["area_id"] == tree[D] and body["windows"] == WINDOWS
    assert [d["day"] for d in body["days"]] == ["2030-03-11", "2030-03-16"]

    worker = api("grid_worker", G111)
    seen = worker.ok(worker.get(f"/calendars/{tree[G111]}"))
    assert seen["area_id"] == tree[D] and seen["name"] == "测试区工作日历"

    wt = calendar.working_time(db_session, db_session.get(Area, tree[G111]))
    assert wt.day_seconds == 8 * HOUR
    # Friday 16:00 + 1 day of 8 h: 2 h Friday, Monday is the district's holiday,
    # 3 h Tuesday morning, 3 h from 13:00
    assert limit_end(wt, local("2030-03-08 16:00"), 1, "working_days") == \
        local("2030-03-12 16:00")
    assert wt.is_working_day(date(2030, 3, 16))  # the make-up Saturday

    # a second PUT replaces the listed days
    assert_error_shape(admin.put(f"/calendars/{tree[D]}", {"windows": WINDOWS}), 428)
    stale = {"windows": WINDOWS, "days": [], "version": body["version"] + 5}
    assert assert_error_shape(admin.put(f"/calendars/{tree[D]}", stale), 412)[
        "current"]["version"] == body["version"]
    again = admin.ok(admin.put(f"/calendars/{tree[D]}", {"windows": WINDOWS, "days": [],
                                                        "version": body["version"]}))
    assert again["days"] == [] and again["name"] == "测试区工作日历"
    assert again["id"] == body["id"]


@pytest.mark.parametrize("body, field", [
    ({"windows": [["08:30", "12:00"], ["11:00", "17:00"]]}, "windows"),  # overlapping
    ({"windows": [["13:30", "17:30"], ["08:30", "12:00"]]}, "windows"),  # out of order
    ({"windows": [["12:00", "08:30"]]}, "windows"),  # ends before it starts
    ({"windows": [["08:30", "25:00"]]}, "windows"),  # no such hour
    ({"windows": []}, "windows"),
    ({"windows": WINDOWS, "timezone": "Mars/Olympus_Mons"}, "timezone"),
    ({"windows": WINDOWS, "days": [{"day": "2030-03-11", "kind": "holiday"},
                                   {"day": "2030-03-11", "kind": "workday"}]}, "days"),
    ({"windows": WINDOWS, "days": [{"day": "2030-03-11", "kind": "weekend"}]}, "days"),
])
def test_a_bad_calendar_is_refused(api, tree, body, field):
    admin = api("district_admin", D)
    answer = assert_error_shape(admin.put(f"/calendars/{tree[D]}", body), 422)
    assert field in str(answer["errors"])
    # nothing was stored: the district still uses the default calendar
    assert admin.ok(admin.get(f"/calendars/{tree[D]}"))["area_id"] is None


@pytest.fixture
def neighbour(db_session, tree) -> int:
    """A second district next to the test district; returns its id."""
    from grid.areas import boundaries
    from grid.demo import SYSTEM
    from tests.fixtures.areas import collection, feature, rect

    boundaries.import_areas(db_session, SYSTEM, collection(feature(
        "330184", "邻区", "district", None, rect(119.94, 30.00, 119.96, 30.02))),
        dry_run=False, opts=boundaries.Options())
    db_session.commit()
    tree["330184"] = db_session.scalar(sa.select(Area.id).where(Area.code == "330184"))
    return tree["330184"]


def test_who_may_change_a_calendar(api, tree, neighbour, make_user, login, client,
                                   db_session):
    from grid.areas import memberships as area_memberships
    from grid.demo import SYSTEM
    from tests.fixtures.http import Api

    other = api("district_admin", "330184")
    worker = api("grid_worker", G111)
    # a worker may read their grid's calendar but not change it
    assert worker.ok(worker.get(f"/calendars/{tree[G111]}"))["area_id"] is None
    assert_error_shape(worker.put(f"/calendars/{tree[G111]}", {"windows": WINDOWS}), 403)
    # another district's administrator: our district does not exist for them
    assert_error_shape(other.get(f"/calendars/{tree[D]}"), 404)
    assert_error_shape(other.put(f"/calendars/{tree[D]}", {"windows": WINDOWS}), 404)
    assert_error_shape(other.put(f"/calendars/{tree[G111]}", {"windows": WINDOWS}), 404)
    assert other.ok(other.put(f"/calendars/{neighbour}", {"windows": WINDOWS}))["area_id"] \
        == neighbour
    # someone who may manage areas but whose scope is one community sees its street
    # (an ancestor) and may not change it; inside the community they may
    user = make_user("district_admin", "grid_chief")
    area_memberships.add_membership(db_session, SYSTEM, {"user_id": user.id,
                                                     "area_id": tree[C11],
                                                     "role": "grid_chief"})
    db_session.commit()
    chief = Api(client, {"Authorization": "Bearer " + login(user.username)["access_token"]},
                user)
    assert chief.ok(chief.get(f"/calendars/{tree[S1]}"))["area_id"] is None
    assert_error_shape(chief.put(f"/calendars/{tree[S1]}", {"windows": WINDOWS}), 404)
    assert_error_shape(chief.get(f"/calendars/{tree[S2]}"), 404)
    mine = chief.ok(chief.put(f"/calendars/{tree[C11]}", {"windows": WINDOWS}))
    assert mine["area_id"] == tree[C11]
    assert worker.ok(worker.get(f"/calendars/{tree[G111]}"))["area_id"] == tree[C11]
    # the district's own calendar is untouched
    assert worker.ok(worker.get(f"/calendars/{tree[D]}"))["area_id"] is None

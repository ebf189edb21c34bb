"""Working time: what "5 working hours" or "1 working day" means on a district's calendar.

`WorkingTime` is pure (tested directly): working windows on working days, where a working
day is Monday–Friday unless the calendar says holiday, plus make-up Saturdays/Sundays.
A working day's length is the sum of its windows (7.5 h with the default windows), so
N working days = N × that many working seconds.
"""

from __future__ import annotations

import time as time_module
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlalchemy.orm import Session

from grid.areas import service as areas
from grid.areas.models import Area
from grid.calendar.models import DEFAULT_WINDOWS, CalendarDay, WorkCalendar
from server import audit
from server.auth.actor import Actor
from server.errors import (
    Invalid,
    NotFound,
    check_version,
    field_errors,
)

# Limits may span years (up to 10,000 working days), so `add` is not bounded by a span but
# by idleness: a calendar with no working day in a whole year is broken, not busy.
MAX_IDLE_DAYS = 366


def _clock(text: str) -> time:
    hour, minute = text.split(":")
    return time(int(hour), int(minute))


@dataclass(frozen=True)
class WorkingTime:
    zone: ZoneInfo
    windows: tuple[tuple[time, time], ...]
    holidays: frozenset[date] = frozenset()
    workdays: frozenset[date] = frozenset()

    @classmethod
    def of(cls, timezone: str, windows: list, days: list[tuple[date, str]]) -> WorkingTime:
        return cls(ZoneInfo(timezone), tuple((_clock(a), _clock(b)) for a, b in windows),
                   frozenset(d for d, k in days if k == "holiday"),
                   frozenset(d for d, k in days if k == "workday"))

    @property
    def day_seconds(self) -> float:
        return sum((datetime.combine(date.min, b) - datetime.combine(date.min, a))
                   .total_seconds() for a, b in self.windows)

    def is_working_day(self, day: date) -> bool:
        if day in self.workdays:
            return True
        return day.weekday() < 5 and day not in self.holidays

    def _intervals(self, day: date) -> list[tuple[datetime, datetime]]:
        if not self.is_working_day(day):
            return []
        return [(datetime.combine(day, a, self.zone), datetime.combine(day, b, self.zone))
                for a, b in self.windows]

    def add(self, start: datetime, seconds: float) -> datetime:
        """The instant `seconds` of working time after `start` (UTC in, UTC out)."""
        remaining = max(0.0, seconds)
        local = start.astimezone(self.zone)
        day = local.date()
        idle = 0
        while idle <= MAX_IDLE_DAYS:
            intervals = self._intervals(day)
            for a, b in intervals:
                begin = max(a, local)
                if begin >= b:
                    continue
                available = (b - begin).total_seconds()
                if remaining <= available:
                    return (begin + timedelta(seconds=remaining)).astimezone(UTC)
                remaining -= available
            idle = 0 if intervals else idle + 1
            day += timedelta(days=1)
        raise ValueError("the calendar has no working day within a year")

    def between(self, start: datetime, end: datetime) -> float:
        """Working seconds from `start` to `end` (0 when end ≤ start)."""
        if end <= start:
            return 0.0
        total = 0.0
        a0, b0 = start.astimezone(self.zone), end.astimezone(self.zone)
        day = a0.date()
        while day <= b0.date():
            for a, b in self._intervals(day):
                lo, hi = max(a, a0), min(b, b0)
                if hi > lo:
                    total += (hi - lo).total_seconds()
            day += timedelta(days=1)
        return total


# Units of a time limit (时限单位): working time follows the calendar, the others the clock.
UNITS = {"working_hours": "工作时", "working_days": "工作日", "calendar_days": "自然日",
         "urgent_hours": "紧急小时"}


def limit_end(wt: WorkingTime, start: datetime, amount: float, unit: str) -> datetime:
    """When a limit of `amount` `unit`s that starts at `start` runs out."""
    if unit == "working_hours":
        return wt.add(start, amount * 3600)
    if unit == "working_days":
        return wt.add(start, amount * wt.day_seconds)
    if unit == "calendar_days":
        return start + timedelta(days=amount)
    if unit == "urgent_hours":
        return start + timedelta(hours=amount)
    raise ValueError(f"unknown time unit {unit!r}")


def elapsed(wt: WorkingTime, start: datetime, end: datetime, unit: str) -> float:
    """Seconds between two instants as a limit in `unit` counts them."""
    if unit in ("working_hours", "working_days"):
        return wt.between(start, end)
    return max(0.0, (end - start).total_seconds())


# --- loading and editing ------------------------------------------------------------------


def _nearest(by_area: dict[int | None, WorkCalendar], ids: list[int]) -> WorkCalendar | None:
    """The calendar of the nearest area up the path that has one, else the default."""
    for area_id in reversed(ids):
        if area_id in by_area:
            return by_area[area_id]
    return by_area.get(None)


def _calendars_on(s: Session, ids: set[int]) -> dict[int | None, WorkCalendar]:
    """The calendars of these areas and the default one, by area id (None: the default)."""
    rows = s.scalars(sa.select(WorkCalendar).where(
        sa.or_(WorkCalendar.area_id.in_(ids or [-1]), WorkCalendar.area_id.is_(None)))).all()
    return {r.area_id: r for r in rows}


def _calendar_row(s: Session, area: Area | None) -> WorkCalendar | None:
    ids = areas.ids_on_path(area.path if area is not None else "")
    return _nearest(_calendars_on(s, set(ids)), ids)


# Per process: the working time of an area's path, for CACHE_S seconds (every intake and
# transition needs it; calendars change a few times a year). `set_calendar` clears it here;
# other processes see a change within CACHE_S.
CACHE_S = 60.0
_cache: dict[str, tuple[float, WorkingTime]] = {}


def clear_cache() -> None:
    _cache.clear()


def working_time(s: Session, area: Area | None) -> WorkingTime:
    """The working time that applies in an area (its district's calendar, else the default)."""
    path = area.path if area is not None else ""
    return working_times(s, [path])[path]


def working_times(s: Session, paths: Iterable[str]) -> dict[str, WorkingTime]:
    """`working_time` of many areas by path ("" for none): those not cached in two statements."""
    now = time_module.monotonic()
    out: dict[str, WorkingTime] = {}
    for path in set(paths):
        hit = _cache.get(path)
        if hit is not None and hit[0] > now:
            out[path] = hit[1]
    missing = {path: areas.ids_on_path(path) for path in set(paths) - out.keys()}
    if not missing:
        return out
    by_area = _calendars_on(s, {i for ids in missing.values() for i in ids})
    chosen = {path: _nearest(by_area, ids) for path, ids in missing.items()}
    days: dict[int, list[tuple[date, str]]] = {}
    calendar_ids = {row.id for row in chosen.values() if row is not None}
    if calendar_ids:
        for calendar_id, day, kind in s.execute(
                sa.select(CalendarDay.calendar_id, CalendarDay.day, CalendarDay.kind)
                .where(CalendarDay.calendar_id.in_(calendar_ids))):
            days.setdefault(calendar_id, []).append((day, kind))
    for path, row in chosen.items():
        wt = WorkingTime.of("Asia/Shanghai", DEFAULT_WINDOWS, []) if row is None else \
            WorkingTime.of(row.timezone, row.windows, days.get(row.id, []))
        _cache[path] = (now + CACHE_S, wt)
        out[path] = wt
    return out


def get_calendar(s: Session, area: Area | None) -> tuple[WorkCalendar, list[CalendarDay]]:
    row = _calendar_row(s, area)
    if row is None:
        raise NotFound("No working calendar is configured")
    return row, days_of(s, row)


def days_of(s: Session, row: WorkCalendar) -> list[CalendarDay]:
    """A calendar's listed days (holidays, make-up days), in order."""
    return list(s.scalars(sa.select(CalendarDay).where(CalendarDay.calendar_id == row.id)
                          .order_by(CalendarDay.day)))


def _check_windows(windows: list) -> None:
    try:
        times = [(_clock(a), _clock(b)) for a, b in windows]
    except (ValueError, TypeError) as exc:
        raise Invalid(field_errors("windows", "Each window is [\"HH:MM\", \"HH:MM\"].")) from exc
    previous = time.min
    for a, b in times:
        if not (previous <= a < b):
            raise Invalid(field_errors("windows", "Windows must be in order and not overlap."))
        previous = b
    if not times:
        raise Invalid(field_errors("windows", "At least one working window is needed."))


def set_calendar(s: Session, actor: Actor, area: Area, data: dict,
                 expected: int | None = None) -> WorkCalendar:
    """Create or replace an area's calendar: windows, zone and the listed days. Replacing
    one needs the version it was based on (428 without, 412 when stale)."""
    actor.require("area:manage")
    if not areas.area_in_scope(s, actor, area.id):
        raise NotFound("No such area")  # an ancestor one can see but not change
    _check_windows(data["windows"])
    try:
        ZoneInfo(data.get("timezone") or "Asia/Shanghai")
    except Exception as exc:  # noqa: BLE001 - zoneinfo raises several kinds
        raise Invalid(field_errors("timezone", "Unknown time zone.")) from exc
    row = s.scalars(sa.select(WorkCalendar).where(WorkCalendar.area_id == area.id)
                    .with_for_update()).first()
    if row is not None:
        check_version(row, expected)
    if row is None:
        row = WorkCalendar(area_id=area.id, name=data.get("name") or f"{area.name}工作日历",
                           windows=data["windows"])
        s.add(row)
    row.windows = data["windows"]
    row.timezone = data.get("timezone") or "Asia/Shanghai"
    if data.get("name"):
        row.name = data["name"]
    s.flush()
    if "days" in data:
        s.execute(sa.delete(CalendarDay).where(CalendarDay.calendar_id == row.id))
        seen: set[date] = set()
        for d in data["days"]:
            if d["day"] in seen:
                raise Invalid(field_errors("days", f"{d['day']} is listed twice."))
            seen.add(d["day"])
            s.add(CalendarDay(calendar_id=row.id, day=d["day"], kind=d["kind"],
                              name=d.get("name")))
    s.flush()
    clear_cache()
    audit.record(s, actor, "calendar_set", "area", area.id,
                 changes={"windows": data["windows"], "days": len(data.get("days", []))})
    return row

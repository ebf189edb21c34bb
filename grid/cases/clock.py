"""The clock of a case (时限): the stage a state belongs to, its working-time thresholds
(green → yellow at 80 %, due at 100 %, red card at 150 %) on the district's calendar, time
on hold, and which cases are overdue. The light itself (绿灯/黄灯/红灯) lives beside the model
(grid/cases/models.py `light_of`, `light_sql`).
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Session

from grid.areas.models import Area
from grid.calendar import service as calendar
from grid.cases.categories import DEFAULT_LIMITS
from grid.cases.models import STAGE_OF_STATE, Case, CaseCategory, light_sql

WARN_AT, RED_AT = 0.8, 1.5  # green ≤ 80 % of the limit; red card at 150 %
CLOCKED_STATES = tuple(STAGE_OF_STATE)


def overdue_sql() -> sa.ColumnElement[bool]:
    """Overdue: marked by the sweep, or past its due time since the last sweep."""
    return sa.or_(Case.overdue, light_sql() == "red")


def _working_time(s: Session, case: Case) -> calendar.WorkingTime:
    return calendar.working_time(s, s.get(Area, case.area_id))


def _start_stage(s: Session, case: Case, at: datetime) -> None:
    """Start the clock of the stage the case's state belongs to (or stop it)."""
    stage = STAGE_OF_STATE.get(case.state)
    case.stage = stage
    case.escalation, case.overdue = 0, False  # 督办 is per stage: a new stage starts clean
    if stage is None:
        case.stage_unit = case.stage_started_at = case.warn_at = case.due_at = None
        case.red_at = None
        return
    category = s.get(CaseCategory, case.category_id)
    limit = category.time_limits.get(stage) or DEFAULT_LIMITS[stage]
    wt = _working_time(s, case)
    amount, unit = float(limit["amount"]), limit["unit"]
    case.stage_unit, case.stage_started_at = unit, at
    case.warn_at = calendar.limit_end(wt, at, amount * WARN_AT, unit)
    case.due_at = calendar.limit_end(wt, at, amount, unit)
    case.red_at = calendar.limit_end(wt, at, amount * RED_AT, unit)


def _shift_clock(wt: calendar.WorkingTime, case: Case, since: datetime, at: datetime) -> float:
    """Move the stage's pending thresholds by the time spent on hold from `since` to `at`;
    returns that time in working seconds (for the handling-time statistics)."""
    unit = case.stage_unit or "working_hours"
    for name in ("warn_at", "due_at", "red_at"):
        moment = getattr(case, name)
        if moment is not None and moment > since:
            remaining = calendar.elapsed(wt, since, moment, unit)
            setattr(case, name, calendar.limit_end(wt, at, remaining / 3600, "working_hours")
                    if unit.startswith("working") else at + (moment - since))
    return wt.between(since, at)

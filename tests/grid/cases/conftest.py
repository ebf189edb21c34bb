"""Case fixtures: the area tree, department, category T01 and people come from
tests/fixtures (areas.py, http.py, cases.py); here the helpers of the deadline, calendar,
queue, statistics and hotline tests.
"""

from __future__ import annotations

from datetime import UTC, datetime

from grid.cases.models import Case
from tests.fixtures.cases import People, act, report
from tests.fixtures.users import make_user  # noqa: F401 - fixture

# --- helpers of the deadline, calendar, queue, statistics and hotline tests ---------------


def local(text: str) -> datetime:
    """A wall-clock time in Asia/Shanghai ("2026-03-06 16:00") as an aware UTC instant."""
    from zoneinfo import ZoneInfo

    return datetime.fromisoformat(text).replace(tzinfo=ZoneInfo("Asia/Shanghai")) \
        .astimezone(UTC)


def start_clock(db_session, case_id: int, at: datetime, state: str | None = None) -> Case:
    """Start the clock of the case's current stage (or of `state`'s stage) at `at`, as the
    service does when a stage begins; returns the case as stored."""
    from grid.cases import clock

    case = db_session.get(Case, case_id, populate_existing=True)
    if state is not None:
        case.state = state
    clock._start_stage(db_session, case, at)
    db_session.commit()
    return db_session.get(Case, case_id, populate_existing=True)


def stored(db_session, case_id: int) -> Case:
    """The case as the database has it now."""
    return db_session.get(Case, case_id, populate_existing=True)


def in_progress(p: People, category, department, code: str = "330183001001001") -> dict:
    """A case reported in grid `code`, accepted and dispatched to `department` by its
    street's dispatcher, and signed by the department's handler."""
    dispatcher = p.dispatcher2 if code.startswith("330183002") else p.dispatcher
    case = report(p.worker, category, code)
    case = act(dispatcher, dispatcher.ok(dispatcher.get(f"/cases/{case['id']}")), "accept")
    case = act(dispatcher, case, "dispatch", department_id=department.id)
    return act(p.handler, case, "sign")

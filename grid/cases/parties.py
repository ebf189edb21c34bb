"""Who may act on a case: the named predicates the case's transition table composes
(server/actions.py Relation). Each answers for one actor and one case; role names stay in
server/auth/permissions.py.

- `is_street_dispatcher`: commands the street (派遣员, district admin) and the case's grid
  lies in their scope
- `is_department_handler`: handles cases for the case's department (职能部门), and is its
  assignee or the department's head when the case has an assignee
- `is_self_handling_grid_worker`: a worker/chief of the case's grid, for a case solved on
  the spot (自处置) that its checker sent back
- `works_over_case`: works in an area that covers the case's grid (worker, chief, staff,
  dispatcher)
- `is_case_reporter`, `solved_it_on_the_spot`, `is_case_evaluator`
  (may_evaluate), `handles_for_case_department`
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.orm import Session

from grid.cases.models import RESIDENT_CHANNELS, Case, CaseFollower
from grid.cases.notices import _department_people
from grid.cases.scope import _area_in_scope, _works_in_areas
from server.actions import Context, relation
from server.auth import permissions
from server.auth.actor import Actor


def _in_area(c: Context, case: Case) -> bool:
    return c.once("in_area", lambda: _works_in_areas(c.actor)
                  and _area_in_scope(c.s, c.actor, case.area_id))


@relation
def is_platform_admin(c: Context, case: Case) -> bool:
    """The system administrator acts on every case."""
    return c.actor.unrestricted


@relation
def works_over_case(c: Context, case: Case) -> bool:
    return _in_area(c, case)


@relation
def is_street_dispatcher(c: Context, case: Case) -> bool:
    return permissions.commands_streets(c.actor) and _in_area(c, case)


@relation
def is_self_handling_grid_worker(c: Context, case: Case) -> bool:
    return (case.department_id is None and case.self_handled
            and permissions.works_a_grid(c.actor) and _in_area(c, case))


@relation
def is_department_handler(c: Context, case: Case) -> bool:
    if case.department_id is None or case.department_id not in c.actor.department_ids:
        return False
    if case.assignee_id is None or case.assignee_id == c.actor.user_id:
        return True
    return c.actor.user_id in _department_people(c.s, case.department_id, heads_only=True)


@relation
def handles_for_case_department(c: Context, case: Case) -> bool:
    return case.department_id is not None and case.department_id in c.actor.department_ids


@relation
def is_case_reporter(c: Context, case: Case) -> bool:
    return case.reporter_id is not None and case.reporter_id == c.actor.user_id


@relation
def solved_it_on_the_spot(c: Context, case: Case) -> bool:
    """Whoever solved it on the spot (自处置) does not check their own work."""
    return case.self_handled and is_case_reporter(c, case)


@relation
def is_case_evaluator(c: Context, case: Case) -> bool:
    return may_evaluate(c.s, c.actor, case)


def may_evaluate(s: Session, actor: Actor, case: Case) -> bool:
    """Who evaluates (评价) or reopens a closed case: its resident reporter; for a case
    without one (a grid worker's, the console's, a hotline ticket), the residents who
    joined it ("me too", or their own report merged into it). Nobody else: a case with
    neither closes without a rating (evaluable_sql)."""
    if case.channel in RESIDENT_CHANNELS:
        return case.reporter_id is not None and case.reporter_id == actor.user_id
    return actor.user_id is not None and s.scalar(sa.select(sa.exists().where(
        CaseFollower.case_id == case.id, CaseFollower.user_id == actor.user_id,
        CaseFollower.kind == "joined"))) or False


def evaluable_sql() -> sa.ColumnElement[bool]:
    """SQL: someone may evaluate the case (may_evaluate) — a resident reporter, or anyone
    joined it. Migration 0011's roll-up trigger counts the same."""
    return sa.or_(Case.channel.in_(RESIDENT_CHANNELS), Case.joined_count > 0)


# The relations of the table (grid/cases/workflow.py), composed from the predicates.
street = is_platform_admin | is_street_dispatcher
department = is_platform_admin | is_self_handling_grid_worker | is_department_handler
verifier = is_platform_admin | (~solved_it_on_the_spot & (works_over_case | is_case_reporter))
evaluator = is_platform_admin | is_case_evaluator
involved = is_platform_admin | works_over_case | is_case_reporter | handles_for_case_department

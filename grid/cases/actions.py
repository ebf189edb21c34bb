"""The case's actions on the engine (server/actions.py): the handlers of the transitions
of grid/cases/workflow.py (立案, 派遣, 处置, 核查, 结案, 评价, requests and their approval), the
case's life cycle (row-locked load in scope, the stage clock, the timeline row, the
notices) and `act`, which runs one.

The engine checks in its one order (404 → 403 → 428 → 412 → 409 → 422), then the handler
changes the case and returns a `Result` (the timeline note, who is told, the facts the
timeline keeps); the timeline row, the audit row and the outbox rows are written in the
same transaction.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.orm import Session

from grid.areas.models import Department
from grid.cases import workflow
from grid.cases.categories import suggested_department
from grid.cases.clock import RED_AT, WARN_AT, _shift_clock, _start_stage, _working_time
from grid.cases.intake import _add_joiner, _callers, _joined_users
from grid.cases.models import OPEN_STATES, Case, CaseCategory, CaseFollower, CaseRequest
from grid.cases.notices import (
    _case_people,
    _department_people,
    _event,
    _grid_workers,
    _link_photos,
    _street_dispatchers,
    _tell,
)
from grid.cases.parties import evaluable_sql, may_evaluate
from grid.cases.resident_view import CaseView, ResidentView, shown
from grid.cases.scope import get_case
from grid.cases.workflow import pending_request
from server import actions
from server.actions import Handler, Lifecycle, Result, Step, Transition
from server.auth.actor import Actor
from server.errors import Conflict, Forbidden, Invalid, field_errors

__all__ = ["LIFECYCLE", "act", "allowed_actions", "evaluable_sql", "may_evaluate", "view"]

REOPEN_DAYS = 7


def allowed_actions(s: Session, actor: Actor, case: Case, pending: bool | None = None
                    ) -> list[str]:
    """What this actor may do to this case now (409 bodies and the case's `actions`).
    `pending`: whether a request awaits a decision, when the caller knows (a new case has
    none); looked up otherwise."""
    known = {} if pending is None else {"request_pending": pending}
    return actions.allowed(s, actor, LIFECYCLE, case, known)


def view(s: Session, actor: Actor, case: Case, duplicates: list | None = None,
         new: bool = False) -> CaseView | ResidentView:
    """One case with the actions this actor may take now, in its view (sees_whole_case).
    `new`: the case was created in this transaction (no request can be pending)."""
    actions_now = allowed_actions(s, actor, case, pending=False if new else None)
    return shown(s, actor, case, actions_now, duplicates)


def act(s: Session, actor: Actor, case_id: int, action: str, data: dict,
        expected: int | None) -> Case:
    """Apply one workflow action (the engine's order of checks: 404 outside scope, 403 not
    yours, 428 without a version, 412 stale, 409 not possible now with `allowed`, 422)."""
    return actions.run(s, actor, LIFECYCLE, case_id, action, data, expected).record


# --- handlers ------------------------------------------------------------------------------
# Each changes the case (not its state: the table's target) and returns its Result.


def _on_accept(step: Step) -> Result:
    step.record.accepted_at = step.at
    return Result(step.data.get("note"), tuple(_case_people(step.s, step.record)))


def _on_reject(step: Step) -> Result:
    return Result(step.data["reason"], tuple(_case_people(step.s, step.record)))


def _on_merge(step: Step) -> Result:
    s, actor, case, data = step.s, step.actor, step.record, step.data
    kept = get_case(s, actor, data["into_case_id"], for_update=True)
    if kept.id == case.id or kept.state not in OPEN_STATES or kept.merged_into_id:
        raise Invalid(field_errors("into_case_id", "Merge into another open case."))
    case.merged_into_id = kept.id
    # joined_count counts people, not events: accounts once each, callers without one
    callers = _callers(s, kept) + _callers(s, case) + (case.reporter_id is None)
    followers = s.execute(sa.select(CaseFollower.user_id, CaseFollower.kind)
                          .where(CaseFollower.case_id == case.id)).all()
    # its reporter and joiners join the kept case, its followers follow it: each person
    # once, whether or not they had joined the kept case already
    joiners = {u for u, kind in followers if kind != "follower"} | (
        {case.reporter_id} if case.reporter_id else set())
    for user_id in joiners:
        _add_joiner(s, kept, user_id)
    for user_id in {u for u, kind in followers} - joiners:
        s.execute(sa.dialects.postgresql.insert(CaseFollower)
                  .values(case_id=kept.id, user_id=user_id, kind="follower")
                  .on_conflict_do_nothing())
    s.flush()
    kept.joined_count = _joined_users(s, kept) + callers
    _event(s, kept, actor, "merged_in", kept.state, note=data.get("note"),
           merged_case_id=case.id)
    return Result(data.get("note"), tuple(joiners | {u for u, _ in followers}))


def _on_dispatch(step: Step) -> Result:
    s, case, data = step.s, step.record, step.data
    department_id = data.get("department_id") or suggested_department(s, case)
    if department_id is None:
        raise Invalid(field_errors("department_id", "This category has no department to "
                                                    "route to: name one."))
    department = s.get(Department, department_id)
    if department is None:
        raise Invalid(field_errors("department_id", "No such department."))
    assignee = data.get("assignee_id")
    if assignee is not None and assignee not in _department_people(s, department.id):
        raise Invalid(field_errors("assignee_id", "Not a handler of that department."))
    case.department_id, case.assignee_id = department.id, assignee
    case.dispatched_at = case.dispatched_at or step.at
    targets = [assignee] if assignee else _department_people(s, department.id)
    _tell(s, case, "case_dispatched", targets, step.actor)
    return Result(data.get("note"), tuple(_case_people(s, case)),
                  facts={"department_id": department.id})


def _on_sign(step: Step) -> Result:
    case = step.record
    case.assignee_id = case.assignee_id or step.actor.user_id
    return Result(step.data.get("note"), tuple(_case_people(step.s, case)))


def _on_return(step: Step) -> Result:
    case = step.record
    case.return_count += 1
    previous = case.department_id
    case.department_id = case.assignee_id = None
    return Result(f"{step.data['reason']}（退回自部门 {previous}）",
                  tuple(_street_dispatchers(step.s, case)))


def _on_handle(step: Step) -> Result:
    s, case, data, at = step.s, step.record, step.data, step.at
    category = s.get(CaseCategory, case.category_id)
    if category.result_photo_required and not data.get("photo_ids"):
        raise Invalid(field_errors("photo_ids", "This category needs a result photo."))
    wt = _working_time(s, case)
    case.result, case.handled_at = data["result"], at
    case.handled_in_time = case.due_at is None or at <= case.due_at
    case.handling_working_s = max(0.0, wt.between(case.dispatched_at or case.reported_at, at)
                                  - case.held_working_s)
    return Result(data["result"], tuple(_grid_workers(s, case) + _street_dispatchers(s, case)
                                        + _case_people(s, case)))


def _on_verify(step: Step) -> Result:
    return Result(step.data.get("note"), tuple(_street_dispatchers(step.s, step.record)))


def _on_reject_result(step: Step) -> Result:
    case = step.record
    case.rework_count += 1
    people = _department_people(step.s, case.department_id)
    return Result(step.data["reason"], tuple(people or _grid_workers(step.s, case)))


def _on_close(step: Step) -> Result:
    case, at = step.record, step.at
    case.closed_at = at
    case.closed_in_time = bool(case.handled_in_time) and (case.due_at is None
                                                          or at <= case.due_at)
    return Result(step.data.get("note"), tuple(_case_people(step.s, case)))


def _on_evaluate(step: Step) -> Result:
    case, data = step.record, step.data
    case.rating, case.rating_comment = data["rating"], data.get("comment")
    return Result(data.get("comment"), tuple(_street_dispatchers(step.s, case)))


def _on_reopen(step: Step) -> Result:
    case = step.record
    if case.closed_at is None or step.at - case.closed_at > timedelta(days=REOPEN_DAYS):
        raise Conflict(f"A case can be reopened within {REOPEN_DAYS} days of closing",
                       allowed=[])
    case.rework_count += 1
    case.closed_at = case.closed_in_time = None
    return Result(step.data["reason"], tuple(_street_dispatchers(step.s, case)))


def _on_request(kind: str) -> Handler:
    def handler(step: Step) -> Result:
        s, case, data = step.s, step.record, step.data
        if kind == "extension" and not 0 < data["extension_hours"] <= 2000:
            raise Invalid(field_errors("extension_hours", "Between 0 and 2000 working hours."))
        request = CaseRequest(case_id=case.id, kind=kind, reason=data["reason"],
                              extension_hours=data.get("extension_hours")
                              if kind == "extension" else None,
                              requested_by=step.actor.user_id)
        s.add(request)
        s.flush()
        _tell(s, case, "case_request", _street_dispatchers(s, case), step.actor,
              action=step.transition.label, action_en=f"request {kind}",
              reason=data["reason"])
        return Result(data["reason"], facts={"request_id": request.id})
    return handler


def _decide(approve: bool) -> Handler:
    def handler(step: Step) -> Result:
        s, case, data = step.s, step.record, step.data
        request = pending_request(s, case)  # the table's `when` saw one
        if request.requested_by == step.actor.user_id:
            raise Forbidden("A request is decided by someone other than who made it")
        request.state = "approved" if approve else "refused"
        request.decided_by, request.decided_at = step.actor.user_id, step.at
        request.decision_note = data.get("reason") or data.get("note")
        if approve:
            _apply_request(s, case, request, step.at)
        return Result(f"{request.kind}: {request.decision_note or ''}".strip(": "),
                      tuple([request.requested_by] + _case_people(s, case)),
                      facts={"request_id": request.id})
    return handler


def _apply_request(s: Session, case: Case, request: CaseRequest, at: datetime) -> None:
    if request.kind == "void":
        case.state = "voided"
        _start_stage(s, case, at)
    elif request.kind == "extension":
        wt = _working_time(s, case)
        seconds = request.extension_hours * 3600
        for name, share in (("warn_at", WARN_AT), ("due_at", 1.0), ("red_at", RED_AT)):
            moment = getattr(case, name)
            if moment is not None:
                setattr(case, name, wt.add(max(moment, at) if name != "warn_at" else moment,
                                           seconds * share))
    else:  # defer (缓办) or backlog (挂账): the clock stops until resumed
        case.held_from_state, case.hold_kind, case.held_at = case.state, request.kind, at
        case.state = "on_hold"


def _on_resume(step: Step) -> Result:
    s, case, at = step.s, step.record, step.at
    wt = _working_time(s, case)
    case.held_working_s += _shift_clock(wt, case, case.held_at, at)
    case.state, case.held_at, case.hold_kind = case.held_from_state, None, None
    case.held_from_state = None
    return Result(step.data.get("note"), tuple(_department_people(s, case.department_id)
                                               + _case_people(s, case)))


def _with_photos(handler: Handler) -> Handler:
    """Photos sent with any action are linked to the case (and kept on its timeline)."""
    def linked(step: Step) -> Result | None:
        _link_photos(step.s, step.actor, step.record, step.data.get("photo_ids") or [])
        return handler(step)
    return linked


# --- the life cycle ------------------------------------------------------------------------


def _load(s: Session, actor: Actor, case_id: int) -> Case:
    return get_case(s, actor, case_id, for_update=True)


def _entered(s: Session, case: Case, before: str, at: datetime) -> None:
    _start_stage(s, case, at)


def _timeline(s: Session, case: Case, entry: actions.Entry) -> None:
    _event(s, case, None, entry.action, entry.from_state, note=entry.note,
           photo_ids=list(entry.photo_ids), actor_id=entry.actor_id,
           **entry.facts)


def _announce(s: Session, actor: Actor, case: Case, transition: Transition,
              result: Result) -> None:
    if result.recipients:
        _tell(s, case, result.notice or "case_changed", list(result.recipients), actor,
              action=transition.label, action_en=transition.action)


_HANDLERS: dict[str, Handler] = {
    "accept": _on_accept, "reject": _on_reject, "merge": _on_merge, "dispatch": _on_dispatch,
    "sign": _on_sign, "return": _on_return, "handle": _on_handle, "verify": _on_verify,
    "reject_result": _on_reject_result, "close": _on_close, "evaluate": _on_evaluate,
    "reopen": _on_reopen, "request_extension": _on_request("extension"),
    "request_defer": _on_request("defer"), "request_backlog": _on_request("backlog"),
    "request_void": _on_request("void"), "approve": _decide(True), "refuse": _decide(False),
    "resume": _on_resume,
}

LIFECYCLE = Lifecycle(
    kind="case", noun="case", transitions=workflow.TRANSITIONS,
    handlers={action: _with_photos(h) for action, h in _HANDLERS.items()}, load=_load,
    recorded=("department_id", "assignee_id", "into_case_id", "rating", "extension_hours"),
    entered=_entered, timeline=_timeline, announce=_announce)

"""The case's actions: the handlers of the transitions of grid/cases/workflow.py (立案, 派遣,
处置, 核查, 结案, 评价, requests and their approval) and `act`, which applies one.

Every change happens under a row lock on the case with the client's version checked first
(412 with the current case if stale), appends a timeline row, writes the audit row and the
notifications (outbox) in the same transaction.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from grid.areas.models import Department
from grid.cases import workflow
from grid.cases.categories import suggested_department
from grid.cases.clock import RED_AT, WARN_AT, _shift_clock, _start_stage, _working_time
from grid.cases.intake import _add_joiner, _callers, _joined_users
from grid.cases.models import (
    OPEN_STATES,
    RESIDENT_CHANNELS,
    Case,
    CaseCategory,
    CaseFollower,
    CaseRequest,
)
from grid.cases.notices import (
    _case_people,
    _department_people,
    _event,
    _grid_workers,
    _link_photos,
    _members_above,
    _tell,
)
from grid.cases.resident_view import CaseView, ResidentView, shown
from grid.cases.scope import _area_in_scope, _works_in_areas, get_case
from server import audit
from server.auth.actor import Actor
from server.clock import now
from server.errors import Conflict, Forbidden, Invalid, NotFound, check_version, field_errors

REOPEN_DAYS = 7


def _relation_ok(s: Session, actor: Actor, case: Case, who: str) -> bool:
    if actor.unrestricted:
        return True
    in_area = _works_in_areas(actor) and _area_in_scope(s, actor, case.area_id)
    if who == "street":
        return in_area and bool(actor.roles & {"street_dispatcher", "district_admin"})
    if who == "department":
        if case.department_id is None and case.self_handled:
            # a self-handled case sent back by its checker: the grid's workers redo it
            return in_area and bool(actor.roles & {"grid_worker", "grid_chief"})
        if case.department_id not in actor.department_ids:
            return False
        if case.assignee_id is None or case.assignee_id == actor.user_id:
            return True
        return actor.user_id in _department_people(s, case.department_id, heads_only=True)
    if who == "evaluator":
        return may_evaluate(s, actor, case)
    if who == "verifier":
        if case.self_handled and case.reporter_id == actor.user_id:
            return False  # whoever solved it on the spot does not check their own work
        return in_area or case.reporter_id == actor.user_id
    if who == "involved":
        return in_area or case.reporter_id == actor.user_id or \
            case.department_id in actor.department_ids
    raise ValueError(who)


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


def allowed_actions(s: Session, actor: Actor, case: Case, pending: bool | None = None
                    ) -> list[str]:
    """What this actor may do to this case now (409 bodies and the case's `actions`).
    `pending`: whether a request awaits a decision, when the caller knows (a new case has
    none); looked up otherwise."""
    candidates = [t for t in workflow.transitions_from(case.state)
                  if actor.can(t.permission) and _relation_ok(s, actor, case, t.who)]
    if not candidates:
        return []
    if pending is None:
        pending = _pending_request(s, case) is not None
    return [t.action for t in candidates
            if not (t.action in ("approve", "refuse") and not pending)
            and not (t.action in workflow.REQUEST_ACTIONS and pending)]


def view(s: Session, actor: Actor, case: Case, duplicates: list | None = None,
         new: bool = False) -> CaseView | ResidentView:
    """One case with the actions this actor may take now, in its view (sees_whole_case).
    `new`: the case was created in this transaction (no request can be pending)."""
    actions = allowed_actions(s, actor, case, pending=False if new else None)
    return shown(s, actor, case, actions, duplicates)


def _pending_request(s: Session, case: Case) -> CaseRequest | None:
    return s.scalars(sa.select(CaseRequest).where(CaseRequest.case_id == case.id,
                                                  CaseRequest.state == "pending")).first()


def _require(transition: workflow.Transition, data: dict) -> None:
    missing = {name: ["Required for this action."] for name in transition.requires
               if data.get(name) in (None, "", [])}
    if missing:
        raise Invalid({"json": missing})


def act(s: Session, actor: Actor, case_id: int, action: str, data: dict,
        expected: int | None, as_dict: Any) -> Case:
    """Apply one workflow action. 404 outside scope, 428 without a version, 412 stale,
    409 not possible in this state (with the allowed actions), 403 not yours, 422 data."""
    transition = workflow.BY_ACTION.get(action)
    if transition is None:
        raise NotFound(f"No such action {action!r}")
    case = get_case(s, actor, case_id, for_update=True)
    check_version(case, expected, lambda c: as_dict(c, allowed_actions(s, actor, c)))
    if case.state not in transition.sources:
        raise Conflict(f"Cannot {action} a case that is {case.state}",
                       allowed=allowed_actions(s, actor, case))
    actor.require(transition.permission)
    if not _relation_ok(s, actor, case, transition.who):
        raise Forbidden(f"This case is not yours to {action}")
    _require(transition, data)
    before = case.state
    at = now()
    handler = _HANDLERS[action]
    recipients, note = handler(s, actor, case, data, at)
    if transition.target is not None:
        case.state = transition.target
        _start_stage(s, case, at)
    photo_ids = data.get("photo_ids") or []
    _link_photos(s, actor, case, photo_ids)
    _event(s, case, actor, action, before, note=note, photo_ids=photo_ids,
           **{k: v for k, v in data.items() if k in ("department_id", "assignee_id",
                                                     "into_case_id", "rating",
                                                     "extension_hours", "request_id")})
    audit.record(s, actor, f"case_{action}", "case", case.id,
                 changes={"state": [before, case.state]})
    if recipients:
        _tell(s, case, "case_changed", recipients, actor, action=transition.label,
              action_en=action)
    s.flush()
    return case


# --- handlers ------------------------------------------------------------------------------


def _on_accept(s, actor, case, data, at):
    case.accepted_at = at
    return _case_people(s, case), data.get("note")


def _on_reject(s, actor, case, data, at):
    return _case_people(s, case), data["reason"]


def _on_merge(s, actor, case, data, at):
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
    ids = joiners | {u for u, _ in followers}
    _event(s, kept, actor, "merged_in", kept.state, note=data.get("note"),
           merged_case_id=case.id)
    return list(ids), data.get("note")


def _on_dispatch(s, actor, case, data, at):
    data["department_id"] = data.get("department_id") or suggested_department(s, case)
    if data["department_id"] is None:
        raise Invalid(field_errors("department_id", "This category has no department to "
                                                    "route to: name one."))
    department = s.get(Department, data["department_id"])
    if department is None:
        raise Invalid(field_errors("department_id", "No such department."))
    assignee = data.get("assignee_id")
    if assignee is not None and assignee not in _department_people(s, department.id):
        raise Invalid(field_errors("assignee_id", "Not a handler of that department."))
    case.department_id, case.assignee_id = department.id, assignee
    case.dispatched_at = case.dispatched_at or at
    targets = [assignee] if assignee else _department_people(s, department.id)
    _tell(s, case, "case_dispatched", targets, actor)
    return _case_people(s, case), data.get("note")


def _on_sign(s, actor, case, data, at):
    case.assignee_id = case.assignee_id or actor.user_id
    return _case_people(s, case), data.get("note")


def _on_return(s, actor, case, data, at):
    case.return_count += 1
    previous = case.department_id
    case.department_id = case.assignee_id = None
    return _members_above(s, case, "street_dispatcher"), \
        f"{data['reason']}（退回自部门 {previous}）"


def _on_handle(s, actor, case, data, at):
    category = s.get(CaseCategory, case.category_id)
    if category.result_photo_required and not data.get("photo_ids"):
        raise Invalid(field_errors("photo_ids", "This category needs a result photo."))
    wt = _working_time(s, case)
    case.result, case.handled_at = data["result"], at
    case.handled_in_time = case.due_at is None or at <= case.due_at
    case.handling_working_s = max(0.0, wt.between(case.dispatched_at or case.reported_at, at)
                                  - case.held_working_s)
    return (_grid_workers(s, case) + _members_above(s, case, "street_dispatcher")
            + _case_people(s, case)), data["result"]


def _on_verify(s, actor, case, data, at):
    return _members_above(s, case, "street_dispatcher"), data.get("note")


def _on_reject_result(s, actor, case, data, at):
    case.rework_count += 1
    people = _department_people(s, case.department_id)
    return (people or _grid_workers(s, case)), data["reason"]


def _on_close(s, actor, case, data, at):
    case.closed_at = at
    case.closed_in_time = bool(case.handled_in_time) and (case.due_at is None
                                                          or at <= case.due_at)
    return _case_people(s, case), data.get("note")


def _on_evaluate(s, actor, case, data, at):
    case.rating, case.rating_comment = data["rating"], data.get("comment")
    return _members_above(s, case, "street_dispatcher"), data.get("comment")


def _on_reopen(s, actor, case, data, at):
    if case.closed_at is None or at - case.closed_at > timedelta(days=REOPEN_DAYS):
        raise Conflict(f"A case can be reopened within {REOPEN_DAYS} days of closing",
                       allowed=[])
    case.rework_count += 1
    case.closed_at = case.closed_in_time = None
    return _members_above(s, case, "street_dispatcher"), data["reason"]


def _on_request(kind: str):
    def handler(s, actor, case, data, at):
        if _pending_request(s, case) is not None:
            raise Conflict("Another request on this case awaits a decision",
                           allowed=["approve", "refuse"])
        if kind == "extension" and not 0 < data["extension_hours"] <= 2000:
            raise Invalid(field_errors("extension_hours", "Between 0 and 2000 working hours."))
        request = CaseRequest(case_id=case.id, kind=kind, reason=data["reason"],
                              extension_hours=data.get("extension_hours")
                              if kind == "extension" else None,
                              requested_by=actor.user_id)
        s.add(request)
        s.flush()
        data["request_id"] = request.id
        _tell(s, case, "case_request", _members_above(s, case, "street_dispatcher"), actor,
              action=workflow.BY_ACTION[f"request_{kind}"].label, action_en=f"request {kind}",
              reason=data["reason"])
        return [], data["reason"]
    return handler


def _decide(approve: bool):
    def handler(s, actor, case, data, at):
        request = _pending_request(s, case)
        if request is None:
            raise Conflict("No request awaits a decision", allowed=[])
        if request.requested_by == actor.user_id:
            raise Forbidden("A request is decided by someone other than who made it")
        request.state = "approved" if approve else "refused"
        request.decided_by, request.decided_at = actor.user_id, at
        request.decision_note = data.get("reason") or data.get("note")
        data["request_id"] = request.id
        if approve:
            _apply_request(s, case, request, at)
        return [request.requested_by] + _case_people(s, case), \
            f"{request.kind}: {request.decision_note or ''}".strip(": ")
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


def _on_resume(s, actor, case, data, at):
    wt = _working_time(s, case)
    case.held_working_s += _shift_clock(wt, case, case.held_at, at)
    case.state, case.held_at, case.hold_kind = case.held_from_state, None, None
    case.held_from_state = None
    return _department_people(s, case.department_id) + _case_people(s, case), data.get("note")


_HANDLERS = {
    "accept": _on_accept, "reject": _on_reject, "merge": _on_merge, "dispatch": _on_dispatch,
    "sign": _on_sign, "return": _on_return, "handle": _on_handle, "verify": _on_verify,
    "reject_result": _on_reject_result, "close": _on_close, "evaluate": _on_evaluate,
    "reopen": _on_reopen, "request_extension": _on_request("extension"),
    "request_defer": _on_request("defer"), "request_backlog": _on_request("backlog"),
    "request_void": _on_request("void"), "approve": _decide(True), "refuse": _decide(False),
    "resume": _on_resume,
}
assert set(_HANDLERS) == set(workflow.BY_ACTION), "every transition needs its handler"

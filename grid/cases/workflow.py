"""The case loop as one table (GB/T 30428) for the action engine (server/actions.py):
which action moves a case from which states to which state, the permission it needs, who
among the permitted may act on *this* case (a relation composed of the named predicates in
grid/cases/parties.py), what the action must carry, and when it may happen beyond the
state (a request awaiting a decision or not).

- `street`:     the case's street commands it (is_street_dispatcher)
- `department`: the department it was sent to (is_department_handler), or the grid's
                workers for a case they solved on the spot (is_self_handling_grid_worker)
- `verifier`:   anyone working over the case's grid, or its reporter — not whoever solved
                it on the spot
- `evaluator`:  the resident who reported the case; for a case no resident reported (a
                grid worker's, the console's, a hotline ticket), the residents who joined it
- `involved`:   anyone who may act on the case at all (requests of void)
(a platform admin is each of them)

`dispatch` without a department_id sends the case where its category is routed (the
street's own department for it, else the category's default).
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.orm import Session

from grid.cases.models import Case, CaseRequest
from grid.cases.parties import department, evaluator, involved, street, verifier
from server.actions import Context, Relation, Transition, relation

WORKING = ("dispatched", "in_progress")  # a department has the case
UNFINISHED = ("reported", "accepted", "returned", "dispatched", "in_progress", "on_hold")


def pending_request(s: Session, case: Case) -> CaseRequest | None:
    return s.scalars(sa.select(CaseRequest).where(CaseRequest.case_id == case.id,
                                                  CaseRequest.state == "pending")).first()


@relation
def request_pending(c: Context, case: Case) -> bool:
    """A request (延期, 缓办, 挂账, 作废) awaits a dispatcher's decision. A case created in
    this transaction has none: its view passes `known={"request_pending": False}`."""
    return c.once("request_pending", lambda: pending_request(c.s, case) is not None)


# (named for the 409's message: "…: no_request_pending does not hold")
no_request_pending = Relation("no_request_pending", lambda c, case: not request_pending(c, case))

# fmt: off
TRANSITIONS: tuple[Transition, ...] = (
    Transition("accept",   "立案",     ("reported",),                "accepted",    "case:accept",   street),
    Transition("reject",   "不予立案", ("reported",),                "rejected",    "case:accept",   street,     ("reason",)),
    Transition("merge",    "合并",     ("reported", "accepted"),     "merged",      "case:merge",    street,     ("into_case_id",)),
    Transition("dispatch", "派遣",     ("accepted", "returned"),     "dispatched",  "case:dispatch", street),
    Transition("sign",     "签收",     ("dispatched",),              "in_progress", "case:handle",   department),
    Transition("return",   "退回",     ("dispatched",),              "returned",    "case:handle",   department, ("reason",)),
    Transition("handle",   "处置反馈", ("in_progress",),             "handled",     "case:handle",   department, ("result",)),
    Transition("verify",   "核查通过", ("handled",),                 "verified",    "case:verify",   verifier,   ("photo_ids",)),
    Transition("reject_result", "核查不通过", ("handled",),          "in_progress", "case:verify",   verifier,   ("reason",)),
    Transition("close",    "结案",     ("verified",),                "closed",      "case:close",    street),
    Transition("evaluate", "评价",     ("closed",),                  "evaluated",   "case:evaluate", evaluator,  ("rating",)),
    Transition("reopen",   "重新办理", ("closed",),                  "accepted",    "case:evaluate", evaluator,  ("reason",)),
    # Requests that need a dispatcher's approval; approval applies them.
    Transition("request_extension", "申请延期", WORKING, None, "case:handle", department, ("reason", "extension_hours"), no_request_pending),
    Transition("request_defer",     "申请缓办", WORKING, None, "case:handle", department, ("reason",), no_request_pending),
    Transition("request_backlog",   "申请挂账", WORKING, None, "case:handle", department, ("reason",), no_request_pending),
    Transition("request_void",      "申请作废", UNFINISHED, None, "case:report", involved, ("reason",), no_request_pending),
    Transition("approve",  "批准申请", UNFINISHED, None, "case:approve", street, (), request_pending),
    Transition("refuse",   "驳回申请", UNFINISHED, None, "case:approve", street, ("reason",), request_pending),
    Transition("resume",   "恢复办理", ("on_hold",),                 None,          "case:approve",  street),
)
# fmt: on

BY_ACTION: dict[str, Transition] = {t.action: t for t in TRANSITIONS}
# The request each request_* action makes.
REQUEST_ACTIONS = {"request_extension": "extension", "request_defer": "defer",
                   "request_backlog": "backlog", "request_void": "void"}


def transitions_from(state: str) -> list[Transition]:
    return [t for t in TRANSITIONS if state in t.sources]


def actions_from(state: str) -> list[str]:
    return [t.action for t in transitions_from(state)]

"""The case loop as one table (GB/T 30428): which action moves a case from which states to
which state, the permission it needs, who among the permitted may act on *this* case, and
what the action must carry.

`who` names a relation the service checks against the case:
- "street":     the case's grid is in the actor's scope (dispatchers of that street, admins)
- "department": the actor handles cases for the case's department (and, if the case has an
                assignee, is that assignee or the department's head)
- "verifier":   a worker/chief of the case's grid, a dispatcher of its street, or its reporter
- "evaluator":  the resident who reported the case; for a case no resident reported (a
                grid worker's, the console's, a hotline ticket), the residents who joined it
- "involved":   anyone who may act on the case at all (requests of void)

`dispatch` without a department_id sends the case where its category is routed (the
street's own department for it, else the category's default).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Transition:
    action: str
    label: str  # 中文 name on the timeline and in the console
    sources: tuple[str, ...]
    target: str | None  # None: the state does not change (requests, decisions…)
    permission: str
    who: str
    requires: tuple[str, ...] = ()


WORKING = ("dispatched", "in_progress")  # a department has the case
UNFINISHED = ("reported", "accepted", "returned", "dispatched", "in_progress", "on_hold")

# fmt: off
TRANSITIONS: tuple[Transition, ...] = (
    Transition("accept",   "立案",     ("reported",),                "accepted",    "case:accept",   "street"),
    Transition("reject",   "不予立案", ("reported",),                "rejected",    "case:accept",   "street",     ("reason",)),
    Transition("merge",    "合并",     ("reported", "accepted"),     "merged",      "case:merge",    "street",     ("into_case_id",)),
    Transition("dispatch", "派遣",     ("accepted", "returned"),     "dispatched",  "case:dispatch", "street"),
    Transition("sign",     "签收",     ("dispatched",),              "in_progress", "case:handle",   "department"),
    Transition("return",   "退回",     ("dispatched",),              "returned",    "case:handle",   "department", ("reason",)),
    Transition("handle",   "处置反馈", ("in_progress",),             "handled",     "case:handle",   "department", ("result",)),
    Transition("verify",   "核查通过", ("handled",),                 "verified",    "case:verify",   "verifier",   ("photo_ids",)),
    Transition("reject_result", "核查不通过", ("handled",),          "in_progress", "case:verify",   "verifier",   ("reason",)),
    Transition("close",    "结案",     ("verified",),                "closed",      "case:close",    "street"),
    Transition("evaluate", "评价",     ("closed",),                  "evaluated",   "case:evaluate", "evaluator",  ("rating",)),
    Transition("reopen",   "重新办理", ("closed",),                  "accepted",    "case:evaluate", "evaluator",  ("reason",)),
    # Requests that need a dispatcher's approval; approval applies them.
    Transition("request_extension", "申请延期", WORKING, None, "case:handle", "department", ("reason", "extension_hours")),
    Transition("request_defer",     "申请缓办", WORKING, None, "case:handle", "department", ("reason",)),
    Transition("request_backlog",   "申请挂账", WORKING, None, "case:handle", "department", ("reason",)),
    Transition("request_void",      "申请作废", UNFINISHED, None, "case:report", "involved", ("reason",)),
    Transition("approve",  "批准申请", UNFINISHED, None, "case:approve", "street"),
    Transition("refuse",   "驳回申请", UNFINISHED, None, "case:approve", "street", ("reason",)),
    Transition("resume",   "恢复办理", ("on_hold",),                 None,          "case:approve",  "street"),
)
# fmt: on

BY_ACTION: dict[str, Transition] = {t.action: t for t in TRANSITIONS}
# Actions that need a pending request (approve/refuse) or none pending (request_*).
REQUEST_ACTIONS = {"request_extension": "extension", "request_defer": "defer",
                   "request_backlog": "backlog", "request_void": "void"}


def transitions_from(state: str) -> list[Transition]:
    return [t for t in TRANSITIONS if state in t.sources]


def actions_from(state: str) -> list[str]:
    return [t.action for t in transitions_from(state)]

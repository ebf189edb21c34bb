"""Results back to the 12345 hotline (回单): a hotline ticket's case reports its progress —
accepted (受理) / rejected with the reason (不予受理) / dispatched with the department (派遣)
/ handled with the result (处置) / closed (办结) / evaluated (评价) — as signed events
(`hotline.<status>`) to the subscriptions of hotline clients; and the hotline asks for a
ticket's status and result by its ticket number (`GET /exchange/hotline/tickets/{no}`,
signed like the intake).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from grid.areas.models import Department
from grid.cases.models import Case, CaseEvent
from grid.exchange import events
from server import clock
from server.errors import NotFound

# workflow action → 回单 status
STATUS_OF_ACTION = {"accept": "accepted", "reject": "rejected", "dispatch": "dispatched",
                    "handle": "handled", "close": "closed", "evaluate": "evaluated"}
STATUS_LABELS = {"received": "已接收", "accepted": "已受理", "rejected": "不予受理",
                 "dispatched": "已派遣", "handled": "已处置", "closed": "已办结",
                 "evaluated": "已评价"}


def _department(s: Session, department_id: int | None) -> dict | None:
    if department_id is None:
        return None
    department = s.get(Department, department_id)
    return {"id": department.id, "code": department.code, "name": department.name}


def _detail(s: Session, case: Case, status: str, note: str | None) -> dict:
    """What a status carries beside the ticket: the reason, department, result or rating."""
    if status == "rejected":
        return {"reason": note}
    if status == "dispatched":
        return {"department": _department(s, case.department_id)}
    if status == "handled":
        return {"result": case.result or note}
    if status == "evaluated":
        return {"rating": case.rating, "comment": case.rating_comment}
    return {}


def on_transition(s: Session, kind: str, record: Any, transition: Any, actor: Any,
                  result: Any) -> None:
    """The action engine's listener: a hotline ticket's step becomes its 回单 event."""
    status = STATUS_OF_ACTION.get(transition.action)
    if kind != "case" or status is None or record.channel != "hotline" \
            or not record.external_ref:
        return
    case, type_ = record, f"hotline.{status}"

    def build(place: dict | None) -> events.Event:
        body = {"ticket_no": case.external_ref, "case_code": case.code, "status": status,
                "status_label": STATUS_LABELS[status], "state": case.state,
                "at": clock.now(), **_detail(s, case, status, result.note)}
        return events.Event(type=type_, source="/exchange/hotline",
                            subject=f"tickets/{case.external_ref}", data=body,
                            area_id=case.area_id, ordering_key=f"case:{case.id}")

    events.lazy_enqueue(s, build, type_, case.area_id, kind="hotline")


@dataclass
class Progress:
    status: str
    label: str
    at: datetime
    detail: dict


@dataclass
class TicketStatus:
    ticket_no: str
    case_code: str
    state: str
    status: str
    status_label: str
    department: dict | None
    result: str | None
    rating: int | None
    reported_at: datetime
    closed_at: datetime | None
    progress: list[Progress] = field(default_factory=list)


def ticket_status(s: Session, actor: Any, ticket_no: str) -> TicketStatus:
    """A ticket's status and result, for the hotline that sent it (404 for an unknown
    number). `progress`: its 回单 steps, oldest first."""
    case = s.scalars(sa.select(Case).where(Case.channel == "hotline",
                                           Case.external_ref == ticket_no)).first()
    if case is None:
        raise NotFound("No such ticket")
    steps = s.execute(sa.select(CaseEvent.action, CaseEvent.at, CaseEvent.note)
                      .where(CaseEvent.case_id == case.id,
                             CaseEvent.action.in_(list(STATUS_OF_ACTION)))
                      .order_by(CaseEvent.id)).all()
    progress = []
    for action, at, note in steps:
        status = STATUS_OF_ACTION[action]
        detail = {"reason": note} if status == "rejected" else {}
        progress.append(Progress(status, STATUS_LABELS[status], at, detail))
    status = progress[-1].status if progress else "received"
    return TicketStatus(ticket_no=ticket_no, case_code=case.code, state=case.state,
                        status=status, status_label=STATUS_LABELS[status],
                        department=_department(s, case.department_id), result=case.result,
                        rating=case.rating, reported_at=case.reported_at,
                        closed_at=case.closed_at, progress=progress)

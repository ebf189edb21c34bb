"""The two views of a case (事件的两种视图): its staff see the whole case (CaseView); anyone
else who sees it at all — its reporter, a resident who joined or follows it — sees the
resident view (居民视图: ResidentView, the public timeline, only the public photos).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from grid.areas.models import Department
from grid.cases.categories import suggested_department
from grid.cases.models import Case, CaseEvent, CaseFollower, light_of
from grid.cases.scope import _area_in_scope, _scope_terms, _works_in_areas, get_case
from server.auth.actor import Actor


def sees_whole_case(s: Session, actor: Actor, case: Case) -> bool:
    """THE predicate of the two views of a case: its staff — an actor with case:read in
    whose areas (as staff) or departments the case lies — see the whole case (CaseView:
    reporter, contact, assignee, internal notes, every photo). Anyone else who sees it at
    all (its reporter, a resident who joined or follows it) sees the resident view."""
    if not actor.can("case:read"):
        return False
    if actor.unrestricted:
        return True
    if case.department_id is not None and case.department_id in actor.department_ids:
        return True
    return _works_in_areas(actor) and _area_in_scope(s, actor, case.area_id)


def _staff_case_ids(s: Session, actor: Actor, ids: list[int]) -> set[int]:
    """sees_whole_case for a page of cases, in one statement."""
    if not ids or not actor.can("case:read"):
        return set()
    scope, _ = _scope_terms(actor)
    return set(s.scalars(sa.select(Case.id).where(Case.id.in_(ids),
                                                  scope(Case.area_id, Case.department_id))))


class CaseView:
    """A case as its staff see it: the reporter hidden from handlers when the resident
    asked to stay anonymous, and the actions this actor may take now."""

    resident_view = False

    def __init__(self, case: Case, actor: Actor, actions: list[str] | None = None,
                 duplicates: list | None = None,
                 suggested_department_id: int | None = None) -> None:
        self._case = case
        self.actions = actions
        self.suggested_department_id = suggested_department_id
        self.likely_duplicates = duplicates
        hidden = case.reporter_anonymous and case.reporter_id != actor.user_id \
            and not actor.can("case:accept")
        self.reporter_id = None if hidden else case.reporter_id
        self.contact_name = None if hidden else case.contact_name

    def __getattr__(self, name: str) -> Any:
        return getattr(self._case, name)


# What the resident view shows of a case (schemas.ResidentCaseSchema): no reporter, contact,
# assignee or staff member, no internal notes; the description and typed answers only to
# their author or when the case is public (公开: `Case.public`).
PUBLIC_FIELDS = ("id", "code", "category_id", "state", "area_id", "point", "address", "public",
                 "joined_count", "stage", "due_at", "reported_at", "accepted_at", "dispatched_at",
                 "handled_at", "closed_at", "result", "rating", "version")


class ResidentView:
    """A case in the resident view (居民视图), for whoever is not its staff."""

    resident_view = True

    def __init__(self, case: Case, actor: Actor, relation: str | None,
                 department_name: str | None, actions: list[str] | None = None) -> None:
        for name in PUBLIC_FIELDS:
            setattr(self, name, getattr(case, name))
        own = case.reporter_id is not None and case.reporter_id == actor.user_id
        words = own or case.public
        self.description = case.description if words else None
        self.attributes = case.attributes if words else None
        self.relation = "reporter" if own else relation
        self.department_name = department_name
        self.light = light_of(case)
        self.actions = actions
        self.likely_duplicates: list | None = None
        self.distance_m: float | None = None


def resident_views(s: Session, actor: Actor, cases: list[Case],
                   actions: dict[int, list[str]] | None = None) -> list[ResidentView]:
    """The resident view of each case (two statements, whatever their number)."""
    ids = [c.id for c in cases]
    relations = dict(s.execute(sa.select(CaseFollower.case_id, CaseFollower.kind).where(
        CaseFollower.case_id.in_(ids), CaseFollower.user_id == actor.user_id)).all()) \
        if actor.user_id is not None and ids else {}
    departments = _department_names(s, {c.department_id for c in cases})
    return [ResidentView(c, actor, relations.get(c.id), departments.get(c.department_id),
                         (actions or {}).get(c.id)) for c in cases]


def _department_names(s: Session, ids: set[int | None]) -> dict[int, str]:
    ids = {i for i in ids if i is not None}
    return dict(s.execute(sa.select(Department.id, Department.name)
                          .where(Department.id.in_(ids))).all()) if ids else {}


def present(s: Session, actor: Actor, cases: list[Case]) -> list[CaseView | ResidentView]:
    """A page of cases, each in the view sees_whole_case gives this actor."""
    staff = _staff_case_ids(s, actor, [c.id for c in cases])
    residents = iter(resident_views(s, actor, [c for c in cases if c.id not in staff]))
    return [CaseView(c, actor) if c.id in staff else next(residents) for c in cases]


def shown(s: Session, actor: Actor, case: Case, actions: list[str],
          duplicates: list | None = None) -> CaseView | ResidentView:
    """The case in the view sees_whole_case gives this actor, with `actions`."""
    if not sees_whole_case(s, actor, case):
        resident = resident_views(s, actor, [case], {case.id: actions})[0]
        resident.likely_duplicates = duplicates
        return resident
    suggested = suggested_department(s, case) if "dispatch" in actions else None
    return CaseView(case, actor, actions, duplicates, suggested)


# --- the timeline (流转记录) -------------------------------------------------------------------


def timeline(s: Session, actor: Actor, case_id: int) -> list:
    case = get_case(s, actor, case_id)
    events = list(s.scalars(sa.select(CaseEvent).where(CaseEvent.case_id == case_id)
                            .order_by(CaseEvent.id)))
    if not sees_whole_case(s, actor, case):
        return _resident_timeline(s, actor, case, events)
    if CaseView(case, actor).reporter_id is None and case.reporter_id is not None:
        # the anonymous reporter's own entries do not name them either
        return [{c: getattr(e, c) for c in ("id", "at", "action", "from_state", "to_state",
                                            "note", "data", "photo_ids")}
                | {"actor_id": None if e.actor_id == case.reporter_id else e.actor_id}
                for e in events]
    return events


# Timeline entries whose note a resident reads: the refusal's reason and the result (as
# Open311 publishes them); other notes are the staff's working notes.
PUBLIC_NOTES = ("reject", "handle", "self_handle")
# Entries whose photos a resident sees: the result of the work (处置结果照片); the other
# photos (the report's, the verification's) may show people and places, so a resident sees
# only those they took themselves.
PUBLIC_PHOTOS = ("handle", "self_handle")
DEPARTMENT_ACTIONS = ("dispatch", "sign", "return", "handle", "request_extension",
                      "request_defer", "request_backlog")


@dataclass
class ResidentEvent:
    """A line of the public timeline (schemas.ResidentEventSchema)."""

    id: int
    at: datetime
    action: str
    from_state: str | None
    to_state: str | None
    note: str | None
    department_name: str | None
    photo_ids: list[int]
    resident_view = True


def _resident_timeline(s: Session, actor: Actor, case: Case, events: list[CaseEvent]
                       ) -> list[ResidentEvent]:
    """The public timeline: the steps that moved the case (and joins, merges), by
    department name only, with public notes and photos (PUBLIC_NOTES, PUBLIC_PHOTOS)."""
    departments = _department_names(s, {e.data.get("department_id") for e in events}
                                    | {case.department_id})
    own_words = case.reporter_id == actor.user_id or case.public
    lines, department = [], None
    for e in events:
        if e.action == "dispatch":
            department = e.data.get("department_id")
        if e.action not in ("report", "join", "merged_in") and e.from_state == e.to_state:
            continue  # requests, decisions that left the state, 督办: the office's business
        mine = e.actor_id is not None and e.actor_id == actor.user_id
        public_note = e.action in PUBLIC_NOTES or mine or (e.action == "report" and own_words)
        lines.append(ResidentEvent(
            e.id, e.at, e.action, e.from_state, e.to_state,
            note=e.note if public_note else None,
            department_name=departments.get(department)
            if e.action in DEPARTMENT_ACTIONS else None,
            photo_ids=list(e.photo_ids) if e.action in PUBLIC_PHOTOS or mine else []))
        if e.action == "return":
            department = None
    return lines


# --- photos --------------------------------------------------------------------------------


def case_photo_shown(s: Session, actor: Actor, attachment: Any) -> bool:
    """A case's photo for an actor who may see the case: all of them for its staff; in
    the resident view, the results' photos and the actor's own."""
    if attachment.uploaded_by is not None and attachment.uploaded_by == actor.user_id:
        return True
    case = s.get(Case, attachment.object_id)
    if case is None or sees_whole_case(s, actor, case):
        return case is not None
    return s.scalar(sa.select(sa.exists().where(
        CaseEvent.case_id == case.id, CaseEvent.action.in_(PUBLIC_PHOTOS),
        attachment.id == sa.any_(CaseEvent.photo_ids)))) or False


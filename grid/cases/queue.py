"""The queues: lists of cases under the console's filters, counts per state (badges), a
case's requests, and the hotline caller's contact revealed for a stated purpose.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from geoalchemy2 import Geography
from sqlalchemy.orm import Session

from grid.areas import service as areas
from grid.cases.clock import CLOCKED_STATES
from grid.cases.models import OPEN_STATES, Case, CaseCategory, CaseRequest, light_sql
from grid.cases.resident_view import sees_whole_case
from grid.cases.scope import _scope_terms, get_case, visible
from server import audit, db, pii
from server.auth.actor import Actor
from server.errors import Forbidden, NotFound


def _scope_parts(actor: Actor) -> list[sa.ColumnElement[bool]]:
    """visible() as disjoint parts — the actor's areas and departments, then their own
    cases outside those — for counting: each part is served by one index (an index-only
    scan of (area_id, state) for a street's open cases), whereas the OR of visible() makes
    PostgreSQL test every open case of the district."""
    scope, own = _scope_terms(actor)
    inside = scope(Case.area_id, Case.department_id)
    if own is None:
        return [inside]
    return [inside, sa.and_(own, sa.not_(sa.func.coalesce(inside, False)))]


def conditions(s: Session, actor: Actor, f: dict) -> list[sa.ColumnElement[bool]]:
    """The WHERE clauses of the queue's filters `f` (the scope apart)."""
    cond: list[sa.ColumnElement[bool]] = []
    if f.get("state"):
        cond.append(Case.state.in_(f["state"]))
    if f.get("open"):
        cond.append(Case.state.in_(OPEN_STATES))
    if f.get("category_id") is not None:
        sub = sa.select(CaseCategory.id).where(sa.or_(
            CaseCategory.id == f["category_id"], CaseCategory.parent_id == f["category_id"]))
        cond.append(Case.category_id.in_(sub))
    if f.get("area_id") is not None:
        area = areas.get_area(s, actor, f["area_id"])
        subtree = areas.subtree_ids(area)
        cond.append(Case.area_id.in_(subtree))
    if f.get("department_id") is not None:
        cond.append(Case.department_id == f["department_id"])
    if f.get("light"):
        cond.append(_light_in(f["light"]))
    if f.get("overdue") is not None:
        late = sa.and_(Case.state.in_(CLOCKED_STATES), Case.due_at < sa.func.now())
        cond.append(late if f["overdue"] else sa.not_(late))
    if f.get("escalation") is not None:
        cond.append(Case.escalation == f["escalation"])
    if f.get("assigned_to_me"):
        mine = sa.or_(Case.assignee_id == actor.user_id, sa.and_(
            Case.assignee_id.is_(None), Case.department_id.in_(actor.department_ids or [-1])))
        cond.append(mine)
    if f.get("reported_by_me"):
        cond.append(Case.reporter_id == actor.user_id)
    if f.get("bbox") is not None:
        cond.append(Case.location.intersects(
            sa.func.ST_MakeEnvelope(*f["bbox"], 4326)))
    if f.get("near") is not None:
        lon, lat, radius = f["near"]
        here = sa.cast(sa.func.ST_SetSRID(sa.func.ST_MakePoint(lon, lat), 4326), Geography)
        cond.append(sa.func.ST_DWithin(sa.cast(Case.location, Geography), here, radius))
    if f.get("reported_from"):
        cond.append(Case.reported_at >= f["reported_from"])
    if f.get("reported_to"):
        cond.append(Case.reported_at < f["reported_to"])
    if f.get("q"):
        cond.append(_text_matches(f["q"]))
    return cond


def _light_in(lights: list[str]) -> sa.ColumnElement[bool]:
    """The light is one of `lights` ("none": no clock running, light_sql() is NULL)."""
    light = light_sql()
    named = [x for x in lights if x != "none"]
    # a colour needs a clock, which only open cases run: said in SQL, the open cases'
    # partial index serves the filter instead of every case of the street being tested
    terms = [sa.and_(Case.state.in_(OPEN_STATES), light.in_(named))] if named else []
    if "none" in lights:
        terms.append(Case.due_at.is_(None))
    return sa.or_(*terms)


def _text_matches(q: str) -> sa.ColumnElement[bool]:
    """A case number (编号, by prefix) or words in the description or the address: every
    word must appear in one of them (LIKE's wildcards in the words are taken literally)."""
    words = q.split()
    code = Case.code.startswith(q.strip(), autoescape=True)
    each = [sa.or_(Case.description.contains(w, autoescape=True),
                   sa.func.coalesce(Case.address, "").contains(w, autoescape=True))
            for w in words]
    return sa.or_(code, sa.and_(*each)) if each else code


def _light_rank() -> sa.ColumnElement[int]:
    """0 no clock, 1 green, 2 yellow, 3 red (light_sql() as a number, to sort by)."""
    at = sa.func.coalesce(Case.held_at, sa.func.now())
    return sa.case((Case.due_at.is_(None), 0), (at <= Case.warn_at, 1),
                   (at <= Case.due_at, 2), else_=3)


# a leading "-" reverses; due_at: soonest first, no deadline last either way
SORTS = {"-reported_at": [Case.reported_at.desc()], "reported_at": [Case.reported_at.asc()],
         "due_at": [Case.due_at.asc().nulls_last()], "-due_at": [Case.due_at.desc().nulls_last()],
         "priority": [Case.priority.asc()], "-priority": [Case.priority.desc()],
         "updated_at": [Case.updated_at.asc()], "-updated_at": [Case.updated_at.desc()],
         "light": [_light_rank().asc(), Case.due_at.desc().nulls_last()],
         "-light": [_light_rank().desc(), Case.due_at.asc().nulls_last()]}


def ordered(stmt: sa.Select, sort: str | None) -> sa.Select:
    """The queue's statement in the order `sort` names (the id breaks ties: stable pages)."""
    return stmt.order_by(*SORTS[sort or "-reported_at"], Case.id.desc())


def list_cases(s: Session, actor: Actor, filters: dict, page: Any) -> list[Case]:
    actor.require("case:read")
    where = conditions(s, actor, filters)
    stmt = ordered(sa.select(Case).where(visible(actor), *where), filters.get("sort"))
    counted = sa.union_all(*(sa.select(sa.literal(1)).select_from(Case).where(part, *where)
                             for part in _scope_parts(actor))).subquery("counted")
    return db.paginate(s, stmt, page, count=sa.select(sa.func.count()).select_from(counted))


def count_by_state(s: Session, actor: Actor, filters: dict) -> dict[str, int]:
    """Badges: how many cases per state under the same filters (state filter ignored)."""
    actor.require("case:read")
    where = conditions(s, actor, {k: v for k, v in filters.items() if k != "state"})
    counted = sa.union_all(*(sa.select(Case.state).where(part, *where)
                             for part in _scope_parts(actor))).subquery("counted")
    rows = s.execute(sa.select(counted.c.state, sa.func.count())
                     .group_by(counted.c.state)).all()
    return {state: n for state, n in rows}


def requests_of(s: Session, actor: Actor, case_id: int) -> list[CaseRequest]:
    """The case's requests; in the resident view only the actor's own (the staff's
    requests, reasons and deciders are the office's business)."""
    case = get_case(s, actor, case_id)
    stmt = sa.select(CaseRequest).where(CaseRequest.case_id == case_id)
    if not sees_whole_case(s, actor, case):
        stmt = stmt.where(CaseRequest.requested_by == actor.user_id)
    return list(s.scalars(stmt.order_by(CaseRequest.id)))


def contact_of(s: Session, actor: Actor, case_id: int, purpose: audit.Purpose) -> dict:
    """The hotline caller's phone in clear, for a stated purpose (audited; a refusal too)."""
    try:  # 404 out of scope before 403 (ARCHITECTURE §3)
        case = get_case(s, actor, case_id)
        actor.require("case:accept")
    except (Forbidden, NotFound) as exc:
        raise audit.refused(s, actor, "case_contact_revealed", "case", case_id, purpose,
                            exc) from None
    audit.record(s, actor, "case_contact_revealed", "case", case.id, purpose=purpose)
    return {"contact_name": case.contact_name,
            "contact_phone": pii.decrypt(case.contact_phone_enc, "case.contact_phone")}

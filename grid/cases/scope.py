"""Who sees which case: THE case scope (`visible`, `get_case`) — grids in the actor's areas,
cases of their departments, and cases they reported, joined or follow — and what the public
sees (公开 `published`, never of a private category).
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from grid.areas import service as areas
from grid.cases.models import PRIVATE_CATEGORIES, Case, CaseCategory, CaseFollower
from server.auth import permissions
from server.auth.actor import Actor
from server.errors import NotFound


def visible(actor: Actor) -> sa.ColumnElement[bool]:
    """THE case scope: grids in the actor's areas, cases of their departments, and cases
    they reported, joined or follow."""
    scope, own = _scope_terms(actor)
    in_scope = scope(Case.area_id, Case.department_id)
    return in_scope if own is None else sa.or_(own, in_scope)


def _scope_terms(actor: Actor) -> tuple[Any, sa.ColumnElement[bool] | None]:
    """visible() in two parts: a function of (area_id, department_id) columns — what the
    daily roll-up of the statistics can be filtered by — and the cases that are the
    actor's own (reported, joined, followed), or None when there is nothing to add."""
    # The permission first: `unrestricted` (a platform admin) says *where* an actor acts,
    # never *what* it may do; without case:read there is no case data, admin or not.
    if actor.user_id is None or not actor.can("case:read"):
        return (lambda area_id, department_id: sa.false()), None
    if actor.unrestricted:
        return (lambda area_id, department_id: sa.true()), None

    def scope(area_id: Any, department_id: Any) -> sa.ColumnElement[bool]:
        ors = []
        if _works_in_areas(actor):
            ors.append(areas.in_scope(area_id, actor))
        if actor.department_ids:
            ors.append(department_id.in_(actor.department_ids))
        return sa.or_(*ors) if ors else sa.false()

    # = ANY(ARRAY(…)), not IN (…): an array the planner can look up in the primary key
    # (a bitmap with the reporter's index), where IN would test every candidate row
    mine = sa.select(CaseFollower.case_id).where(CaseFollower.user_id == actor.user_id)
    return scope, sa.or_(Case.reporter_id == actor.user_id,
                         Case.id == sa.any_(sa.func.array(mine.scalar_subquery())))


def _works_in_areas(actor: Actor) -> bool:
    """Staff see the cases of their areas; a resident's membership only says where they
    live (they see their own cases, not their neighbours')."""
    return bool(actor.area_paths) and not permissions.is_resident_only(actor)


def _area_in_scope(s: Session, actor: Actor, area_id: int) -> bool:
    """areas.area_in_scope, without a round trip for a grid whose path this session noted
    (the grid an intake just located): the path against the actor's subtrees."""
    path = s.info.get("grid_paths", {}).get(area_id)
    if path is None:
        return areas.area_in_scope(s, actor, area_id)
    return areas.path_in_scope(actor, path)


def get_case(s: Session, actor: Actor, case_id: int, *, for_update: bool = False) -> Case:
    stmt = sa.select(Case).where(Case.id == case_id, visible(actor))
    case = s.scalars(stmt.with_for_update(of=Case) if for_update else stmt).first()
    if case is None:
        raise NotFound("No such case")
    return case



# --- the public ----------------------------------------------------------------------------


def private_category_ids() -> sa.Select:
    """Ids of the private categories (PRIVATE_CATEGORIES and their 小类)."""
    private = sa.select(CaseCategory.id).where(CaseCategory.code.in_(PRIVATE_CATEGORIES))
    return sa.select(CaseCategory.id).where(sa.or_(CaseCategory.id.in_(private),
                                                   CaseCategory.parent_id.in_(private)))


def published() -> sa.ColumnElement[bool]:
    """Cases the public may see (Open311): public ones (公开: Open311 apps' and grid
    workers' by default, residents' by their choice), never of a private category."""
    return sa.and_(Case.public, Case.category_id.not_in(private_category_ids()))

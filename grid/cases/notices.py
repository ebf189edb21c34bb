"""Notices of a case: the notification texts (zh-CN, en), who is told (recipients: the
street's dispatchers, the department, the grid's workers, followers), and the timeline's
entries (流转记录) written with every change.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from grid.areas.models import Area, DepartmentMember, Membership
from grid.cases.models import STATES, Case, CaseCategory, CaseEvent, CaseFollower
from notifications.service import NoticeTemplate, notify
from server.auth import permissions
from server.auth.actor import Actor
from server.storage import service as storage

# --- notification texts (zh-CN, en) --------------------------------------------------------

NOTICE_TEMPLATES: tuple[NoticeTemplate, ...] = (
    NoticeTemplate("case_new", ("新事件待受理", "{code} {category}：{address}"),
                      ("New case to accept", "{code} {category}: {address}")),
    NoticeTemplate("case_changed", ("事件{action}", "{code} {category}：{state}"),
                      ("Case update: {action_en}", "{code} {category}: {state_en}")),
    NoticeTemplate("case_dispatched", ("新派遣事件", "{code} {category}：{address}，请及时签收"),
                      ("Case dispatched to you", "{code} {category}: {address}")),
    NoticeTemplate("case_request", ("待审批申请", "{code}：{action}，理由：{reason}"),
                      ("Request awaiting approval", "{code}: {action_en}: {reason}")),
    NoticeTemplate("case_escalated", ("事件督办：{card}", "{code} {category} 已超期，请尽快处置"),
                      ("Case escalated: {card_en}", "{code} {category} is overdue"), urgent=True),
    NoticeTemplate("case_joined", ("有居民反映了同一问题", "{code} 共 {joined} 人反映"),
                      ("Someone reported the same problem", "{code}: {joined} reports")),
)


# --- recipients ----------------------------------------------------------------------------


def _members_above_select(grid_path: Any, role: str) -> sa.Select:
    """Users with `role` in an area that contains the grid at `grid_path` (its street,
    district…)."""
    return (sa.select(Membership.user_id).join(Area, Area.id == Membership.area_id)
            .where(Membership.role == role, grid_path.startswith(Area.path)))


def _members_above(s: Session, case: Case, role: str) -> list[int]:
    grid_path = sa.select(Area.path).where(Area.id == case.area_id).scalar_subquery()
    return list(s.scalars(_members_above_select(grid_path, role)))


def _street_dispatchers(s: Session, case: Case) -> list[int]:
    """The dispatchers of the case's street (and of any area above its grid)."""
    return _members_above(s, case, permissions.STREET_DISPATCHER)


def _department_people(s: Session, department_id: int | None, heads_only: bool = False
                       ) -> list[int]:
    if department_id is None:
        return []
    stmt = sa.select(DepartmentMember.user_id).where(
        DepartmentMember.department_id == department_id)
    if heads_only:
        stmt = stmt.where(DepartmentMember.is_head)
    return list(s.scalars(stmt))


def _followers(s: Session, case: Case) -> list[int]:
    return list(s.scalars(sa.select(CaseFollower.user_id)
                          .where(CaseFollower.case_id == case.id)))


def _grid_workers(s: Session, case: Case) -> list[int]:
    return list(s.scalars(sa.select(Membership.user_id).where(
        Membership.area_id == case.area_id,
        Membership.role.in_(permissions.GRID_ROLES))))


def _case_people(s: Session, case: Case) -> list[int]:
    return _followers(s, case) + ([case.reporter_id] if case.reporter_id else [])


def _notice_data(s: Session, case: Case, **extra: Any) -> dict:
    category = s.get(CaseCategory, case.category_id)
    return {"case_id": case.id, "code": case.code, "category": category.name,
            "address": case.address or "", "state": STATES[case.state],
            "state_en": case.state, **extra}


def _tell(s: Session, case: Case, kind: str, recipients: list[int | None], actor: Actor | None,
          **extra: Any) -> None:
    """Notify everyone concerned except the one who acted."""
    skip = actor.user_id if actor is not None else None
    notify(s, [r for r in recipients if r != skip], kind, _notice_data(s, case, **extra),
           collapse_key=f"case:{case.id}")


# --- timeline ------------------------------------------------------------------------------


def _event(s: Session, case: Case, actor: Actor | None, action: str, from_state: str | None,
           note: str | None = None, photo_ids: list[int] | None = None,
           to_state: str | None = None, actor_id: int | None = None, **data: Any) -> None:
    """One timeline row; `actor_id` for an entry of the action engine (server/actions.py
    Entry), which names the actor by id."""
    actor_id = actor.user_id if actor else actor_id
    s.add(CaseEvent(case_id=case.id, actor_id=actor_id, action=action,
                    from_state=from_state, to_state=to_state or case.state, note=note,
                    photo_ids=photo_ids or [], data={k: v for k, v in data.items()
                                                      if v is not None}))


def _link_photos(s: Session, actor: Actor, case: Case, photo_ids: list[int]) -> None:
    for photo_id in photo_ids:
        storage.link(s, actor, photo_id, "case", case.id)

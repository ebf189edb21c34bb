"""The sweep (督办): overdue cases marked and escalated — yellow card, then red card — and
the worker's periodic tasks of cases.
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Session

from grid.areas.models import Area, DepartmentMember, Membership
from grid.cases.clock import CLOCKED_STATES
from grid.cases.models import STATES, Case, CaseCategory, CaseEvent
from notifications.service import notify_each
from server.auth import permissions
from server.clock import now

CARDS = {1: ("黄牌", "yellow card"), 2: ("红牌", "red card")}


def sweep(s: Session, at: datetime | None = None) -> dict:
    """Mark overdue cases and escalate them: past due → yellow card (the street's
    dispatchers and the department's head), past 150 % → red card (also the district's
    leaders). Set-based: one UPDATE per level, then one read of the escalated cases, of the
    people to tell and of the timeline and notification rows each, whatever their number."""
    at = at or now()
    done = {}
    leaders = s.execute(
        sa.select(Membership.user_id, Membership.role, Area.path)
        .join(Area, Area.id == Membership.area_id)
        .where(Membership.role.in_(permissions.COMMAND_ROLES))).all()
    heads: dict[int, list[int]] = {}
    for dept, user in s.execute(sa.select(DepartmentMember.department_id,
                                          DepartmentMember.user_id)
                                .where(DepartmentMember.is_head)):
        heads.setdefault(dept, []).append(user)
    for level, threshold in ((1, Case.due_at), (2, Case.red_at)):
        ids = s.execute(
            sa.update(Case).where(Case.state.in_(CLOCKED_STATES), threshold < at,
                                  Case.escalation < level)
            .values(escalation=level, overdue=True, version=Case.version + 1)
            .returning(Case.id)
            .execution_options(synchronize_session=False)).scalars().all()
        card, card_en = CARDS[level]
        done[card_en] = len(ids)
        if not ids:
            continue
        s.execute(sa.insert(CaseEvent), [
            {"case_id": i, "action": "escalate", "note": card, "data": {"level": level},
             "from_state": None, "to_state": None} for i in ids])
        escalated = s.execute(
            sa.select(Case.id, Case.code, Case.state, Case.address, Case.department_id,
                      CaseCategory.name.label("category"), Area.path)
            .join(CaseCategory, CaseCategory.id == Case.category_id)
            .join(Area, Area.id == Case.area_id).where(Case.id.in_(ids))).all()
        roles = permissions.COMMAND_ROLES if level == 2 else (permissions.STREET_DISPATCHER,)
        messages = []
        for c in escalated:
            targets = [u for u, role, path in leaders if role in roles
                       and c.path.startswith(path)] + heads.get(c.department_id, [])
            data = {"case_id": c.id, "code": c.code, "category": c.category,
                    "address": c.address or "", "state": STATES[c.state], "state_en": c.state,
                    "card": card, "card_en": card_en}
            messages.append((targets, "case_escalated", data, f"case:{c.id}:escalation"))
        notify_each(s, messages)
    return done if any(done.values()) else {}


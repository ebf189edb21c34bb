"""The demo district (`flask seed-demo`) comes with cases in every state of the loop, moved
there through the case service by the demo accounts, and routed categories."""

from __future__ import annotations

import sqlalchemy as sa

from grid import demo
from grid.cases.models import Case, CaseCategory, CaseEvent


def test_demo_cases_cover_the_loop(db_session):
    message = demo.seed(db_session, force=True)
    assert "13 cases" in message
    states = set(db_session.scalars(sa.select(Case.state)))
    assert states >= {"reported", "accepted", "dispatched", "in_progress", "handled",
                      "verified", "closed", "evaluated", "rejected", "returned", "on_hold",
                      "voided"}
    assert db_session.scalar(sa.select(sa.func.count()).select_from(Case)
                             .where(Case.self_handled)) == 1
    unrouted = db_session.scalar(sa.select(sa.func.count()).select_from(CaseCategory).where(
        CaseCategory.parent_id.is_not(None), CaseCategory.default_department_id.is_(None)))
    assert unrouted == 0
    evaluated = db_session.scalars(sa.select(Case).where(Case.state == "evaluated")).one()
    actions = db_session.scalars(sa.select(CaseEvent.action).where(
        CaseEvent.case_id == evaluated.id).order_by(CaseEvent.id)).all()
    assert actions == ["report", "accept", "dispatch", "sign", "handle", "verify", "close",
                       "evaluate"]

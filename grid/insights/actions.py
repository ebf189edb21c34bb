"""The warning's life cycle on the one action engine (server/actions.py):

    raised ──签收 acknowledge──▶ acknowledged
    raised | acknowledged ──解除 resolve──▶ resolved
    raised | acknowledged ──排除 dismiss (reason)──▶ dismissed
    raised | acknowledged ──转为事件 to_case (category)──▶ acknowledged, with its case

The worker raises, escalates and resolves (指标恢复正常) warnings itself
(grid/insights/warnings.py); people act here, with the engine's checks (404 out of scope →
403 → 428 → 412 → 409 with `allowed` → 422), a timeline line, an audit row. 转为事件/督办
files a case through the cases' intake (`report_from_system`, channel other_system, the
warning as its reference: the same warning never makes two cases).
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from grid.areas.models import Area
from grid.cases import intake
from grid.insights import warnings as service
from grid.insights.models import (
    INDICATOR_KINDS,
    LEVEL_LABELS,
    OPEN_WARNING_STATES,
    EarlyWarning,
    WarningEvent,
)
from server import actions
from server.actions import Context, Entry, Lifecycle, Result, Step, Transition, relation
from server.auth.actor import Actor
from server.errors import Invalid, field_errors

ACT = "warning:act"
OPEN = tuple(OPEN_WARNING_STATES)


@relation
def not_yet_a_case(c: Context, warning: EarlyWarning) -> bool:
    """A warning is turned into one case at most."""
    return warning.case_id is None


@relation
def works_in_warning_area(c: Context, warning: EarlyWarning) -> bool:
    """Staff of the warning's area (its scope holds the area), not a department's people
    who see it for their department only."""
    from grid.areas import service as areas

    return c.once(("area", warning.area_id),
                  lambda: areas.area_in_scope(c.s, c.actor, warning.area_id))


TRANSITIONS = (
    Transition("acknowledge", "签收", ("raised",), "acknowledged", ACT,
               works_in_warning_area),
    Transition("resolve", "解除", OPEN, "resolved", ACT, works_in_warning_area),
    Transition("dismiss", "排除", OPEN, "dismissed", ACT, works_in_warning_area,
               requires=("reason",)),
    Transition("to_case", "转为事件", OPEN, "acknowledged", ACT, works_in_warning_area,
               requires=("category_code",), when=not_yet_a_case),
)


def _acknowledge(step: Step) -> Result:
    w = step.record
    w.acknowledged_at, w.acknowledged_by = step.at, step.actor.user_id
    return Result(note=step.data.get("note"))


def _close(step: Step) -> Result:
    w = step.record
    w.closed_at, w.closed_by = step.at, step.actor.user_id
    w.reason = step.data.get("reason") or step.data.get("note")
    return Result(note=w.reason)


def _to_case(step: Step) -> Result:
    w, s = step.record, step.s
    area = s.get(Area, w.area_id)
    grid_code = step.data.get("grid_code") or _grid_of(s, w, area)
    if grid_code is None:
        raise Invalid(field_errors("grid_code", "Name the grid of the case."))
    description = step.data.get("description") or (
        f"{LEVEL_LABELS[w.level]}：{w.indicator.name}（{INDICATOR_KINDS[w.indicator.kind]}），"
        f"{area.name}，数值 {service._figure(w.value)}，阈值 {service._figure(w.threshold)}")
    case, _, _ = intake.report_from_system(
        s, step.actor, {"category_code": step.data["category_code"],
                        "description": description, "grid_code": grid_code,
                        "attributes": dict(step.data.get("attributes") or {})},
        "other_system", f"warning-{w.id}", event_data={"warning_id": w.id},
        audit_data={"warning_id": w.id})
    w.case_id = case.id
    if w.acknowledged_at is None:
        w.acknowledged_at, w.acknowledged_by = step.at, step.actor.user_id
    return Result(note=step.data.get("note") or f"转为事件 {case.code}",
                  facts={"case_id": case.id, "case_code": case.code})


def _grid_of(s: Session, w: EarlyWarning, area: Area) -> str | None:
    """The warning's area when it is a grid, else the grid of its first record."""
    if area.level == "grid":
        return area.code
    if not w.record_ids:
        return None
    from grid.cases.models import Case
    from grid.registry.models import Organisation, Person

    model = {"case": Case, "person": Person, "organisation": Organisation}[w.record_type]
    return s.scalar(sa.select(Area.code).join(model, model.area_id == Area.id)
                    .where(model.id == w.record_ids[0]))


def _load(s: Session, actor: Actor, warning_id: Any) -> EarlyWarning:
    return service.get_warning(s, actor, warning_id, for_update=True)


def _timeline(s: Session, warning: EarlyWarning, entry: Entry) -> None:
    s.add(WarningEvent(warning_id=warning.id, at=entry.at, actor_id=entry.actor_id,
                       action=entry.action, from_state=entry.from_state,
                       to_state=entry.to_state, level=warning.level, value=warning.value,
                       note=entry.note))


LIFECYCLE = Lifecycle(
    kind="warning", noun="warning", transitions=TRANSITIONS,
    handlers={"acknowledge": _acknowledge, "resolve": _close, "dismiss": _close,
              "to_case": _to_case},
    load=_load, timeline=_timeline)


def act(s: Session, actor: Actor, warning_id: int, action: str, data: dict,
        expected: int | None) -> EarlyWarning:
    """Take one action on a warning in the actor's scope."""
    return actions.run(s, actor, LIFECYCLE, warning_id, action, data, expected).record


def allowed(s: Session, actor: Actor, warning: EarlyWarning) -> list[str]:
    return actions.allowed(s, actor, LIFECYCLE, warning)

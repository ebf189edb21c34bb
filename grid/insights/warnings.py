"""Early warnings (预警): evaluating an indicator, keeping one open warning per indicator
and area (and department), telling the area's responsible people, and reading warnings
within the actor's scope with small figures about people suppressed.

One evaluation is one statement (besides the run's row, the resolution, the timeline and
the notices): the measure over every area (grid/insights/indicators.py), each row's thresholds (the
deepest area's override on its path, else the indicator's), its baseline (the mean and
standard deviation of the area's values at the `baseline_runs` runs before the current
window, absent = 0), its level — the higher of the fixed one (value ≥ the level's
threshold) and the statistical one (value ≥ mean + z·sd, sd at least √mean and 1, a
Poisson floor, given at least 3 past runs) — and then, as data-modifying CTEs: the values
kept for the series and the upsert of the warnings (ON CONFLICT on the partial unique index
of open warnings: a worsening raises the level, never a second warning, whoever evaluates
at the same moment), which stamps `seen_at`; then one UPDATE resolves the open warnings
not seen breaching (their area no longer breaches).
A warning dismissed within the window is not raised again unless the level is higher.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB, array, insert
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from grid.areas import service as areas
from grid.areas.models import Area, DepartmentMember, Membership
from grid.insights.indicators import KINDS
from grid.insights.models import (
    LEVEL_LABELS,
    LEVELS,
    OPEN_WARNING_STATES,
    EarlyWarning,
    Indicator,
    IndicatorRun,
    IndicatorThreshold,
    IndicatorValue,
    WarningEvent,
)
from notifications.service import NoticeTemplate, notify_each
from server import clock
from server.auth.actor import Actor
from server.auth.permissions import WARNING_RECIPIENTS
from server.errors import NotFound

log = logging.getLogger("grid.insights")

MIN_PEOPLE = 5  # aggregates over fewer people are suppressed for roles without REGISTER
REGISTER = "registry:read"
MIN_BASELINE_RUNS = 3
# Called for each warning raised or escalated, in its transaction, with (session, warning id,
# area id, what a subscriber may see): grid/exchange's `warning.raised` event, wired there.
RAISED_LISTENERS: list[Callable[[Session, int, int | None, dict], Any]] = []

NOTICE_TEMPLATES: tuple[NoticeTemplate, ...] = (
    NoticeTemplate("warning_raised", ("{level_label}：{indicator}",
                                      "{area}：{value}（阈值 {threshold}）"),
                   ("{level} warning: {indicator}", "{area}: {value} (threshold {threshold})")),
    NoticeTemplate("warning_escalated", ("预警升级为{level_label}：{indicator}",
                                         "{area}：{value}（阈值 {threshold}）"),
                   ("Warning up to {level}: {indicator}",
                    "{area}: {value} (threshold {threshold})")),
    NoticeTemplate("warning_red", ("红色预警：{indicator}",
                                   "{area}：{value}（阈值 {threshold}），请立即处置"),
                   ("Red warning: {indicator}", "{area}: {value} (threshold {threshold})"),
                   urgent=True),
)


def _rank(level: Any) -> sa.ColumnElement:
    return sa.func.coalesce(sa.func.array_position(array(LEVELS), level), 0)


def _same(a: Any, b: Any) -> sa.ColumnElement[bool]:
    """a IS NOT DISTINCT FROM b for department ids (None: an area's own measure), as an
    equality the planner can hash: IS NOT DISTINCT FROM cannot, and a nested loop of two
    10,000-row sets took seconds."""
    return sa.func.coalesce(a, 0) == sa.func.coalesce(b, 0)


def _level_rank(value: Any, thresholds: Any, offset: Any = 0.0, scale: Any = 1.0
                ) -> sa.ColumnElement:
    """3, 2, 1 when value ≥ offset + scale × the red, orange, yellow threshold; else 0."""
    whens = [(value >= offset + scale * sa.cast(thresholds[level].astext, sa.Float), rank)
             for rank, level in reversed(list(enumerate(LEVELS, 1)))]
    return sa.case(*whens, else_=0)


def _threshold(thresholds: Any, rank: Any) -> sa.ColumnElement:
    level = array(LEVELS)[rank]
    return sa.cast(thresholds[level].astext, sa.Float)


def _scored(indicator: Indicator, measure: sa.CTE, now: datetime) -> sa.CTE:
    """The measured rows with their level (0: no breach), threshold, basis and baseline."""
    m = measure.c
    past = (sa.select(IndicatorRun.id).where(
        IndicatorRun.indicator_id == indicator.id,
        IndicatorRun.at <= now - timedelta(hours=indicator.window_hours))
        .order_by(IndicatorRun.at.desc()).limit(indicator.baseline_runs).cte("past"))
    n = sa.select(sa.cast(sa.func.count(), sa.Float)).select_from(past).scalar_subquery()
    base = (sa.select(IndicatorValue.area_id, IndicatorValue.department_id,
                      sa.func.sum(IndicatorValue.value).label("s1"),
                      sa.func.sum(IndicatorValue.value * IndicatorValue.value).label("s2"))
            .where(IndicatorValue.run_id.in_(sa.select(past.c.id)))
            .group_by(IndicatorValue.area_id, IndicatorValue.department_id).cte("base"))
    chain = areas.path_ids(Area.path)
    override = (sa.select(IndicatorThreshold.thresholds, IndicatorThreshold.statistical)
                .where(IndicatorThreshold.indicator_id == indicator.id,
                       IndicatorThreshold.area_id == sa.any_(chain))
                .order_by(sa.func.array_position(chain, IndicatorThreshold.area_id).desc())
                .limit(1).lateral("ov"))
    mean = sa.func.coalesce(base.c.s1, 0.0) / sa.func.nullif(n, 0)
    sd = sa.func.sqrt(sa.func.greatest(sa.func.coalesce(base.c.s2, 0.0) / sa.func.nullif(n, 0)
                                       - mean * mean, 0.0))
    spread = sa.func.greatest(sd, sa.func.sqrt(mean), 1.0)
    fixed = sa.func.coalesce(override.c.thresholds, sa.cast(indicator.thresholds, JSONB))
    stat = sa.func.coalesce(override.c.statistical, sa.cast(indicator.statistical, JSONB))
    by_stat = sa.case((n >= MIN_BASELINE_RUNS, _level_rank(m.value, stat, mean, spread)),
                      else_=0)
    inner = (sa.select(m.area_id, m.department_id, m.value, m.record_ids, m.people,
                       _level_rank(m.value, fixed).label("by_fixed"), by_stat.label("by_stat"),
                       mean.label("mean"), spread.label("spread"), fixed.label("fixed"),
                       stat.label("stat"))
             .select_from(measure).join(Area, Area.id == m.area_id)
             .outerjoin(override, sa.true())
             .outerjoin(base, sa.and_(base.c.area_id == m.area_id,
                                      _same(base.c.department_id, m.department_id)))
             ).subquery("ranked")
    r = inner.c
    statistical = r.by_stat > r.by_fixed
    rank = sa.func.greatest(r.by_fixed, r.by_stat)
    return (sa.select(r.area_id, r.department_id, r.value, r.record_ids, r.people,
                      rank.label("rank"), array(LEVELS)[rank].label("level"),
                      sa.case((statistical, "statistical"), else_="fixed").label("basis"),
                      sa.case((statistical, r.mean + r.spread * _threshold(r.stat, rank)),
                              else_=_threshold(r.fixed, rank)).label("threshold"),
                      sa.case((statistical, r.mean), else_=None).label("baseline"))
            .where(rank > 0).cte("breached"))


def _upsert(indicator: Indicator, breached: sa.CTE, now: datetime) -> sa.CTE:
    W, b = EarlyWarning, breached.c
    # the few recent dismissals of this indicator, read once (not a probe per breach)
    recent = (sa.select(W.area_id, sa.func.coalesce(W.department_id, 0).label("dep"),
                        sa.func.max(_rank(W.level)).label("rank"))
              .where(W.indicator_id == indicator.id, W.state == "dismissed",
                     W.closed_at > now - timedelta(hours=indicator.window_hours))
              .group_by(W.area_id, W.department_id).cte("dismissed")
              .prefix_with("MATERIALIZED"))
    dismissed = sa.select(recent.c.rank).where(
        recent.c.area_id == b.area_id, recent.c.dep == sa.func.coalesce(b.department_id, 0),
        recent.c.rank >= b.rank)
    rows = sa.select(
        sa.literal(indicator.id), b.area_id, b.department_id, sa.literal("raised"), b.level,
        b.value, b.threshold, b.baseline, b.basis,
        sa.literal(KINDS[indicator.kind].record_type), b.record_ids, b.people,
        sa.literal(now), sa.literal(now), sa.literal(now), sa.literal(now),
        sa.literal(now), sa.literal(1)).where(~sa.exists(dismissed))
    stmt = insert(W).from_select(
        ["indicator_id", "area_id", "department_id", "state", "level", "value", "threshold",
         "baseline", "basis", "record_type", "record_ids", "people", "raised_at", "level_at",
         "seen_at", "created_at", "updated_at", "version"], rows)
    new = stmt.excluded
    worse = _rank(new.level) > _rank(W.level)
    return stmt.on_conflict_do_update(
        index_elements=[W.indicator_id, W.area_id, sa.text("coalesce(department_id, 0)")],
        index_where=W.state.in_(OPEN_WARNING_STATES),
        set_={"level": sa.case((worse, new.level), else_=W.level),
              "threshold": sa.case((worse, new.threshold), else_=W.threshold),
              "baseline": sa.case((worse, new.baseline), else_=W.baseline),
              "basis": sa.case((worse, new.basis), else_=W.basis),
              "level_at": sa.case((worse, now), else_=W.level_at),
              "version": sa.case((worse, W.version + 1), else_=W.version),
              "value": new.value, "record_ids": new.record_ids, "people": new.people,
              "seen_at": now, "updated_at": now},
    ).returning(W.id, W.area_id, W.department_id, W.level, W.value, W.threshold, W.state,
                sa.case((W.raised_at == now, "raised"), (W.level_at == now, "escalated"),
                        else_="kept").label("change")).cte("up")


def _resolve(s: Session, indicator: Indicator, now: datetime) -> list:
    """Open warnings of the indicator the evaluation did not see breaching (the upsert
    stamps `seen_at` on every breach): resolved (指标恢复正常). No join: the index of open
    warnings and a comparison."""
    W = EarlyWarning
    return s.execute(
        sa.update(W).where(W.indicator_id == indicator.id, W.state.in_(OPEN_WARNING_STATES),
                           W.seen_at < now)
        .values(state="resolved", closed_at=now, reason="指标恢复正常", updated_at=now,
                version=W.version + 1)
        .returning(W.id, W.area_id, W.department_id, W.level, W.value, W.threshold,
                   W.state, sa.literal("resolved").label("change"))).all()


def _measure(s: Session, indicator: Indicator, now: datetime) -> sa.Select:
    """The kind's measure, within the indicator's area (a district's subtree) if it has
    one."""
    raw = KINDS[indicator.kind].measure(s, indicator, now)
    if indicator.area_id is None:
        return raw
    root = s.scalar(sa.select(Area.path).where(Area.id == indicator.area_id))
    r = raw.subquery("raw")
    return sa.select(r).join(Area, Area.id == r.c.area_id).where(
        Area.path.startswith(root, autoescape=True))


def evaluation_statement(s: Session, indicator: Indicator, run_id: int, now: datetime
                         ) -> sa.Select:
    """The one statement of an evaluation (module docstring): its rows are the warnings it
    raised, escalated or kept."""
    measure = _measure(s, indicator, now).cte("m").prefix_with("MATERIALIZED")
    m = measure.c
    kept = sa.insert(IndicatorValue).from_select(
        ["run_id", "indicator_id", "at", "area_id", "department_id", "value"],
        sa.select(sa.literal(run_id), sa.literal(indicator.id), sa.literal(now), m.area_id,
                  m.department_id, m.value).where(m.value != 0)
    ).returning(IndicatorValue.id).cte("kept")
    breached = _scored(indicator, measure, now)
    up = _upsert(indicator, breached, now)
    return sa.select(up).add_cte(kept)


def evaluate(s: Session, indicator: Indicator, now: datetime | None = None) -> dict:
    """Evaluate one indicator now: values, warnings raised/escalated/resolved, their
    timeline and notices. Returns the counts."""
    now = now or clock.now()
    started = time.perf_counter()
    run = IndicatorRun(indicator_id=indicator.id, at=now, measured=0, breaches=0,
                       duration_ms=0.0)
    s.add(run)
    s.flush()
    stmt = evaluation_statement(s, indicator, run.id, now)
    rows = s.execute(stmt).all() + _resolve(s, indicator, now)
    measured = s.scalar(sa.select(sa.func.count()).where(IndicatorValue.run_id == run.id))
    changes = [r for r in rows if r.change != "kept"]
    _record_changes(s, indicator, changes, now)
    run.measured, run.breaches = measured or 0, sum(1 for r in rows if r.change != "resolved")
    run.duration_ms = round((time.perf_counter() - started) * 1000, 1)
    _mark(s, indicator, last_run_at=now)
    s.flush()
    counts = {c: sum(1 for r in changes if r.change == c)
              for c in ("raised", "escalated", "resolved")}
    return {"indicator": indicator.code, "measured": run.measured, "breaches": run.breaches,
            **counts}


def _mark(s: Session, indicator: Indicator, **times: datetime) -> None:
    """The worker's bookkeeping on an indicator, without moving its version: an expert
    tuning it (If-Match) is not made stale by every evaluation."""
    s.execute(sa.update(Indicator).where(Indicator.id == indicator.id).values(**times))
    for name, value in times.items():
        set_committed_value(indicator, name, value)


def _record_changes(s: Session, indicator: Indicator, changes: list, now: datetime) -> None:
    """The timeline lines of the warnings the evaluation changed, and the notices."""
    if not changes:
        return
    s.execute(sa.insert(WarningEvent), [
        {"warning_id": r.id, "at": now, "actor_id": None, "action": r.change,
         "from_state": None if r.change == "raised" else "raised" if r.change == "escalated"
         else None, "to_state": "resolved" if r.change == "resolved" else "raised",
         "level": r.level, "value": r.value,
         "note": "指标恢复正常" if r.change == "resolved" else None} for r in changes])
    told = [r for r in changes if r.change in ("raised", "escalated")]
    if told:
        _notify(s, indicator, told)
    for r in told:
        for listener in RAISED_LISTENERS:
            listener(s, r.id, r.area_id, {
                "indicator": {"id": indicator.id, "code": indicator.code, "name": indicator.name},
                "change": r.change, "level": r.level, "value": r.value,
                "threshold": r.threshold})


def _notify(s: Session, indicator: Indicator, rows: list) -> None:
    """The responsible people of each warning's area (its members in WARNING_RECIPIENTS;
    a red one also those of the area above, urgently) and of its department (the heads)."""
    area_ids = {r.area_id for r in rows}
    info = {a.id: a for a in s.execute(sa.select(Area.id, Area.name, Area.parent_id)
                                       .where(Area.id.in_(area_ids)))}
    wanted = area_ids | {a.parent_id for a in info.values() if a.parent_id}
    members: dict[int, list[int]] = {}
    for area_id, user_id in s.execute(
            sa.select(Membership.area_id, Membership.user_id)
            .where(Membership.area_id.in_(wanted), Membership.role.in_(WARNING_RECIPIENTS))):
        members.setdefault(area_id, []).append(user_id)
    heads: dict[int, list[int]] = {}
    departments = {r.department_id for r in rows if r.department_id}
    for dep, user_id in s.execute(sa.select(DepartmentMember.department_id,
                                            DepartmentMember.user_id)
                                  .where(DepartmentMember.department_id.in_(departments),
                                         DepartmentMember.is_head)) if departments else ():
        heads.setdefault(dep, []).append(user_id)
    messages = []
    for r in rows:
        area = info[r.area_id]
        to = list(members.get(r.area_id, [])) + heads.get(r.department_id, [])
        if r.level == "red":
            to += members.get(area.parent_id, [])
        kind = "warning_red" if r.level == "red" else (
            "warning_escalated" if r.change == "escalated" else "warning_raised")
        data = {"warning_id": r.id, "indicator": indicator.name, "area": area.name,
                "level": r.level, "level_label": LEVEL_LABELS[r.level],
                "value": _figure(r.value), "threshold": _figure(r.threshold)}
        messages.append((to, kind, data, f"warning:{r.id}"))
    notify_each(s, messages)


def _figure(value: float | None) -> str:
    if value is None:
        return "—"
    return str(int(value)) if float(value).is_integer() else f"{value:.2f}"


# --- the worker ------------------------------------------------------------------------------


def evaluate_due(s: Session, budget_s: float = 50.0) -> dict:
    """The worker's task: evaluate the active indicators whose time has come, each claimed
    FOR UPDATE SKIP LOCKED (two workers never evaluate the same one at once) and in a
    savepoint of its own (a failing indicator is logged and tried at its next turn)."""
    started, done = time.monotonic(), {}
    while time.monotonic() - started < budget_s:
        now = clock.now()
        indicator = s.scalars(
            sa.select(Indicator).where(Indicator.active, sa.or_(
                Indicator.next_run_at.is_(None), Indicator.next_run_at <= now))
            .order_by(Indicator.next_run_at.nulls_first(), Indicator.id).limit(1)
            .with_for_update(skip_locked=True)).first()
        if indicator is None:
            break
        _mark(s, indicator, next_run_at=now + timedelta(minutes=indicator.every_minutes))
        try:
            with s.begin_nested():
                result = evaluate(s, indicator, now)
            done[indicator.code] = {k: v for k, v in result.items() if k != "indicator"}
        except Exception:
            log.exception("indicator failed", extra={"indicator": indicator.code})
            s.flush()  # the next run time stays: tried again at its next turn
    return done


# --- reading ---------------------------------------------------------------------------------


def scoped(actor: Actor) -> sa.Select:
    """Warnings of the actor's areas (and of their departments): the one way reads start."""
    actor.require("warning:read")
    W = EarlyWarning
    cond = [areas.in_scope(W.area_id, actor)]
    if actor.department_ids:
        cond.append(W.department_id.in_(actor.department_ids))
    return sa.select(W).where(sa.or_(*cond))


def get_warning(s: Session, actor: Actor, warning_id: int, *, for_update: bool = False
                ) -> EarlyWarning:
    stmt = scoped(actor).where(EarlyWarning.id == warning_id).options(
        sa.orm.selectinload(EarlyWarning.indicator), sa.orm.selectinload(EarlyWarning.area))
    warning = s.scalars(stmt.with_for_update(of=EarlyWarning) if for_update else stmt).first()
    if warning is None:
        raise NotFound("No such warning")
    return warning


def suppressed(actor: Actor, warning: Any) -> bool:
    """An aggregate over fewer than MIN_PEOPLE people, for an actor without register
    access: its figure and records are not shown."""
    return (warning.people is not None and warning.people < MIN_PEOPLE
            and not actor.can(REGISTER))


def _filtered(actor: Actor, filters: dict) -> sa.Select:
    W = EarlyWarning
    stmt = scoped(actor)
    if filters.get("open"):
        stmt = stmt.where(W.state.in_(OPEN_WARNING_STATES))
    for key in ("state", "level", "indicator_id", "department_id"):
        if filters.get(key) is not None:
            stmt = stmt.where(getattr(W, key) == filters[key])
    if filters.get("kind"):
        stmt = stmt.where(W.indicator_id.in_(sa.select(Indicator.id).where(
            Indicator.kind == filters["kind"])))
    if filters.get("area_id") is not None:
        stmt = stmt.where(W.area_id.in_(sa.select(Area.id).where(Area.path.startswith(
            sa.select(Area.path).where(Area.id == filters["area_id"]).scalar_subquery()))))
    if filters.get("raised_from") is not None:
        stmt = stmt.where(W.raised_at >= filters["raised_from"])
    if filters.get("raised_to") is not None:
        stmt = stmt.where(W.raised_at < filters["raised_to"])
    if filters.get("closed_from") is not None:
        stmt = stmt.where(W.closed_at >= filters["closed_from"])
    if filters.get("closed_to") is not None:
        stmt = stmt.where(W.closed_at < filters["closed_to"])
    return stmt


def list_warnings(s: Session, actor: Actor, filters: dict, page: Any) -> list[EarlyWarning]:
    """Warnings in scope under the filters, the most severe open ones first."""
    from server import db

    W = EarlyWarning
    stmt = _filtered(actor, filters).order_by(
        W.state.not_in(OPEN_WARNING_STATES), _rank(W.level).desc(), W.level_at.desc(),
        W.id.desc())
    return db.paginate(s, stmt.options(sa.orm.selectinload(W.indicator),
                                        sa.orm.selectinload(W.area)), page)


def warning_counts(s: Session, actor: Actor, filters: dict) -> dict:
    """How many warnings under the filters, by state and by level (one statement)."""
    q = _filtered(actor, filters).subquery("w")
    rows = s.execute(sa.select(q.c.state, q.c.level, sa.func.count())
                     .group_by(q.c.state, q.c.level)).all()
    by_state = {state: 0 for state in ("raised", "acknowledged", "resolved", "dismissed")}
    by_level = {level: 0 for level in LEVELS}
    open_by_level = dict(by_level)
    for state, level, n in rows:
        by_state[state] += n
        by_level[level] += n
        if state in OPEN_WARNING_STATES:
            open_by_level[level] += n
    return {"total": sum(by_state.values()), "by_state": by_state, "by_level": by_level,
            "open_by_level": open_by_level}


def timeline(s: Session, warning: EarlyWarning) -> list[WarningEvent]:
    return list(s.scalars(sa.select(WarningEvent).where(WarningEvent.warning_id == warning.id)
                          .order_by(WarningEvent.id)))


def records(s: Session, actor: Actor, warning: EarlyWarning) -> list[dict]:
    """The records behind a warning that the actor may see (drill-down follows the normal
    scope: cases by the case scope, persons and organisations by the register's; persons
    as the register shows them to the actor, masked), none when suppressed."""
    if suppressed(actor, warning) or not warning.record_ids:
        return []
    ids = list(warning.record_ids)
    if warning.record_type == "case":
        from grid.cases.models import Case
        from grid.cases.scope import visible

        if not actor.can("case:read"):
            return []
        rows = s.execute(sa.select(Case.id, Case.code, Case.state, Case.reported_at)
                         .where(Case.id.in_(ids), visible(actor))).all()
        shown = {r.id: {"type": "case", "id": r.id, "code": r.code, "state": r.state,
                        "at": r.reported_at} for r in rows}
    else:
        from grid.registry.models import Organisation, Person

        if not actor.can(REGISTER):
            return []
        model = Person if warning.record_type == "person" else Organisation
        rows = s.execute(sa.select(model.id, model.name, model.area_id)
                         .where(model.id.in_(ids), areas.in_scope(model.area_id, actor))).all()
        shown = {r.id: {"type": warning.record_type, "id": r.id, "name": r.name,
                        "area_id": r.area_id} for r in rows}
    return [shown[i] for i in ids if i in shown]


def shown(s: Session, actor: Actor, warnings: list[EarlyWarning],
          actions: Any = None) -> list[dict]:
    """Warnings as the actor may see them: names, labels, the figure unless suppressed,
    and (given `actions(warning)`) what the actor may do now."""
    from grid.insights.models import WARNING_STATES

    out = []
    for w in warnings:
        hidden = suppressed(actor, w)
        out.append({
            "id": w.id, "version": w.version, "kind": w.indicator.kind,
            "indicator": {"id": w.indicator.id, "code": w.indicator.code,
                          "name": w.indicator.name},
            "area": {"id": w.area.id, "code": w.area.code, "name": w.area.name},
            "department_id": w.department_id, "state": w.state,
            "state_label": WARNING_STATES[w.state], "level": w.level,
            "level_label": LEVEL_LABELS[w.level],
            "value": None if hidden else w.value, "threshold": w.threshold,
            "baseline": None if hidden else w.baseline, "basis": w.basis,
            "record_type": w.record_type,
            "record_count": None if hidden else len(w.record_ids or ()),
            "suppressed": hidden, "raised_at": w.raised_at, "level_at": w.level_at,
            "seen_at": w.seen_at, "acknowledged_at": w.acknowledged_at,
            "closed_at": w.closed_at, "reason": w.reason, "case_id": w.case_id,
            "actions": actions(w) if actions else []})
    return out

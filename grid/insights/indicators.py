"""Indicators (城市运行体征指标): what each kind measures, as one SQL statement over every
area of the indicator's level at once (never a query per grid), and an indicator's series.

A measure is a SELECT of (area_id, department_id, value, record_ids, people): one row per
area (and department) where the value is not zero, with the records behind it (case,
person or organisation ids, the most recent first, at most MAX_RECORDS) and, for measures
of people, how many people are behind the figure (under 5 it is suppressed for roles
without register access, grid/insights/warnings.py).

Kinds and their parameters (`Indicator.params`):
- new_cases 新增案件数: cases reported in the window, of `category_codes` (大类 or 小类;
  all when absent), per area of the level.
- overdue_rate 部门超期率: per department, % of its open cases past due (超期), when it
  has at least `min_cases` (5) open ones; the department's area is its service area.
- repeated_place 同一地点重复投诉: cases (of `category_codes`) reported in the window
  clustered in space with DBSCAN (ST_ClusterDBSCAN, eps `radius_m` (100 m), at least
  `min_count` (3) cases): "N cases in M days within R metres". The value of an area is
  its largest cluster's size; its records are that cluster's cases. Merged cases count
  (a merge is a repeated report).
- repeated_caller 同一来电人重复投诉: cases of the same caller (the HMAC blind index of the
  contact phone, never the phone) in the window, at least `min_count` (3); the caller
  belongs to the area of their latest case. The value is the most calls of one caller;
  people = the callers over the count.
- unvisited_care 关爱对象超期未走访: persons of care groups `tags` (elderly_alone) whose
  visit is overdue by more than `grace_days` (0) under the visit policies (grid.visits).
- open_red_cases 红牌案件: open cases with a red card (红牌, escalation 2).
- labour_risk 劳资纠纷风险: organisations' monthly risk score (grid.insights.labour); the
  value of an area is its highest score, the records its organisations scoring > 0.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import distinct_on
from sqlalchemy.orm import Session, aliased

from grid.areas import service as areas
from grid.areas.models import Area, Department
from grid.cases.models import OPEN_STATES, Case, CaseCategory
from grid.insights.models import Indicator, IndicatorRun, IndicatorThreshold, IndicatorValue
from grid.registry.models import Person, PersonTag
from grid.visits import service as visits
from grid.visits.models import Visit
from server import audit, clock
from server.auth.actor import Actor
from server.errors import Conflict, Invalid, NotFound, check_version, field_errors

MAX_RECORDS = 200
DEFAULTS = {"min_cases": 5, "radius_m": 100.0, "min_count": 3, "tags": ["elderly_alone"],
            "grace_days": 0}


@dataclass(frozen=True)
class Kind:
    """A kind of indicator: its measure, the records behind it, whether it counts people,
    and whether it is measured per department (else per area of a level)."""

    measure: Callable[[Session, Indicator, datetime], sa.Select]
    record_type: str
    counts_people: bool = False
    per_department: bool = False
    value_is_people: bool = False  # the value counts people (else: one person's calls)


def param(indicator: Indicator, name: str) -> Any:
    return (indicator.params or {}).get(name, DEFAULTS.get(name))


def _records(ids: Any, order: Any) -> sa.ColumnElement:
    """The ids behind a figure, newest first, at most MAX_RECORDS."""
    return sa.func.array_agg(sa.dialects.postgresql.aggregate_order_by(ids, order.desc())
                             )[1:MAX_RECORDS]


def level_map(level: str) -> sa.CTE:
    """(grid_id → area_id): every area and its ancestor at `level` (itself when at it), in
    one statement: the ids on each path looked up in the primary key."""
    g, anc = aliased(Area, name="g"), aliased(Area, name="anc")
    return (sa.select(g.id.label("grid_id"), anc.id.label("area_id"))
            .join(anc, sa.and_(anc.id == sa.any_(areas.path_ids(g.path)), anc.level == level))
            .cte(f"at_{level}"))


def _category_ids(codes: list[str] | None) -> sa.Select | None:
    """Ids of the categories named (a 大类 stands for its 小类 too); None: all."""
    if not codes:
        return None
    parents = sa.select(CaseCategory.id).where(CaseCategory.code.in_(codes))
    return sa.select(CaseCategory.id).where(sa.or_(CaseCategory.code.in_(codes),
                                                   CaseCategory.parent_id.in_(parents)))


def _window(indicator: Indicator, now: datetime) -> datetime:
    return now - timedelta(hours=indicator.window_hours)


def _no_people() -> sa.ColumnElement:
    return sa.cast(sa.null(), sa.Integer).label("people")


def _no_department() -> sa.ColumnElement:
    return sa.cast(sa.null(), sa.BigInteger).label("department_id")


# --- the kinds -------------------------------------------------------------------------------


def new_cases(s: Session, indicator: Indicator, now: datetime) -> sa.Select:
    m = level_map(indicator.area_level)
    cond = [Case.reported_at >= _window(indicator, now), Case.reported_at < now,
            Case.state != "merged"]
    cats = _category_ids(param(indicator, "category_codes"))
    if cats is not None:
        cond.append(Case.category_id.in_(cats))
    return (sa.select(m.c.area_id, _no_department(),
                      sa.cast(sa.func.count(), sa.Float).label("value"),
                      _records(Case.id, Case.reported_at).label("record_ids"), _no_people())
            .join(m, m.c.grid_id == Case.area_id).where(*cond).group_by(m.c.area_id))


def overdue_rate(s: Session, indicator: Indicator, now: datetime) -> sa.Select:
    overdue = sa.func.count().filter(Case.overdue)
    return (sa.select(Department.service_area_id.label("area_id"),
                      Case.department_id.label("department_id"),
                      sa.func.round(sa.cast(100.0 * overdue / sa.func.count(), sa.Numeric), 2)
                      .cast(sa.Float).label("value"),
                      sa.func.coalesce(
                          sa.func.array_agg(sa.dialects.postgresql.aggregate_order_by(
                              Case.id, Case.due_at)).filter(Case.overdue)[1:MAX_RECORDS],
                          sa.text("'{}'::bigint[]")).label("record_ids"), _no_people())
            .join(Department, Department.id == Case.department_id)
            .where(Case.state.in_(OPEN_STATES))
            .group_by(Case.department_id, Department.service_area_id)
            .having(sa.func.count() >= int(param(indicator, "min_cases")), overdue > 0))


def _metres(location: Any) -> sa.ColumnElement:
    """A point in local metres (an equirectangular projection at the point's own
    latitude): distances between points a few hundred metres apart are right to well under
    1 %, anywhere, without a UTM zone per city."""
    lat = sa.func.ST_Y(location)
    return sa.func.ST_MakePoint(sa.func.ST_X(location) * 111_320.0 * sa.func.cos(
        sa.func.radians(lat)), lat * 110_574.0)


def repeated_place(s: Session, indicator: Indicator, now: datetime) -> sa.Select:
    m = level_map(indicator.area_level)
    n, radius = int(param(indicator, "min_count")), float(param(indicator, "radius_m"))
    cond = [Case.reported_at >= _window(indicator, now), Case.reported_at < now,
            Case.location.is_not(None)]
    cats = _category_ids(param(indicator, "category_codes"))
    if cats is not None:
        cond.append(Case.category_id.in_(cats))
    recent = (sa.select(Case.id, Case.area_id, Case.reported_at,
                        sa.func.ST_ClusterDBSCAN(_metres(Case.location), radius, n)
                        .over().label("cluster"))
              .where(*cond).cte("recent"))
    r = recent.c
    clusters = (sa.select(r.cluster, sa.func.count().label("n"),
                          sa.func.mode().within_group(m.c.area_id).label("area_id"),
                          _records(r.id, r.reported_at).label("record_ids"))
                .join(m, m.c.grid_id == r.area_id)
                .where(r.cluster.is_not(None)).group_by(r.cluster)
                .having(sa.func.count() >= n).cte("clusters"))
    c = clusters.c
    return (sa.select(c.area_id, _no_department(), sa.cast(c.n, sa.Float).label("value"),
                      c.record_ids, _no_people())
            .ext(distinct_on(c.area_id)).order_by(c.area_id, c.n.desc(), c.cluster))


def repeated_caller(s: Session, indicator: Indicator, now: datetime) -> sa.Select:
    m = level_map(indicator.area_level)
    n = int(param(indicator, "min_count"))
    latest_grid = sa.func.array_agg(sa.dialects.postgresql.aggregate_order_by(
        Case.area_id, Case.reported_at.desc()))[1]
    callers = (sa.select(Case.contact_phone_bidx.label("caller"),
                         sa.func.count().label("n"), latest_grid.label("grid_id"),
                         _records(Case.id, Case.reported_at).label("record_ids"))
               .where(Case.contact_phone_bidx.is_not(None),
                      Case.reported_at >= _window(indicator, now), Case.reported_at < now)
               .group_by(Case.contact_phone_bidx).having(sa.func.count() >= n)
               .cte("callers"))
    c = callers.c
    ranked = (sa.select(m.c.area_id, c.n, c.record_ids,
                        sa.func.count().over(partition_by=m.c.area_id).label("people"),
                        sa.func.row_number().over(partition_by=m.c.area_id,
                                                  order_by=(c.n.desc(), c.caller))
                        .label("rank"))
              .join(m, m.c.grid_id == c.grid_id).subquery("ranked"))
    k = ranked.c
    return (sa.select(k.area_id, _no_department(), sa.cast(k.n, sa.Float).label("value"),
                      k.record_ids, k.people)
            .where(k.rank == 1))


def unvisited_care(s: Session, indicator: Indicator, now: datetime) -> sa.Select:
    """Care-group persons past their visit by more than grace_days, on the visit policies'
    rule (grid.visits.service.due_visits): due on the tag's start if never visited, else
    on the local day of the last visit (to the person or their household) + interval."""
    m = level_map(indicator.area_level)
    last_own = (sa.select(sa.func.max(Visit.visited_at))
                .where(Visit.person_id == Person.id).scalar_subquery())
    last_household = (sa.select(sa.func.max(Visit.visited_at))
                      .where(Visit.household_id == Person.household_id).scalar_subquery())
    tagged = (sa.select(Person.id.label("person_id"), Person.area_id, PersonTag.start_date,
                        Area.timezone.label("tz"),
                        visits.policy_interval(PersonTag.tag, Area.path).label("interval"),
                        sa.func.greatest(last_own, last_household).label("last_at"))
              .join(PersonTag, sa.and_(PersonTag.person_id == Person.id,
                                       PersonTag.end_date.is_(None), PersonTag.kind == "care",
                                       PersonTag.tag.in_(param(indicator, "tags"))))
              .join(Area, Area.id == Person.area_id)
              .where(Person.ended_at.is_(None)).cte("tagged").prefix_with("MATERIALIZED"))
    t = tagged.c
    today = sa.cast(sa.func.timezone(t.tz, sa.literal(now)), sa.Date)
    due = sa.case((t.last_at.is_(None), t.start_date),
                  else_=sa.func.greatest(
                      t.start_date, sa.cast(sa.func.timezone(t.tz, t.last_at), sa.Date)
                      + t.interval))
    overdue = (sa.select(t.person_id, t.area_id, due.label("due"))
               .where(t.interval.is_not(None),
                      due + int(param(indicator, "grace_days")) < today)
               .ext(distinct_on(t.person_id)).order_by(t.person_id, due).cte("overdue"))
    o = overdue.c
    people = sa.func.count()
    return (sa.select(m.c.area_id, _no_department(), sa.cast(people, sa.Float).label("value"),
                      _records(o.person_id, -sa.cast(o.due - date(2000, 1, 1), sa.Integer))
                      .label("record_ids"), people.label("people"))
            .join(m, m.c.grid_id == o.area_id).group_by(m.c.area_id))


def open_red_cases(s: Session, indicator: Indicator, now: datetime) -> sa.Select:
    m = level_map(indicator.area_level)
    return (sa.select(m.c.area_id, _no_department(),
                      sa.cast(sa.func.count(), sa.Float).label("value"),
                      _records(Case.id, Case.reported_at).label("record_ids"), _no_people())
            .join(m, m.c.grid_id == Case.area_id)
            .where(Case.state.in_(OPEN_STATES), Case.escalation == 2)
            .group_by(m.c.area_id))


def labour_risk(s: Session, indicator: Indicator, now: datetime) -> sa.Select:
    """The organisations' risk scores of the month (computed by grid.insights.labour, in
    Python from their indicators and history) as a VALUES list, then rolled up in SQL."""
    from grid.insights import labour  # built beside this module by the hotspots change

    month = param(indicator, "month")
    month = date.fromisoformat(month) if month else now.date().replace(day=1)
    risks = [r for r in labour.risks_for_month(s, month) if r.score and r.score > 0]
    m = level_map(indicator.area_level)
    if not risks:
        return (sa.select(m.c.area_id, _no_department(), sa.cast(0, sa.Float).label("value"),
                          sa.cast(sa.text("'{}'::bigint[]"), sa.ARRAY(sa.BigInteger))
                          .label("record_ids"), _no_people()).where(sa.false()))
    v = sa.values(sa.column("organisation_id", sa.BigInteger), sa.column("grid_id", sa.BigInteger),
                  sa.column("score", sa.Float), name="risk").data(
        [(r.organisation_id, r.area_id, float(r.score)) for r in risks])
    return (sa.select(m.c.area_id, _no_department(), sa.func.max(v.c.score).label("value"),
                      _records(v.c.organisation_id, v.c.score).label("record_ids"),
                      _no_people())
            .join(m, m.c.grid_id == v.c.grid_id).group_by(m.c.area_id))


KINDS: dict[str, Kind] = {
    "new_cases": Kind(new_cases, "case"),
    "overdue_rate": Kind(overdue_rate, "case", per_department=True),
    "repeated_place": Kind(repeated_place, "case"),
    "repeated_caller": Kind(repeated_caller, "case", counts_people=True),
    "unvisited_care": Kind(unvisited_care, "person", counts_people=True,
                           value_is_people=True),
    "open_red_cases": Kind(open_red_cases, "case"),
    "labour_risk": Kind(labour_risk, "organisation"),
}


# --- the series --------------------------------------------------------------------------------


def series(s: Session, indicator: Indicator, area_id: int, department_id: int | None,
           limit: int = 100) -> list[dict]:
    """The indicator's values for an area at its last `limit` runs, oldest first (0 where
    the run measured nothing there)."""
    runs = (sa.select(IndicatorRun.id, IndicatorRun.at)
            .where(IndicatorRun.indicator_id == indicator.id)
            .order_by(IndicatorRun.at.desc()).limit(limit).subquery("runs"))
    joined = sa.and_(IndicatorValue.run_id == runs.c.id, IndicatorValue.area_id == area_id,
                     IndicatorValue.department_id.is_not_distinct_from(department_id))
    rows = s.execute(sa.select(runs.c.at, sa.func.coalesce(sa.func.sum(IndicatorValue.value), 0))
                     .select_from(runs).outerjoin(IndicatorValue, joined)
                     .group_by(runs.c.id, runs.c.at).order_by(runs.c.at)).all()
    return [{"at": at, "value": float(value)} for at, value in rows]


def area_series(s: Session, actor: Actor, indicator_id: int, area_id: int,
                department_id: int | None, limit: int) -> dict:
    """The series of an area in the actor's scope (or of one of their departments). For
    roles without register access, figures about people are suppressed: values of 1–4
    people (a count of people), or all of them (one caller's calls)."""
    from grid.insights.warnings import MIN_PEOPLE, REGISTER

    actor.require(READ)
    indicator = get_indicator(s, actor, indicator_id)
    mine = department_id is not None and department_id in actor.department_ids
    if not mine and not areas.area_in_scope(s, actor, area_id):
        raise NotFound("No such area")
    points = series(s, indicator, area_id, department_id, limit)
    kind = KINDS[indicator.kind]
    hidden = kind.counts_people and not actor.can(REGISTER)
    if hidden:
        for p in points:
            if p["value"] and (not kind.value_is_people or p["value"] < MIN_PEOPLE):
                p["value"] = None
    return {"indicator_id": indicator.id, "area_id": area_id, "department_id": department_id,
            "suppressed": hidden, "points": points}


# --- managing indicators (admin, district admin: indicator:manage) ---------------------------

MANAGE, READ = "indicator:manage", "warning:read"
FIELDS = ("name", "description", "window_hours", "every_minutes", "params", "thresholds",
          "statistical", "baseline_runs", "active")


def indicator_dict(i: Indicator) -> dict:
    return {"id": i.id, "code": i.code, "kind": i.kind, "area_id": i.area_id,
            "area_level": i.area_level,
            "version": i.version, **{k: getattr(i, k) for k in FIELDS}}


def _may_read(actor: Actor) -> None:
    if not actor.can(MANAGE):
        actor.require(READ)


def list_indicators(s: Session, actor: Actor, filters: dict, page: Any) -> list[Indicator]:
    from server import db

    _may_read(actor)
    stmt = sa.select(Indicator).where(_readable(actor)).order_by(Indicator.code)
    for key in ("kind", "active"):
        if filters.get(key) is not None:
            stmt = stmt.where(getattr(Indicator, key) == filters[key])
    return db.paginate(s, stmt, page)


def _readable(actor: Actor) -> sa.ColumnElement[bool]:
    """Indicators of everywhere, and of the areas the actor sees (theirs and above)."""
    return sa.or_(Indicator.area_id.is_(None),
                  Indicator.area_id.in_(areas.visible_area_ids(actor)))


def get_indicator(s: Session, actor: Actor, indicator_id: int, *, for_update: bool = False
                  ) -> Indicator:
    _may_read(actor)
    stmt = sa.select(Indicator).where(Indicator.id == indicator_id, _readable(actor))
    indicator = s.scalars(stmt.with_for_update() if for_update else stmt).first()
    if indicator is None:
        raise NotFound("No such indicator")
    return indicator


def _manageable(s: Session, actor: Actor, indicator_id: int) -> Indicator:
    """An indicator the actor may tune: of an area in their scope (the platform's own,
    of no area, by an administrator only)."""
    actor.require(MANAGE)
    indicator = get_indicator(s, actor, indicator_id, for_update=True)
    if not actor.unrestricted and (indicator.area_id is None or not areas.area_in_scope(
            s, actor, indicator.area_id)):
        raise NotFound("No such indicator")
    return indicator


def _check(s: Session, kind: str, level: str | None, data: dict) -> None:
    """A department kind has no area level; the others need an existing one."""
    if KINDS[kind].per_department:
        if level is not None:
            raise Invalid(field_errors("area_level", "Measured per department: no level."))
        return
    from grid.areas.models import AreaLevel

    if level is None or s.get(AreaLevel, level) is None:
        raise Invalid(field_errors("area_level", "Name an area level (grid, community…)."))


def create_indicator(s: Session, actor: Actor, data: dict) -> Indicator:
    actor.require(MANAGE)
    _check(s, data["kind"], data.get("area_level"), data)
    if data.get("area_id") is None and not actor.unrestricted:
        raise Invalid(field_errors("area_id", "Name the area (your district) it measures."))
    if data.get("area_id") is not None and not areas.area_in_scope(s, actor, data["area_id"]):
        raise NotFound("No such area")
    if s.scalar(sa.select(Indicator.id).where(Indicator.code == data["code"])) is not None:
        raise Conflict("An indicator with this code exists")
    indicator = Indicator(code=data["code"], kind=data["kind"], area_id=data.get("area_id"),
                          area_level=data.get("area_level"), created_by=actor.user_id,
                          next_run_at=clock.now(), params={}, thresholds={}, statistical={},
                          baseline_runs=8, active=True)
    for key in FIELDS:
        if data.get(key) is not None:
            setattr(indicator, key, _clean(key, data[key]))
    s.add(indicator)
    s.flush()
    audit.record(s, actor, "indicator_created", "indicator", indicator.id,
                 changes={"code": indicator.code, "kind": indicator.kind})
    return indicator


def _clean(key: str, value: Any) -> Any:
    """Levels without their unset ones; params with dates as text (JSON)."""
    if key in ("thresholds", "statistical"):
        return {k: v for k, v in value.items() if v is not None}
    if key == "params":
        return {k: (v.isoformat() if isinstance(v, date) else v) for k, v in value.items()}
    return value


def update_indicator(s: Session, actor: Actor, indicator_id: int, changes: dict,
                     expected: int | None) -> Indicator:
    """Tune an indicator (thresholds, window, schedule, parameters) or switch it off."""
    indicator = _manageable(s, actor, indicator_id)
    check_version(indicator, expected)
    before = indicator_dict(indicator)
    for key in FIELDS:
        if key in changes:
            setattr(indicator, key, _clean(key, changes[key]))
    if changes.get("active") and not before["active"]:
        indicator.next_run_at = clock.now()
    s.flush()
    after = indicator_dict(indicator)
    audit.record(s, actor, "indicator_updated", "indicator", indicator.id, changes={
        k: [before[k], after[k]] for k in FIELDS if before[k] != after[k]})
    return indicator


def set_area_thresholds(s: Session, actor: Actor, indicator_id: int, area_id: int,
                        data: dict) -> tuple[IndicatorThreshold, bool]:
    """An area's own thresholds for its subtree (an area in the actor's scope)."""
    indicator = _manageable(s, actor, indicator_id)
    if not areas.area_in_scope(s, actor, area_id):
        raise NotFound("No such area")
    row = s.get(IndicatorThreshold, (indicator.id, area_id), with_for_update=True)
    created = row is None
    if created:
        row = IndicatorThreshold(indicator_id=indicator.id, area_id=area_id)
        s.add(row)
    for key in ("thresholds", "statistical"):
        value = data.get(key)
        setattr(row, key, None if value is None else _clean(key, value))
    row.updated_by, row.updated_at = actor.user_id, clock.now()
    s.flush()
    audit.record(s, actor, "indicator_thresholds_set", "indicator", indicator.id,
                 changes={"area_id": area_id, "thresholds": row.thresholds,
                          "statistical": row.statistical})
    return row, created


def remove_area_thresholds(s: Session, actor: Actor, indicator_id: int, area_id: int) -> None:
    _manageable(s, actor, indicator_id)
    if not areas.area_in_scope(s, actor, area_id):
        raise NotFound("No such area")
    row = s.get(IndicatorThreshold, (indicator_id, area_id))
    if row is None:
        raise NotFound("No thresholds of this area")
    s.delete(row)
    audit.record(s, actor, "indicator_thresholds_removed", "indicator", indicator_id,
                 changes={"area_id": area_id})

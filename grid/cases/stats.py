"""Statistics (综合评价): the evaluation of a period per department and per grid, read from
the daily roll-up (CaseStatsDaily) and the cases of partial days, and the folding of the
roll-up's rows.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from grid.areas import service as areas
from grid.areas.models import Area, Department
from grid.cases.models import STAT_COUNTS, Case, CaseStatsDaily
from grid.cases.parties import evaluable_sql
from grid.cases.scope import _scope_terms, _works_in_areas, visible
from server.auth.actor import Actor

GRADES = (("A", 90), ("B", 75), ("C", 60), ("D", 40))


def _rate(part: Any, whole: Any) -> Any:
    return sa.func.round(sa.cast(100.0 * part / sa.func.nullif(whole, 0), sa.Numeric), 2)


def _contributions() -> list:
    """What one case adds to each column of CaseStatsDaily (the same as migration 0009's
    trigger adds: a test compares the two)."""
    def one(cond: Any) -> Any:
        return sa.case((cond, 1), else_=0)

    dispatched = sa.and_(Case.dispatched_at.is_not(None), sa.not_(Case.self_handled))
    return [
        sa.literal(1).label("reported"), one(Case.accepted_at.is_not(None)).label("accepted"),
        one(dispatched).label("dispatched"),
        one(sa.and_(dispatched, Case.return_count == 0)).label("correctly_dispatched"),
        one(Case.handled_at.is_not(None)).label("handled"),
        one(Case.handled_in_time.is_(True)).label("handled_in_time"),
        one(Case.closed_at.is_not(None)).label("closed"),
        one(Case.closed_in_time.is_(True)).label("closed_in_time"),
        one(Case.self_handled).label("self_handled"),
        sa.cast(Case.rework_count, sa.Integer).label("reworks"),
        one(Case.rework_count > 0).label("reworked"),
        one(Case.rating.is_not(None)).label("rated"), one(Case.rating >= 4).label("satisfied"),
        one(Case.handling_working_s.is_not(None)).label("handling_n"),
        one(sa.and_(Case.closed_at.is_not(None), evaluable_sql())).label("evaluable"),
        sa.func.coalesce(Case.handling_working_s, 0.0).label("handling_s"),
    ]


def _measures(c: Any) -> list:
    """The figures of a group from the summed columns of `c` (a union of roll-up rows and
    cases' contributions)."""
    def total(name: str) -> Any:
        return sa.func.coalesce(sa.func.sum(c[name]), 0)

    accepted, dispatched = total("accepted"), total("dispatched")
    correct, handled, in_time = total("correctly_dispatched"), total("handled"), \
        total("handled_in_time")
    closed, closed_in_time, rated = total("closed"), total("closed_in_time"), total("rated")
    return [
        total("reported").label("reported"), accepted.label("accepted"),
        dispatched.label("dispatched"), correct.label("correctly_dispatched"),
        _rate(correct, dispatched).label("correct_dispatch_rate"),
        handled.label("handled"), in_time.label("handled_in_time"),
        (handled - in_time).label("handled_late"),
        _rate(in_time, handled).label("on_time_handling_rate"),
        handled.label("due_for_closure"), closed.label("closed"),
        _rate(closed, accepted).label("closure_rate"),
        closed_in_time.label("closed_in_time"),
        _rate(closed_in_time, closed).label("on_time_closure_rate"),
        total("self_handled").label("self_handled"), total("reworks").label("reworks"),
        _rate(total("reworked"), handled).label("rework_rate"),
        sa.func.round(sa.cast(sa.func.sum(c.handling_s) / sa.func.nullif(
            sa.func.sum(c.handling_n), 0) / 3600, sa.Numeric), 2).label("mean_handling_hours"),
        total("evaluable").label("evaluable"), rated.label("rated"),
        _rate(total("satisfied"), rated).label("satisfaction_rate"),
    ]


def _score(row: dict, max_accepted: int, weights: dict) -> None:
    """立案数分值×w1 + 结案率×w2 + 按期处置率×w3 + (1−返工率)×w4, each on 0–100; the
    立案数 score is relative to the busiest row of the same table."""
    parts = {
        "accepted": 100.0 * row["accepted"] / max_accepted if max_accepted else None,
        "closure_rate": row["closure_rate"],
        "on_time_handling_rate": row["on_time_handling_rate"],
        "no_rework": None if row["rework_rate"] is None else 100 - float(row["rework_rate"]),
    }
    if row["accepted"] == 0 or any(v is None for v in parts.values()):
        row["score"], row["grade"] = None, None
        return
    # Graded on the score as shown: the rates are already rounded to 0.01 (5/6 → 83.33), so
    # an exact 90 can come out as 89.998 (and float sums drift): one figure, one grade.
    row["score"] = round(sum(float(parts[k]) * weights[k] for k in parts), 2)
    row["grade"] = next((g for g, floor in GRADES if row["score"] >= floor), "E")


def _scored(rows: list[dict], weights: dict) -> list[dict]:
    for row in rows:
        for key, value in row.items():
            if hasattr(value, "as_integer_ratio") and not isinstance(value, (int, float)):
                row[key] = float(value)  # Decimal from round(numeric)
    top = max((r["accepted"] for r in rows), default=0)
    for row in rows:
        _score(row, top, weights)
    return rows


def _whole_days(start: datetime, end: datetime) -> tuple[datetime, datetime] | None:
    """The UTC days lying wholly in [start, end), as [first midnight, last midnight)."""
    first = start.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    if first < start:
        first += timedelta(days=1)
    last = end.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return (first, last) if first < last else None


def performance(s: Session, actor: Actor, filters: dict, weights: dict) -> dict:
    """The evaluation of one period (cases reported in [from, to), each counted as it is
    now), for everything the actor may see under the filters: the total, per department,
    per grid. All in SQL, one statement.

    The whole days of the period are read from the daily roll-up (CaseStatsDaily), within
    the actor's areas and departments; the cases of the partial days at either end, and
    those the actor sees only as reporter or follower, are added from `cases` directly.
    """
    actor.require("stats:read")
    c = sa.union_all(*_period_parts(s, actor, filters)).subquery("c")
    # grouping(): 3 = the total, 1 = per department, 2 = per grid
    level = sa.func.grouping(c.c.department_id, c.c.area_id).label("level")
    rows = [dict(r._mapping) for r in s.execute(
        sa.select(level, c.c.department_id, c.c.area_id, *_measures(c.c))
        .group_by(sa.text("GROUPING SETS ((), (c.department_id), (c.area_id))")))]
    # a group whose cases all left it (moved, merged) leaves rows adding up to nothing
    rows = [r for r in rows if r["level"] == 3 or r["reported"]]
    departments, grids = _named_groups(s, rows)
    total = _scored([_total(rows)], weights)[0]
    departments = _scored(departments, weights)
    grids = _scored(grids, weights)
    return {"start": filters["start"], "end": filters["end"], "weights": weights,
            "total": total, "departments": departments, "grids": grids}


def _period_parts(s: Session, actor: Actor, filters: dict) -> list[sa.Select]:
    """The rows performance() adds up, as parts of one UNION ALL: the roll-up's rows of the
    whole days, and the cases' contributions (the partial days, the actor's own cases)."""
    start, end = filters["start"], filters["end"]
    case_cond = [Case.state != "merged"]
    daily_cond, all_in_scope = [], False
    if filters.get("area_id") is not None:
        area = areas.get_area(s, actor, filters["area_id"])
        # an area wholly in the actor's subtrees needs no second test of every row's area
        all_in_scope = _works_in_areas(actor) and areas.path_in_scope(actor, area.path)
        case_cond.append(Case.area_id.in_(areas.subtree_ids(area)))
        daily_cond.append(CaseStatsDaily.area_id.in_(areas.subtree_ids(area)))
    if filters.get("department_id") is not None:
        case_cond.append(Case.department_id == filters["department_id"])
        daily_cond.append(CaseStatsDaily.department_id == filters["department_id"])
    dims = (CaseStatsDaily.day, CaseStatsDaily.area_id, CaseStatsDaily.department_id)
    summed = [CaseStatsDaily.__table__.c[n] for n in (*STAT_COUNTS, "handling_s")]

    def cases_in(*cond: Any) -> sa.Select:
        return sa.select(Case.area_id, Case.department_id, *_contributions()).where(
            *case_cond, *cond)

    days = _whole_days(start, end)
    if days is None:
        parts = [cases_in(visible(actor), Case.reported_at >= start, Case.reported_at < end)]
    else:
        first, last = days
        # the roll-up is kept per area and department: the scope's own terms
        scope, extra = _scope_terms(actor)
        parts = [
            # added up per grid × department first: ~400 rows into the GROUPING SETS below
            # instead of the period's ~150,000
            sa.select(*dims[1:], *[sa.func.sum(c).label(c.key) for c in summed]).where(
                CaseStatsDaily.day >= first.date(), CaseStatsDaily.day < last.date(),
                sa.true() if all_in_scope else scope(CaseStatsDaily.area_id,
                                                     CaseStatsDaily.department_id),
                *daily_cond)
            .group_by(*dims[1:]),
            cases_in(visible(actor), sa.or_(
                sa.and_(Case.reported_at >= start, Case.reported_at < first),
                sa.and_(Case.reported_at >= last, Case.reported_at < end))),
        ]
        if extra is not None:
            parts.append(cases_in(Case.reported_at >= first, Case.reported_at < last, extra,
                                  sa.not_(sa.func.coalesce(
                                      scope(Case.area_id, Case.department_id), False))))
    return parts


def _named_groups(s: Session, rows: list[dict]) -> tuple[list[dict], list[dict]]:
    """The rows per department and per grid, each with its id, code and name, by code."""
    names = {("d", r.id): r for r in s.execute(sa.select(Department.id, Department.code,
                                                         Department.name))}
    grid_ids = [r["area_id"] for r in rows if r["level"] == 2]
    names |= {("a", r.id): r for r in s.execute(
        sa.select(Area.id, Area.code, Area.name).where(Area.id.in_(grid_ids or [-1])))}

    def named(kind: str, key: str, level_: int) -> list[dict]:
        out = []
        for r in rows:
            if r["level"] == level_ and r[key] is not None:
                ref = names[(kind, r[key])]
                out.append({"id": ref.id, "code": ref.code, "name": ref.name,
                            **{k: v for k, v in r.items()
                               if k not in ("level", "department_id", "area_id")}})
        return sorted(out, key=lambda x: x["code"])

    return named("d", "department_id", 1), named("a", "area_id", 2)


def _total(rows: list[dict]) -> dict:
    """The total row (counts of zero and no rates when nothing was counted)."""
    empty = {k: 0 for k in ("reported", "accepted", "dispatched", "correctly_dispatched",
                            "handled", "handled_in_time", "handled_late", "due_for_closure",
                            "closed", "closed_in_time", "self_handled", "reworks",
                            "evaluable", "rated")}
    return next(({k: v for k, v in r.items() if k not in ("level", "department_id",
                                                          "area_id")}
                 for r in rows if r["level"] == 3), None) or {
        **empty, **{k: None for k in ("correct_dispatch_rate", "on_time_handling_rate",
                                      "closure_rate", "on_time_closure_rate", "rework_rate",
                                      "mean_handling_hours", "satisfaction_rate")}}


# --- the daily roll-up ---------------------------------------------------------------------


def compact_stats(s: Session) -> dict:
    """Fold each (day, grid, department) key of the daily roll-up into one row (the
    triggers append a row per change). Rows appended by transactions still running are not
    seen and are folded next time; two runs at once fold disjoint rows (the second's DELETE
    skips what the first removed). Keys adding up to no case are dropped."""
    t = CaseStatsDaily.__table__
    summed = [*STAT_COUNTS, "handling_s"]
    return fold(s, t, ("day", "area_id", "department_id"), summed,
                lambda gone: sa.func.sum(gone.c.reported) != 0)


def fold(s: Session, t: sa.Table, key_names: tuple[str, ...], summed: list[str],
         kept: Any) -> dict:
    """Fold each key's rows of an append-only roll-up `t` into one (compact_stats);
    `kept(gone)`: the HAVING a folded key must meet to be written back."""
    keys = [t.c[k] for k in key_names]
    dup = sa.select(*keys).group_by(*keys).having(sa.func.count() > 1).cte("dup")
    # equality where a key cannot be NULL (a hash join), IS NOT DISTINCT FROM where it can
    gone = (sa.delete(t).where(*(k.is_not_distinct_from(dup.c[k.key]) if k.nullable
                                 else k == dup.c[k.key] for k in keys))
            .returning(*t.c).cte("gone"))
    folded = s.execute(sa.insert(t).from_select(
        [*key_names, *summed],
        sa.select(*(gone.c[k] for k in key_names), *[sa.func.sum(gone.c[n]) for n in summed])
        .group_by(*(gone.c[k] for k in key_names))
        .having(kept(gone))).returning(t.c.id)).all()
    return {"folded_keys": len(folded)} if folded else {}

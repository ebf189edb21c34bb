"""Trends and breakdowns (趋势与分布) for the dashboard (统计考核): cases reported, accepted
(立案), closed (结案), yellow cards (超期) and red cards (红牌) of an area's subtree, each on
the UTC day it happened, by day, week or month, by category (大类/小类), by department and
by child area — each beside the period before and the same period a year earlier — with the
rates and rankings of /stats/performance (grid/cases/stats.py: its formulas, not a copy).

Read from the roll-ups CaseTrendsMonthly (whole months) and CaseTrendsDaily (the days at
either end; the series by day or week), kept by triggers (migration 0022), in one
statement; never from the cases or their history. Scoped like
/stats/performance: the roll-up's rows of the actor's areas and departments.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session, aliased

from grid.areas import service as areas
from grid.areas.models import Area, Department
from grid.cases import stats
from grid.cases.models import TREND_COUNTS, CaseCategory, CaseTrendsDaily, CaseTrendsMonthly
from grid.cases.scope import _scope_terms, _works_in_areas
from server.auth.actor import Actor

BUCKETS = ("day", "week", "month")
MAX_DAYS = 400
TAGS = ("current", "previous", "last_year")
# grouping(category, department_id, child_id): 1 marks a column left out of the set; the
# days' rows are marked 7 (no such set)
_BY_DAY, _BY_CATEGORY, _BY_DEPARTMENT, _BY_CHILD = 0b111, 0b011, 0b101, 0b110


@dataclass(frozen=True)
class Period:
    start: date
    end: date  # exclusive


def _add_months(d: date, months: int) -> date:
    n = d.year * 12 + d.month - 1 + months
    return date(n // 12, n % 12 + 1, 1)


def _year_before(d: date) -> date:
    return d.replace(year=d.year - 1, day=28) if (d.month, d.day) == (2, 29) \
        else d.replace(year=d.year - 1)


def periods(start: date, end: date, bucket: str) -> dict[str, Period]:
    """The period, the one before it (as long; whole months before when the period is whole
    months) and the same dates a year earlier."""
    if bucket == "month" and start.day == end.day == 1:
        months = (end.year - start.year) * 12 + end.month - start.month
        previous = Period(_add_months(start, -months), start)
    else:
        previous = Period(start - (end - start), start)
    return {"current": Period(start, end), "previous": previous,
            "last_year": Period(_year_before(start), _year_before(end))}


def bucket_of(d: date, bucket: str) -> date:
    """The first day of the bucket holding `d` (weeks: ISO, from Monday)."""
    if bucket == "week":
        return d - timedelta(days=d.weekday())
    return d.replace(day=1) if bucket == "month" else d


def bucket_index(d: date, start: date, bucket: str) -> int:
    """The position of `d`'s bucket among a period's starting at `start`."""
    first, this = bucket_of(start, bucket), bucket_of(d, bucket)
    if bucket == "month":
        return (this.year - first.year) * 12 + this.month - first.month
    return (this - first).days // (7 if bucket == "week" else 1)


def buckets(period: Period, bucket: str) -> list[date]:
    """The buckets of a period, by their first day (the first may start before it)."""
    out, d = [], bucket_of(period.start, bucket)
    while d < period.end:
        out.append(d)
        d = _add_months(d, 1) if bucket == "month" else d + timedelta(
            days=7 if bucket == "week" else 1)
    return out


def _zero() -> dict[str, int]:
    return dict.fromkeys(TREND_COUNTS, 0)


def _split(span: Period) -> tuple[Period | None, list[Period]]:
    """A period as its whole months (read from the monthly roll-up) and the days at either
    end (from the daily one)."""
    first = span.start if span.start.day == 1 else _add_months(span.start, 1)
    last = span.end.replace(day=1)
    if first >= last:
        return None, [span]
    edges = [Period(span.start, first), Period(last, span.end)]
    return Period(first, last), [e for e in edges if e.start < e.end]


def _rows_of(table: sa.Table, day: Any, spans: list[tuple[int, Period]], cond: Any,
             child_of: Any) -> Any:
    """The roll-up's rows of these numbered periods within `cond`, each with the number of
    its period and the child area it lies under."""
    d = sa.values(sa.column("i", sa.Integer), sa.column("first", sa.Date),
                  sa.column("last", sa.Date), name=f"d_{table.name}").data(
        [(i, span.start, span.end) for i, span in spans] or [(-1, date.min, date.min)])
    return (sa.select(d.c.i, day.label("day"), table.c.area_id, table.c.department_id,
                      table.c.category_id, child_of.c.child_id,
                      *[table.c[n] for n in TREND_COUNTS])
            .select_from(table).join(d, sa.and_(day >= d.c.first, day < d.c.last))
            .outerjoin(child_of, child_of.c.area_id == table.c.area_id)
            .where(sa.or_(*(sa.and_(day >= span.start, day < span.end) for _, span in spans))
                   if spans else sa.false(), *cond(table)))


def _per_day(daily: sa.Table, spans: list[tuple[str, Period]], cond: Any) -> sa.Select:
    """The daily roll-up added up per day over the periods' days, then tagged: each row is
    read and added once (not once per period holding its day)."""
    day = daily.c.day
    per_day = (sa.select(day, *[sa.func.sum(daily.c[n]).label(n) for n in TREND_COUNTS])
               .where(sa.or_(*(sa.and_(day >= span.start, day < span.end)
                               for _, span in spans)), *cond(daily))
               .group_by(day).subquery("per_day"))
    p = sa.values(sa.column("tag", sa.String), sa.column("first", sa.Date),
                  sa.column("last", sa.Date), name="p_days").data(
        [(tag, span.start, span.end) for tag, span in spans])
    return (sa.select(p.c.tag, per_day.c.day, *[per_day.c[n] for n in TREND_COUNTS])
            .select_from(per_day)
            .join(p, sa.and_(per_day.c.day >= p.c.first, per_day.c.day < p.c.last)))


def _numbered(spans: dict[str, Period]) -> tuple[list, list, Any]:
    """The distinct whole-month periods (the monthly roll-up) and end-day periods (the daily
    one) of the tagged spans, numbered, and the VALUES giving each number its tags: each
    distinct period is read and added up once (a year's `previous` and `last_year` share
    their whole months), then given the tags it belongs to."""
    tagged: list[tuple[str, str, Period]] = []
    for tag, span in spans.items():
        whole, edges = _split(span)
        tagged += [(tag, "m", whole)] if whole else []
        tagged += [(tag, "d", e) for e in edges]
    numbers = {k: i for i, k in enumerate(dict.fromkeys((t, sp) for _, t, sp in tagged))}
    tag_of = sa.values(sa.column("tag", sa.String), sa.column("i", sa.Integer),
                       name="tag_of").data(
        [(tag, numbers[(t, sp)]) for tag, t, sp in tagged] or [("", -1)])
    months = [(i, sp) for (t, sp), i in numbers.items() if t == "m"]
    days = [(i, sp) for (t, sp), i in numbers.items() if t == "d"]
    return months, days, tag_of


def _statement(actor: Actor, area: Area, spans: dict[str, Period], level: str, bucket: str,
               department_id: int | None, children: list[tuple[int, int]]
               ) -> sa.CompoundSelect:
    """The whole months of the periods from the monthly roll-up and the days at their
    ends from the daily one, added up per period (tag) × day (the series: from the daily
    roll-up alone unless by month) and per tag × grid × department × 小类 (~10⁴ rows); the
    latter joined to the categories and child areas and added up per category, department
    and child area (GROUPING SETS)."""
    daily, monthly = CaseTrendsDaily.__table__, CaseTrendsMonthly.__table__
    scope, _ = _scope_terms(actor)  # the roll-ups are kept per area and department
    # an area wholly in the actor's subtrees needs no second test of every row's area
    all_in_scope = _works_in_areas(actor) and areas.path_in_scope(actor, area.path)

    def cond(t: sa.Table) -> list:
        out = [t.c.area_id.in_(areas.subtree_ids(area))]
        out += [] if all_in_scope else [scope(t.c.area_id, t.c.department_id)]
        return out + ([t.c.department_id == department_id] if department_id is not None else [])

    months, days, tag_of = _numbered(spans)
    by_month = bucket == "month"
    # the child area each grid lies under, joined to the roll-ups' rows (a hash join), not
    # to the ~10⁴ added-up rows (the planner cannot count those and loops over the VALUES)
    child_of = sa.values(sa.column("area_id", sa.BigInteger),
                         sa.column("child_id", sa.BigInteger), name="child_of").data(
        children or [(-1, -1)])
    mixed = sa.union_all(_rows_of(monthly, monthly.c.month, months, cond, child_of),
                         _rows_of(daily, daily.c.day, days, cond, child_of)).subquery("mixed")
    summed = [sa.func.sum(mixed.c[n]).label(n) for n in TREND_COUNTS]
    # child_id follows from area_id: the same groups
    keys = (mixed.c.area_id, mixed.c.department_id, mixed.c.category_id, mixed.c.child_id)
    sets = [sa.tuple_(mixed.c.i, *keys)]
    if by_month:  # the series too, in the same pass (months and days are dates)
        sets.append(sa.tuple_(mixed.c.i, mixed.c.day))
    flag = sa.func.grouping(mixed.c.day) if by_month else sa.literal(1)
    inner = (sa.select(flag.label("by_key"), mixed.c.i,
                       mixed.c.day if by_month else sa.null().label("day"), *keys, *summed)
             .group_by(sa.func.grouping_sets(*sets)).cte("inner"))
    tagged = (sa.select(tag_of.c.tag, *[c for c in inner.c if c.key != "i"])
              .select_from(inner).join(tag_of, tag_of.c.i == inner.c.i))
    by_key = tagged.where(inner.c.by_key == 1).subquery("by_key")
    if by_month:
        series = tagged.where(inner.c.by_key == 0)
    else:
        series = _per_day(daily, list(spans.items()), cond)
    series = series.subquery("series")
    category = (sa.func.coalesce(CaseCategory.parent_id, CaseCategory.id) if level == "major"
                else CaseCategory.id)
    dims = (category, by_key.c.department_id, by_key.c.child_id)
    points = sa.select(sa.literal(_BY_DAY).label("level"), series.c.tag, series.c.day,
                       sa.null().label("category"), sa.null().label("department_id"),
                       sa.null().label("child_id"), *[series.c[n] for n in TREND_COUNTS])
    groups = (sa.select(sa.func.grouping(*dims).label("level"), by_key.c.tag,
                        sa.null().label("day"), category.label("category"),
                        by_key.c.department_id, by_key.c.child_id,
                        *[sa.func.sum(by_key.c[n]).label(n) for n in TREND_COUNTS])
              .select_from(by_key).join(CaseCategory, CaseCategory.id == by_key.c.category_id)
              .group_by(sa.func.grouping_sets(*(sa.tuple_(by_key.c.tag, d) for d in dims))))
    return sa.union_all(points, groups)

def trends(s: Session, actor: Actor, filters: dict, weights: dict) -> dict:
    """The dashboard's figures for `filters` (area_id, start, end, bucket, category_level,
    department_id): see the module docstring and docs/console-api.md."""
    actor.require("stats:read")
    area = areas.get_area(s, actor, filters["area_id"])
    bucket = filters["bucket"]
    spans = periods(filters["start"], filters["end"], bucket)
    # a period read once however many tags it has (a year's `previous` is its `last_year`)
    same: dict[str, list[str]] = {}
    for tag, span in spans.items():
        same.setdefault(next(o for o in TAGS if spans[o] == span), []).append(tag)
    rows = s.execute(_statement(actor, area, {t: spans[t] for t in same},
                                filters["category_level"], bucket,
                                filters.get("department_id"), _children(s, area))).all()
    current = buckets(spans["current"], bucket)
    series = [{"period": d, **{tag: _zero() for tag in TAGS}} for d in current]
    totals = {tag: _zero() for tag in TAGS}
    groups: dict[int, dict[Any, dict]] = {_BY_CATEGORY: {}, _BY_DEPARTMENT: {}, _BY_CHILD: {}}
    for r, tag in ((row, tag) for row in rows for tag in same[row.tag]):
        counts = {n: int(getattr(r, n)) for n in TREND_COUNTS}
        if r.level == _BY_DAY:
            for n, v in counts.items():
                totals[tag][n] += v
            i = bucket_index(r.day, spans[tag].start, bucket)
            if i < len(series):
                for n, v in counts.items():
                    series[i][tag][n] += v
        else:
            key = {_BY_CATEGORY: r.category, _BY_DEPARTMENT: r.department_id,
                   _BY_CHILD: r.child_id}[r.level]
            if key is not None:
                groups[r.level].setdefault(key, {t: _zero() for t in TAGS})[tag] = counts
    performance = stats.performance(s, actor, {
        "start": datetime.combine(filters["start"], time(), UTC),
        "end": datetime.combine(filters["end"], time(), UTC), "area_id": area.id,
        "department_id": filters.get("department_id")}, weights)
    return {"area_id": area.id, "start": filters["start"], "end": filters["end"],
            "bucket": bucket, "category_level": filters["category_level"],
            "previous": spans["previous"], "last_year": spans["last_year"],
            "totals": totals, "series": series,
            "by_category": _named(s, CaseCategory, groups[_BY_CATEGORY]),
            "by_department": _named(s, Department, groups[_BY_DEPARTMENT]),
            "by_area": _named(s, Area, groups[_BY_CHILD]),
            "rates": performance["total"],
            "rankings": {"departments": ranked(performance["departments"]),
                         "grids": ranked(performance["grids"])}}


def _children(s: Session, area: Area) -> list[tuple[int, int]]:
    """(area id, the child of `area` it lies under) for the subtree below `area`."""
    child, below = aliased(Area), aliased(Area)
    return [tuple(r) for r in s.execute(
        sa.select(below.id, child.id).join(child, below.path.startswith(child.path))
        .where(child.parent_id == area.id))]


def _named(s: Session, model: Any, groups: dict[int, dict]) -> list[dict]:
    """The groups with their code and name, by code."""
    names = {r.id: r for r in s.execute(sa.select(model.id, model.code, model.name)
                                        .where(model.id.in_(list(groups) or [-1])))}
    return sorted(({"id": k, "code": names[k].code, "name": names[k].name, **v}
                   for k, v in groups.items() if k in names), key=lambda g: g["code"])


def ranked(rows: list[dict]) -> list[dict]:
    """/stats/performance's rows by score, best first (no score last), with their rank
    (equal scores share one)."""
    out = sorted(rows, key=lambda r: (r["score"] is None, -(r["score"] or 0), r["code"]))
    rank, previous = 0, object()
    for i, row in enumerate(out, 1):
        if row["score"] != previous:
            rank, previous = i, row["score"]
        row["rank"] = rank if row["score"] is not None else None
    return out


def compact_trends(s: Session) -> dict:
    """Fold each key's rows of the trends' roll-ups into one (the worker, every 10 min):
    the days first (their folding appends to the months), then the months."""
    def kept(gone: Any) -> Any:
        return sa.or_(*(sa.func.sum(gone.c[n]) != 0 for n in TREND_COUNTS))

    days = stats.fold(s, CaseTrendsDaily.__table__,
                      ("day", "area_id", "department_id", "category_id"), list(TREND_COUNTS),
                      kept)
    months = stats.fold(s, CaseTrendsMonthly.__table__,
                        ("month", "area_id", "department_id", "category_id"),
                        list(TREND_COUNTS), kept)
    return {f"{k}_{name}": v for name, done in (("days", days), ("months", months))
            for k, v in done.items()}

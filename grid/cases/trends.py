"""Trends and breakdowns (趋势与分布) for the dashboard (统计考核): cases reported, accepted
(立案), closed (结案), yellow cards (超期) and red cards (红牌) of an area's subtree, each on
the UTC day it happened, by day, week or month, by category (大类/小类), by department and
by child area — each beside the period before and the same period a year earlier — with the
rates and rankings of /stats/performance (grid/cases/stats.py: its formulas, not a copy).

Read from the roll-up CaseTrendsDaily (kept by triggers, migration 0016_consoleapi) in one
statement with GROUPING SETS; never from the cases or their history. Scoped like
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
from grid.cases.models import TREND_COUNTS, CaseCategory, CaseTrendsDaily
from grid.cases.scope import _scope_terms
from server.auth.actor import Actor

BUCKETS = ("day", "week", "month")
MAX_DAYS = 400
TAGS = ("current", "previous", "last_year")
# grouping(day, category, department_id, child_id): 1 marks a column left out of the set
_BY_DAY, _BY_CATEGORY, _BY_DEPARTMENT, _BY_CHILD = 0b0111, 0b1011, 0b1101, 0b1110


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


def _statement(actor: Actor, area: Area, spans: dict[str, Period], level: str,
               department_id: int | None) -> sa.Select:
    """One scan of the roll-up: per period (tag) × day, × category, × department and ×
    child area, as GROUPING SETS."""
    t = CaseTrendsDaily.__table__
    p = sa.values(sa.column("tag", sa.String), sa.column("first", sa.Date),
                  sa.column("last", sa.Date), name="p").data(
        [(tag, span.start, span.end) for tag, span in spans.items()])
    child, below = aliased(Area), aliased(Area)
    child_of = (sa.select(below.id.label("area_id"), child.id.label("child_id"))
                .join(child, below.path.startswith(child.path))
                .where(child.parent_id == area.id)).cte("child_of")
    category = (sa.func.coalesce(CaseCategory.parent_id, CaseCategory.id) if level == "major"
                else CaseCategory.id)
    scope, _ = _scope_terms(actor)  # the roll-up is kept per area and department
    cond = [sa.or_(*(sa.and_(t.c.day >= span.start, t.c.day < span.end)
                     for span in spans.values())),
            t.c.area_id.in_(areas.subtree_ids(area)), scope(t.c.area_id, t.c.department_id)]
    if department_id is not None:
        cond.append(t.c.department_id == department_id)
    dims = (t.c.day, category, t.c.department_id, child_of.c.child_id)
    return (sa.select(sa.func.grouping(*dims).label("level"), p.c.tag, t.c.day,
                      category.label("category"), t.c.department_id, child_of.c.child_id,
                      *[sa.func.sum(t.c[n]).label(n) for n in TREND_COUNTS])
            .select_from(t).join(p, sa.and_(t.c.day >= p.c.first, t.c.day < p.c.last))
            .join(CaseCategory, CaseCategory.id == t.c.category_id)
            .outerjoin(child_of, child_of.c.area_id == t.c.area_id)
            .where(*cond)
            .group_by(sa.func.grouping_sets(*(sa.tuple_(p.c.tag, d) for d in dims))))

def trends(s: Session, actor: Actor, filters: dict, weights: dict) -> dict:
    """The dashboard's figures for `filters` (area_id, start, end, bucket, category_level,
    department_id): see the module docstring and docs/console-api.md."""
    actor.require("stats:read")
    area = areas.get_area(s, actor, filters["area_id"])
    bucket = filters["bucket"]
    spans = periods(filters["start"], filters["end"], bucket)
    rows = s.execute(_statement(actor, area, spans, filters["category_level"],
                                filters.get("department_id"))).all()
    current = buckets(spans["current"], bucket)
    series = [{"period": d, **{tag: _zero() for tag in TAGS}} for d in current]
    totals = {tag: _zero() for tag in TAGS}
    groups: dict[int, dict[Any, dict]] = {_BY_CATEGORY: {}, _BY_DEPARTMENT: {}, _BY_CHILD: {}}
    for r in rows:
        counts = {n: int(getattr(r, n)) for n in TREND_COUNTS}
        if r.level == _BY_DAY:
            for n, v in counts.items():
                totals[r.tag][n] += v
            i = bucket_index(r.day, spans[r.tag].start, bucket)
            if i < len(series):
                for n, v in counts.items():
                    series[i][r.tag][n] += v
        else:
            key = {_BY_CATEGORY: r.category, _BY_DEPARTMENT: r.department_id,
                   _BY_CHILD: r.child_id}[r.level]
            if key is not None:
                groups[r.level].setdefault(key, {tag: _zero() for tag in TAGS})[r.tag] = counts
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
    """Fold each key's rows of the trends' roll-up into one (the worker, every 10 min)."""
    return stats.fold(s, CaseTrendsDaily.__table__,
                      ("day", "area_id", "department_id", "category_id"), list(TREND_COUNTS),
                      lambda gone: sa.or_(*(sa.func.sum(gone.c[n]) != 0
                                            for n in TREND_COUNTS)))

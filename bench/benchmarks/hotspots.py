"""Hot spots: one category over 90 days of a district with 1,000,000 cases, vs its SQL alone.

Issue 18 target: a hot-spot run for one category over 90 days of a city < 10 s in the
worker, next to the same SQL alone in the same run (ratio).

Data: the `cases` benchmark's loader (bench/benchmarks/cases.py `load_cases`: 1,000,000
historical cases over the demo district's 61 grids in the last 365 days, a random 小类
each, plus 20,000 open ones; BENCH_CASES_HISTORICAL for a smaller try), reused as is.

Measured, on one connection of the app's role, each in a transaction rolled back:
1. the counting statement alone (grid.insights.hotspots.counts_statement: per cell and
   slice, then the 3×3 focal sums), executed and fetched — "the SQL alone";
2. `hotspots.analyse` (that statement + the statistics in Python: Poisson tails, BH,
   components, classes);
3. `hotspot_runs.run` (2 + storing the run and its hot spots with their shapes) — what the
   worker does per category and district;
for the busiest 小类 and for its 大类 (all its 小类: a denser category), window 34 days +
baseline 8 weeks = 90 days, 250 m cells; median of 5 (3 for runs). Then the worker's whole
daily task (`daily_runs`: every 小类 with enough cases) once.
"""

from __future__ import annotations

import resource
import statistics
import time
from typing import TYPE_CHECKING

import sqlalchemy as sa
from sqlalchemy.orm import Session

from bench.benchmarks.cases import DEMO_DISTRICT, load_cases

if TYPE_CHECKING:
    from bench.harness import Context

TARGET_S = 10.0
REPEATS = 5


def _median_s(fn, n: int = REPEATS) -> float:
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _line(s: Session, category, area, settings, end) -> dict:
    from grid.insights import hotspot_runs, hotspots

    cats = hotspots.category_ids(s, category)
    cell = settings.cell_for(category.code)
    stmt, params = hotspots.counts_statement(s, cats, area, settings, cell, end)
    rows = len(s.execute(stmt, params).all())
    sql_s = _median_s(lambda: s.execute(stmt, params).all())
    analysis = hotspots.analyse(s, cats, area, settings, cell, end)
    analyse_s = _median_s(lambda: hotspots.analyse(s, cats, area, settings, cell, end))

    def one_run() -> None:
        nested = s.begin_nested()
        hotspot_runs.run(s, category, area, settings, end)
        nested.rollback()

    run_s = _median_s(one_run, 3)
    line = {"category": category.code, "categories": len(cats), "cell_rows": rows,
            "window_cases": analysis.window_cases, "cells": analysis.n_cells,
            "hotspots": len(analysis.spots), "sql_alone_s": round(sql_s, 3),
            "analyse_s": round(analyse_s, 3), "run_s": round(run_s, 3),
            "run_vs_sql": round(run_s / sql_s, 2) if sql_s else None}
    print(f"  {category.code}: {line}", flush=True)
    return line


def run(ctx: Context) -> dict:
    from grid.areas.models import Area
    from grid.cases.models import Case, CaseCategory
    from grid.insights import hotspot_runs
    from grid.insights.hotspots import HotspotSettings
    from server import clock

    t0 = time.perf_counter()
    loaded = load_cases(ctx)
    print(f"  loaded in {time.perf_counter() - t0:.1f} s", flush=True)
    settings = HotspotSettings(window_days=34, baseline_weeks=8)
    end = clock.now()
    with Session(ctx.engine) as s:
        area = s.scalar(sa.select(Area).where(Area.code == DEMO_DISTRICT))
        busiest = s.scalar(
            sa.select(Case.category_id).where(Case.reported_at >= sa.func.now()
                                              - sa.text("interval '90 days'"))
            .group_by(Case.category_id).order_by(sa.func.count().desc()).limit(1))
        small = s.get(CaseCategory, busiest)
        large = s.get(CaseCategory, small.parent_id)
        lines = [_line(s, small, area, settings, end), _line(s, large, area, settings, end)]
        nested = s.begin_nested()
        t0 = time.perf_counter()
        daily = hotspot_runs.daily_runs(s, settings, end)
        daily_s = time.perf_counter() - t0
        nested.rollback()
        s.rollback()
    print(f"  daily task: {daily} in {daily_s:.1f} s", flush=True)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {
        "rows": [],
        "data": {k: loaded[k] for k in ("by_state", "table_size", "indexes_size")
                 if k in loaded},
        "settings": {"window_days": 34, "baseline_weeks": 8, "cell_m": settings.cell_m},
        "lines": lines,
        "daily_task": {**daily, "seconds": round(daily_s, 1)},
        "bench_process_peak_rss_mib": round(rss, 1),
        "target_s": TARGET_S,
        "meets": {"run_s": all(line["run_s"] < TARGET_S for line in lines)},
    }

"""The console's API: the queue's filters with 20,000 open cases in one street, the
dashboard's trends of a district over a year, the queue's export.

Issue 17/18 targets: the queue API behind the console p99 < 100 ms with the filters the
console uses (one street, 20,000 open cases); the dashboard's API (GET /stats/trends) p99
< 300 ms for a district over a year. Each line is beside its SQL alone in the same run
(ratio = request p99 ÷ SQL p99, the statements of one request added up).

Data (INSERT … SELECT, the statements of bench/benchmarks/cases.py: rows as the case service
writes them; the roll-ups filled by their triggers as the rows go in):
- HISTORICAL (BENCH_CONSOLE_HISTORICAL, default 300,000) cases over the demo district's
  grids, reported over the last 730 days (two years: the trends compare with a year
  earlier), closed/evaluated/rejected/voided as in cases.py; the yellow and red cards of
  the late ones (history's `overdue`) added to case_trends_daily on the day after the
  report, half of them red — as the sweep's trigger would have;
- 20,000 open cases in the clocked states in the grids of street 330183001 (the demo
  dispatcher's), 10 % past due, reported in the last few days.
The worker's folding (compact_stats, compact_trends) runs before the lines, as every 10 min.

Measured (one user, ONE_USER_SECONDS each; the dispatcher for the queue, the district
administrator for the trends):
1. GET /cases with the console's filters (red first, several states, lights, text, a 大类
   over a fortnight) and GET /cases/counts; beside the SQL of list_cases (count + page)
   and count_by_state, timed on one connection;
2. GET /stats/trends for the district over the last 365 days by month and by week; beside
   the trends statement and the performance statement it reuses;
3. GET /cases/export?state=dispatched,handled (~6,000 of the street's open cases):
   seconds, bytes, the server's peak RSS during it.
"""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bench.harness import Context

HISTORICAL = int(os.environ.get("BENCH_CONSOLE_HISTORICAL", 300_000))
OPEN = 20_000
STREET = "330183001"
ONE_USER_SECONDS = float(os.environ.get("BENCH_CONSOLE_SECONDS", 8.0))
TARGETS = {"queue_p99_ms": 100.0, "trends_p99_ms": 300.0}

CARDS_SQL = """
INSERT INTO case_trends_daily (day, area_id, department_id, category_id, reported, accepted,
                               closed, overdue, escalated)
SELECT ((reported_at + interval '1 day') AT TIME ZONE 'UTC')::date, area_id, department_id,
       category_id, 0, 0, 0, count(*), count(*) FILTER (WHERE id % 2 = 0)
FROM cases WHERE overdue GROUP BY 1, 2, 3, 4
"""


def load(ctx: Context) -> dict:
    import sqlalchemy as sa

    from bench.benchmarks import cases

    engine = ctx.owner_engine()
    timing: dict[str, float] = {}
    try:
        with engine.connect() as conn:
            if conn.scalar(sa.text("SELECT count(*) FROM cases")) < HISTORICAL:
                for phase, prefix, sql, n in (
                        ("historical", cases.DEMO_DISTRICT, cases.HISTORICAL_SQL.replace(
                            "interval '365 days'", "interval '730 days'"), HISTORICAL),
                        ("open", STREET, cases.OPEN_SQL, OPEN)):
                    t0 = time.perf_counter()
                    conn.execute(sa.text("DROP TABLE IF EXISTS bench_grids, bench_pts, "
                                         "bench_cats"))
                    for stmt in cases.SETUP_SQL:
                        conn.execute(sa.text(stmt), {"seed": cases.SEED, "district": prefix,
                                                     "per_grid": cases.POINTS_PER_GRID})
                    ngrids = conn.scalar(sa.text("SELECT count(*) FROM bench_grids"))
                    ncats = conn.scalar(sa.text("SELECT count(*) FROM bench_cats"))
                    conn.execute(sa.text(sql), {
                        "district": prefix, "per_grid": cases.POINTS_PER_GRID, "n": n,
                        "ngrids": ngrids, "ncats": ncats, "overdue": cases.OVERDUE_SHARE})
                    conn.commit()
                    timing[f"{phase}_insert_s"] = time.perf_counter() - t0
                conn.execute(sa.text(CARDS_SQL))
                conn.commit()
            conn.commit()
            conn.execution_options(isolation_level="AUTOCOMMIT").execute(
                sa.text("VACUUM ANALYZE cases"))
            sizes = conn.execute(sa.text(
                "SELECT (SELECT count(*) FROM cases), (SELECT count(*) FROM cases c "
                "JOIN areas a ON a.id = c.area_id WHERE a.code LIKE :s || '%' AND c.state IN "
                "('reported','accepted','returned','dispatched','in_progress','handled',"
                "'verified'))"), {"s": STREET}).one()
    finally:
        engine.dispose()
    return {"cases": sizes[0], "open_in_street": sizes[1],
            "timing": {k: round(v, 1) for k, v in timing.items()}}


def fold(ctx: Context) -> dict:
    import sqlalchemy as sa
    from sqlalchemy.orm import Session

    from grid.cases import stats, trends

    out = {}
    with Session(ctx.engine) as s:
        t0 = time.perf_counter()
        stats.compact_stats(s)
        trends.compact_trends(s)
        s.commit()
        out["fold_s"] = round(time.perf_counter() - t0, 1)
    with ctx.owner_engine().connect() as conn:
        conn.execution_options(isolation_level="AUTOCOMMIT").execute(
            sa.text("VACUUM ANALYZE case_trends_daily"))
        out["trend_rows"], out["trend_size"] = conn.execute(sa.text(
            "SELECT count(*), pg_size_pretty(pg_total_relation_size('case_trends_daily')) "
            "FROM case_trends_daily")).one()
        out["trend_rows_last_year"] = conn.scalar(sa.text(
            "SELECT count(*) FROM case_trends_daily WHERE day >= current_date - 365"))
    return out


def _sql_of(ctx: Context, call: Any) -> tuple[list[dict], dict]:
    """The statements `call(s, actor)` sends (bench.benchmarks.cases.captured), and their
    timings on one connection (each statement's p50/p99; `sum_p99` adds them up)."""
    from sqlalchemy.orm import Session

    from bench.benchmarks import cases

    with Session(ctx.engine) as s, cases.captured(ctx.engine) as seen:
        call(s)
        s.rollback()
    heavy = [st for st in seen if not st["many"]]
    timed = [ctx.sql_timings(st["sql"], st["params"], n=10, warmup=2) for st in heavy]
    return heavy, {"statements": len(heavy), "sum_p50": round(sum(t["p50"] for t in timed), 2),
                   "sum_p99": round(sum(t["p99"] for t in timed), 2),
                   "each_p50": [round(t["p50"], 2) for t in timed]}


QUEUE_LINES = (
    ("red first", "open=true&sort=-light", {"open": True, "sort": "-light"}),
    ("to triage", "state=reported,accepted,returned&sort=-reported_at",
     {"state": ["reported", "accepted", "returned"], "sort": "-reported_at"}),
    ("red+yellow by due", "light=red,yellow&sort=due_at",
     {"light": ["red", "yellow"], "sort": "due_at"}),
    ("overdue", "overdue=true&sort=due_at", {"overdue": True, "sort": "due_at"}),
    ("text", "q=演示路12&open=true", {"q": "演示路12", "open": True}),
)


def line_queue(ctx: Context) -> tuple[list[dict], dict]:
    import requests
    import sqlalchemy as sa
    from sqlalchemy.orm import Session

    from bench.benchmarks.cases import Page, _actor
    from grid.cases import queue

    headers = ctx.auth_headers("dispatcher")
    with Session(ctx.engine) as s:
        actor = _actor(s, "dispatcher")
        major = s.scalar(sa.text("SELECT id FROM case_categories WHERE code = '01'"))
    since = time.strftime("%Y-%m-%dT00:00:00Z", time.gmtime(time.time() - 14 * 86400))
    lines = (*QUEUE_LINES, ("大类 fortnight", f"category_id={major}&reported_from={since}",
                            {"category_id": major, "reported_from": since}))
    rows, detail = [], {}
    for name, query, filters in lines:
        path = f"/cases?{query}"
        resp = requests.get(ctx.base_url + path, headers=headers, timeout=60)
        if resp.status_code != 200:
            raise RuntimeError(f"GET {path}: {resp.status_code} {resp.text[:300]}")
        parsed = dict(filters)
        if "reported_from" in parsed:
            from datetime import datetime
            parsed["reported_from"] = datetime.fromisoformat(parsed["reported_from"])
        _, sql = _sql_of(ctx, lambda s, f=parsed: queue.list_cases(s, actor, f, Page()))
        row = ctx.measure(f"GET /cases {name} 1u", path, users=1, seconds=ONE_USER_SECONDS,
                          headers=headers)
        row["sql_p99_ms"], row["vs_sql_p99"] = sql["sum_p99"], row["p99_ms"] / max(
            sql["sum_p99"], 0.01)
        rows.append(row)
        detail[name] = {"path": path, "total": resp.headers.get("X-Pagination"), "sql": sql}
        print(f"    SQL {sql['statements']} statements p99 {sql['sum_p99']} ms; request/SQL "
              f"{row['vs_sql_p99']:.1f}", flush=True)
    path = "/cases/counts?open=true&light=red,yellow"
    _, sql = _sql_of(ctx, lambda s: queue.count_by_state(
        s, actor, {"open": True, "light": ["red", "yellow"]}))
    row = ctx.measure("GET /cases/counts open red+yellow 1u", path, users=1,
                      seconds=ONE_USER_SECONDS, headers=headers)
    row["sql_p99_ms"], row["vs_sql_p99"] = sql["sum_p99"], row["p99_ms"] / max(
        sql["sum_p99"], 0.01)
    rows.append(row)
    detail["counts"] = {"path": path, "sql": sql}
    return rows, detail


def line_trends(ctx: Context) -> tuple[list[dict], dict]:
    from datetime import UTC, datetime, timedelta

    import requests
    import sqlalchemy as sa
    from sqlalchemy.orm import Session

    from bench.benchmarks.cases import _actor
    from grid.cases import trends
    from server.config import Config

    headers = ctx.auth_headers("district")
    today = datetime.now(UTC).date()
    start, end = today - timedelta(days=365), today + timedelta(days=1)
    with Session(ctx.engine) as s:
        actor = _actor(s, "district")
        district = s.scalar(sa.text("SELECT id FROM areas WHERE code = '330183'"))
    rows, detail = [], {}
    for bucket in ("month", "week"):
        path = f"/stats/trends?area_id={district}&from={start}&to={end}&bucket={bucket}"
        resp = requests.get(ctx.base_url + path, headers=headers, timeout=60)
        if resp.status_code != 200:
            raise RuntimeError(f"GET {path}: {resp.status_code} {resp.text[:300]}")
        body = resp.json()
        filters = {"area_id": district, "start": start, "end": end, "bucket": bucket,
                   "category_level": "major"}
        _, sql = _sql_of(ctx, lambda s, f=filters: trends.trends(
            s, actor, f, Config.CASE_SCORE_WEIGHTS))
        row = ctx.measure(f"GET /stats/trends year by {bucket} 1u", path, users=1,
                          seconds=ONE_USER_SECONDS, headers=headers)
        row["sql_p99_ms"], row["vs_sql_p99"] = sql["sum_p99"], row["p99_ms"] / max(
            sql["sum_p99"], 0.01)
        rows.append(row)
        detail[bucket] = {"path": path, "sql": sql, "totals": body["totals"],
                          "series": len(body["series"]), "rankings": {
                              k: len(v) for k, v in body["rankings"].items()}}
        print(f"    SQL {sql['statements']} statements p50 {sql['each_p50']} ms; "
              f"request/SQL {row['vs_sql_p99']:.1f}; totals {body['totals']['current']}",
              flush=True)
    return rows, detail


def line_export(ctx: Context) -> dict:
    import threading

    import psutil
    import requests

    server = psutil.Process(ctx.server_pid)
    procs = [server, *server.children(recursive=True)]
    peak = {"rss": 0}
    stop = threading.Event()

    def watch():
        while not stop.is_set():
            rss = sum(p.memory_info().rss for p in procs if p.is_running())
            peak["rss"] = max(peak["rss"], rss)
            time.sleep(0.05)

    before = sum(p.memory_info().rss for p in procs)
    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    t0 = time.perf_counter()
    resp = requests.get(ctx.base_url + "/cases/export?state=dispatched,handled",
                        headers=ctx.auth_headers("dispatcher"), timeout=300)
    seconds = time.perf_counter() - t0
    stop.set()
    thread.join()
    if resp.status_code != 200:
        raise RuntimeError(f"export: {resp.status_code} {resp.text[:300]}")
    out = {"rows": int(resp.headers["X-Row-Count"]), "seconds": round(seconds, 2),
           "bytes": len(resp.content), "server_rss_before_mib": round(before / 2**20),
           "server_rss_peak_mib": round(peak["rss"] / 2**20)}
    print(f"  export: {out}", flush=True)
    return out


def run(ctx: Context) -> dict:
    import resource

    t0 = time.perf_counter()
    data = load(ctx)
    data["folded"] = fold(ctx)
    data["total_s"] = round(time.perf_counter() - t0, 1)
    print(f"  loaded {data}", flush=True)
    queue_rows, queue = line_queue(ctx)
    trend_rows, trend = line_trends(ctx)
    export = line_export(ctx)
    worst_queue = max(r["p99_ms"] for r in queue_rows)
    worst_trends = max(r["p99_ms"] for r in trend_rows)
    return {
        "rows": [*queue_rows, *trend_rows], "data": data, "queue": queue, "trends": trend,
        "export": export, "targets": TARGETS,
        "bench_process_peak_rss_mib": round(
            resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "meets": {"queue_p99": worst_queue < TARGETS["queue_p99_ms"],
                  "trends_p99": worst_trends < TARGETS["trends_p99_ms"]},
    }

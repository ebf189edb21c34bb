"""Cases, 1,000,000 historical and 20,000 open: intake, dispatcher's queue, sweep, stats.

Issue 5 targets, with 1,000,000 historical cases and 20,000 open ones:
- intake (POST /cases: grid lookup, duplicate check, outbox rows) ≥ 40 % of /healthz's
  requests/s in the same run;
- a street dispatcher's queue page (GET /cases?open=true&sort=due_at) p99 < 100 ms;
- the sweep (grid.cases.sweep.sweep) over the 20,000 open cases < 2 s;
- the performance statistics of the district over a year (GET /stats/performance) < 1 s.

Data (INSERT … SELECT from generate_series through the owner role; the case service's rules
are not run, the rows are what it would have written; the secondary indexes of `cases` are
dropped for the load and re-created from their own definitions, then ANALYZE):
- 1,000,000 historical cases over the demo district's 61 grids (a pool of 256 points inside
  each grid from ST_GeneratePoints), reported in the last 365 days, 45 % evaluated, 43 %
  closed, 9 % rejected, 3 % voided; milestones (accepted/dispatched/handled/closed),
  handled_in_time (88 %), closed_in_time (93 %), handling_working_s, rework_count (5 %),
  return_count (4 %), ratings of the evaluated; 10 % handled on the spot by the worker; the
  category a random seeded 小类 and the department its default (grid/demo.py routing);
- 20,000 open cases in the clocked states (reported, accepted, returned, dispatched,
  in_progress, handled, verified) with stage, warn_at/due_at/red_at of a limit between 2
  hours and 4 days: 10 % past due (the sweep gives them a yellow card), about half of those
  also past 150 % (red card); reported in the last few days.
Every row has a unique `code` in the app's own format (district, local date, id) and
version 1.

Measured:
1. POST /cases as the demo worker at /healthz's concurrency, every request a fresh body
   (a random point of the worker's grid, a random 小类 with its required questions answered,
   a fresh client_uuid on half of them): requests/s vs a /healthz measured right before.
   `bench.load.measure` sends one body; here its load generator runs with a shim that
   cycles through a list of bodies (see `_fresh_bodies` and `__main__` below);
2. GET /cases?open=true&sort=due_at (page 1, default page size) as the street dispatcher:
   one user (the latency a dispatcher sees) and /healthz's concurrency (throughput);
   GET /cases/counts?open=true likewise at one user; the two SQL statements of the page
   (count + page) and that of the counts, EXPLAIN ANALYZE and timed on one connection;
3. the sweep: `sweep(s, at)` once in a transaction from this process (app role), timed with
   its statements counted and their time summed (SQL vs Python), then the commit; a second
   sweep right after (nothing left to escalate: the cost of every minute's run);
4. GET /stats/performance?from=<a year ago>&to=<now> as the district administrator at one
   user; its statement EXPLAIN ANALYZEd and timed (the whole days from the daily roll-up
   case_stats_daily, the partial days at either end from `cases`); the roll-up's size, the
   worker's folding of it (compact_stats) timed, and the one-user line again after it.
   The roll-up is filled by the triggers of migration 0009 during the load (the INSERT …
   SELECT of the 1,000,000 pays for it: one grouped insert per statement).
"""

from __future__ import annotations

import contextlib
import itertools
import os
import subprocess
import sys
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the module also runs as the load generator: keep its imports light
    from bench.harness import Context

HISTORICAL = int(os.environ.get("BENCH_CASES_HISTORICAL", 1_000_000))  # smaller: a quick try
OPEN = 20_000
OVERDUE_SHARE = 0.10
POINTS_PER_GRID = 256
DEMO_DISTRICT = "330183"
WORKER_GRID = "330183001001001"
INTAKE_BODIES = 30_000
ONE_USER_SECONDS = 20.0
SEED = 0.20261201
TARGETS = {"intake_vs_healthz": 0.40, "queue_p99_ms": 100.0, "sweep_s": 2.0,
           "stats_p99_ms": 1000.0}
CLOCKED = ("reported", "accepted", "returned", "dispatched", "in_progress", "handled",
           "verified")


# ------------------------------------------------------------------------------ loading

SETUP_SQL = [
    "SELECT setseed(:seed)",
    """CREATE TEMP TABLE bench_grids AS
       SELECT (row_number() OVER (ORDER BY id) - 1)::int AS gi, id, boundary FROM areas
       WHERE level = 'grid' AND code LIKE :district || '%'""",
    """CREATE TEMP TABLE bench_pts AS
       SELECT g.gi, (d.path[1] - 1)::int AS k, g.id AS area_id, d.geom
       FROM bench_grids g, LATERAL ST_Dump(ST_GeneratePoints(g.boundary, :per_grid, 20261201)) d""",
    "CREATE UNIQUE INDEX ON bench_pts (gi, k)",
    """CREATE TEMP TABLE bench_cats AS
       SELECT (row_number() OVER (ORDER BY id) - 1)::int AS ci, id, priority,
              default_department_id AS dept
       FROM case_categories WHERE parent_id IS NOT NULL AND active""",
    "CREATE UNIQUE INDEX ON bench_cats (ci)",
    "ANALYZE bench_pts", "ANALYZE bench_cats",
]

# Common tail of both inserts: the point, category and the app's code format.
_COLUMNS = """id, code, category_id, channel, state, area_id, address, description, priority,
    department_id, self_handled, reported_at, accepted_at, dispatched_at, handled_at,
    handled_in_time, handling_working_s, closed_at, closed_in_time, close_due_at,
    return_count, rework_count, rating, escalation, overdue, stage, stage_unit,
    stage_started_at, warn_at, due_at, red_at, location, gps_crs, gps_raw_lon, gps_raw_lat,
    gps_accuracy_m, created_at, updated_at, version"""

HISTORICAL_SQL = f"""
INSERT INTO cases ({_COLUMNS})
WITH b AS MATERIALIZED (
    SELECT i, nextval(pg_get_serial_sequence('cases', 'id')) AS id,
           now() - random() * interval '365 days' AS rep,
           random() AS rs, random() AS rc, random() AS r1, random() AS r2, random() AS r3,
           random() AS r4, random() AS r5, random() AS r6,
           floor(random() * :ngrids)::int AS gi, floor(random() * :per_grid)::int AS k,
           floor(random() * :ncats)::int AS ci
    FROM generate_series(1, :n) AS i
), s AS (
    SELECT b.*,
           CASE WHEN rs < 0.45 THEN 'evaluated' WHEN rs < 0.88 THEN 'closed'
                WHEN rs < 0.97 THEN 'rejected' ELSE 'voided' END AS state,
           rs < 0.88 AND r1 < 0.10 AS selfh,
           rep + (5 + r2 * 55) * interval '1 minute' AS acc
    FROM b
), m AS (
    SELECT s.*,
           CASE WHEN selfh THEN rep ELSE acc + (5 + r3 * 115) * interval '1 minute' END AS dis,
           CASE WHEN selfh THEN 0.0 WHEN r3 < 0.88 THEN r4 * 2 * 27000
                ELSE 27000 * (1 + r4 * 4) END AS hs
    FROM s
), t AS (
    SELECT m.*, dis + hs * 4 * interval '1 second' AS han FROM m
)
SELECT t.id,
       :district || to_char(t.rep AT TIME ZONE 'Asia/Shanghai', 'YYYYMMDD')
           || lpad(t.id::text, GREATEST(6, length(t.id::text)), '0'),
       c.id,
       CASE WHEN t.selfh OR t.rc < 0.55 THEN 'worker_app' WHEN t.rc < 0.75 THEN 'resident_app'
            WHEN t.rc < 0.92 THEN 'hotline' ELSE 'console' END,
       t.state, p.area_id, '演示路' || (t.i % 500 + 1) || '号', '历史事件 #' || t.i, c.priority,
       CASE WHEN t.state IN ('closed', 'evaluated') AND NOT t.selfh THEN c.dept END,
       t.selfh, t.rep,
       CASE WHEN t.state <> 'rejected' THEN CASE WHEN t.selfh THEN t.rep ELSE t.acc END END,
       CASE WHEN t.state IN ('closed', 'evaluated') THEN t.dis END,
       CASE WHEN t.state IN ('closed', 'evaluated') THEN t.han END,
       CASE WHEN t.state IN ('closed', 'evaluated') THEN t.selfh OR t.r3 < 0.88 END,
       CASE WHEN t.state IN ('closed', 'evaluated') THEN t.hs END,
       CASE WHEN t.state IN ('closed', 'evaluated')
            THEN t.han + (10 + t.r5 * 1400) * interval '1 minute' END,
       CASE WHEN t.state IN ('closed', 'evaluated') THEN t.r5 < 0.93 END,
       CASE WHEN t.state IN ('closed', 'evaluated') THEN t.han + interval '1 day' END,
       CASE WHEN t.state IN ('closed', 'evaluated') AND NOT t.selfh AND t.r2 < 0.04 THEN 1
            ELSE 0 END,
       CASE WHEN t.state IN ('closed', 'evaluated') AND NOT t.selfh AND t.r6 > 0.95 THEN 1
            ELSE 0 END,
       CASE WHEN t.state = 'evaluated' THEN CASE WHEN t.r6 < 0.60 THEN 5 WHEN t.r6 < 0.85 THEN 4
            WHEN t.r6 < 0.95 THEN 3 WHEN t.r6 < 0.98 THEN 2 ELSE 1 END END,
       CASE WHEN t.state IN ('closed', 'evaluated') AND NOT t.selfh AND t.r3 >= 0.88
            THEN CASE WHEN t.r4 > 0.5 THEN 2 ELSE 1 END ELSE 0 END,
       t.state IN ('closed', 'evaluated') AND NOT t.selfh AND t.r3 >= 0.88,
       NULL, NULL, NULL, NULL, NULL, NULL,
       p.geom, 'wgs84', ST_X(p.geom), ST_Y(p.geom), 5 + t.r5 * 15,
       t.rep, GREATEST(t.rep, t.han), 1
FROM t JOIN bench_pts p ON p.gi = t.gi AND p.k = t.k JOIN bench_cats c ON c.ci = t.ci
"""

# Open cases: limit L of the current stage, due = now - u·L (overdue) or now + u·L.
OPEN_SQL = f"""
INSERT INTO cases ({_COLUMNS})
WITH b AS MATERIALIZED (
    SELECT i, nextval(pg_get_serial_sequence('cases', 'id')) AS id,
           interval '2 hours' + random() * interval '4 days' AS lim,
           random() < :overdue AS late, random() AS ru, random() AS rs, random() AS rc,
           random() AS rr, random() AS r5,
           floor(random() * :ngrids)::int AS gi, floor(random() * :per_grid)::int AS k,
           floor(random() * :ncats)::int AS ci
    FROM generate_series(1, :n) AS i
), s AS (
    SELECT b.*,
           CASE WHEN rs < 0.06 THEN 'reported' WHEN rs < 0.12 THEN 'accepted'
                WHEN rs < 0.14 THEN 'returned' WHEN rs < 0.30 THEN 'dispatched'
                WHEN rs < 0.82 THEN 'in_progress' WHEN rs < 0.96 THEN 'handled'
                ELSE 'verified' END AS state,
           CASE WHEN late THEN now() - ru * lim ELSE now() + ru * lim END AS due
    FROM b
), t AS (
    SELECT s.*, due - lim AS start,
           due - lim - CASE WHEN state = 'reported' THEN interval '0'
                            ELSE rr * interval '2 days' END AS rep
    FROM s
)
SELECT t.id,
       :district || to_char(t.rep AT TIME ZONE 'Asia/Shanghai', 'YYYYMMDD')
           || lpad(t.id::text, GREATEST(6, length(t.id::text)), '0'),
       c.id,
       CASE WHEN t.rc < 0.55 THEN 'worker_app' WHEN t.rc < 0.75 THEN 'resident_app'
            WHEN t.rc < 0.92 THEN 'hotline' ELSE 'console' END,
       t.state, p.area_id, '演示路' || (t.i % 500 + 1) || '号', '待办事件 #' || t.i, c.priority,
       CASE WHEN t.state NOT IN ('reported', 'accepted') THEN c.dept END,
       false, t.rep,
       CASE WHEN t.state <> 'reported' THEN t.rep + (t.start - t.rep) * 0.3 END,
       CASE WHEN t.state NOT IN ('reported', 'accepted')
            THEN t.rep + (t.start - t.rep) * 0.6 END,
       CASE WHEN t.state IN ('handled', 'verified') THEN t.rep + (t.start - t.rep) * 0.9 END,
       CASE WHEN t.state IN ('handled', 'verified') THEN true END,
       CASE WHEN t.state IN ('handled', 'verified') THEN 3600 * 7.5 * t.r5 END,
       NULL, NULL, NULL,
       CASE WHEN t.state = 'returned' THEN 1 ELSE 0 END, 0, NULL, 0, false,
       CASE t.state WHEN 'reported' THEN 'accept' WHEN 'accepted' THEN 'dispatch'
            WHEN 'returned' THEN 'dispatch' WHEN 'dispatched' THEN 'sign'
            WHEN 'in_progress' THEN 'handle' WHEN 'handled' THEN 'verify' ELSE 'close' END,
       'working_hours', t.start, t.start + 0.8 * t.lim, t.due, t.start + 1.5 * t.lim,
       p.geom, 'wgs84', ST_X(p.geom), ST_Y(p.geom), 5 + t.r5 * 15,
       t.rep, t.start, 1
FROM t JOIN bench_pts p ON p.gi = t.gi AND p.k = t.k JOIN bench_cats c ON c.ci = t.ci
"""


def load_cases(ctx: Context) -> dict:
    """The volume (once per database): returns counts and the time of each phase."""
    import sqlalchemy as sa

    engine = ctx.owner_engine()
    timing: dict[str, float] = {}
    try:
        with engine.connect() as conn:
            have = conn.scalar(sa.text("SELECT count(*) FROM cases"))
            if have < HISTORICAL:
                t0 = time.perf_counter()
                for stmt in SETUP_SQL:
                    conn.execute(sa.text(stmt), {"seed": SEED, "district": DEMO_DISTRICT,
                                                 "per_grid": POINTS_PER_GRID})
                ngrids = conn.scalar(sa.text("SELECT count(*) FROM bench_grids"))
                ncats = conn.scalar(sa.text("SELECT count(*) FROM bench_cats"))
                # secondary indexes: dropped for the load, re-created as they were
                indexes = conn.execute(sa.text(
                    "SELECT i.relname, pg_get_indexdef(i.oid) FROM pg_index x "
                    "JOIN pg_class i ON i.oid = x.indexrelid "
                    "WHERE x.indrelid = 'cases'::regclass AND NOT EXISTS "
                    "(SELECT 1 FROM pg_constraint c WHERE c.conindid = x.indexrelid)")).all()
                for name, _ in indexes:
                    conn.execute(sa.text(f'DROP INDEX "{name}"'))
                conn.commit()
                timing["setup_s"] = time.perf_counter() - t0
                params = {"district": DEMO_DISTRICT, "per_grid": POINTS_PER_GRID,
                          "ngrids": ngrids, "ncats": ncats}
                t0 = time.perf_counter()
                conn.execute(sa.text(HISTORICAL_SQL), params | {"n": HISTORICAL})
                conn.commit()
                timing["historical_insert_s"] = time.perf_counter() - t0
                t0 = time.perf_counter()
                conn.execute(sa.text(OPEN_SQL), params | {"n": OPEN, "overdue": OVERDUE_SHARE})
                conn.commit()
                timing["open_insert_s"] = time.perf_counter() - t0
                t0 = time.perf_counter()
                conn.execute(sa.text("SET maintenance_work_mem = '256MB'"))
                for _, definition in indexes:
                    conn.execute(sa.text(definition))
                conn.commit()
                timing["indexes_s"] = time.perf_counter() - t0
                timing["indexes"] = len(indexes)
            conn.commit()  # (a re-run on loaded data: the count above began a transaction)
            t0 = time.perf_counter()
            conn.execution_options(isolation_level="AUTOCOMMIT").execute(
                sa.text("VACUUM ANALYZE cases"))
            timing["vacuum_analyze_s"] = time.perf_counter() - t0
            counts = dict(conn.execute(sa.text(
                "SELECT state, count(*) FROM cases GROUP BY state ORDER BY 2 DESC")).all())
            sizes = conn.execute(sa.text(
                "SELECT pg_size_pretty(pg_table_size('cases')), "
                "pg_size_pretty(pg_indexes_size('cases'))")).one()
            late = conn.execute(sa.text(
                "SELECT count(*) FILTER (WHERE due_at < now()), "
                "count(*) FILTER (WHERE red_at < now()) FROM cases "
                "WHERE state IN :clocked").bindparams(sa.bindparam("clocked", expanding=True)),
                {"clocked": list(CLOCKED)}).one()
            bad_points = conn.scalar(sa.text(
                "SELECT count(*) FROM (SELECT c.id FROM cases c JOIN areas a ON a.id = c.area_id "
                "WHERE c.id % 1000 = 0 AND NOT ST_Covers(a.boundary, c.location)) x"))
    finally:
        engine.dispose()
    if bad_points:
        raise RuntimeError(f"{bad_points} sampled cases lie outside their grid")
    timing = {k: round(v, 1) if isinstance(v, float) else v for k, v in timing.items()}
    return {"by_state": counts, "table_size": sizes[0], "indexes_size": sizes[1],
            "open_past_due": late[0], "open_past_red": late[1], "timing": timing}


# ------------------------------------------------------------------------------ helpers


def _actor(s: Any, username: str) -> Any:
    """The actor the server would build for a demo account (roles, permissions, scope)."""
    import sqlalchemy as sa

    from grid.areas.service import resolve_scope
    from server.auth.actor import Actor
    from server.auth.models import User, UserRole
    from server.auth.permissions import permissions_for

    user_id = s.scalar(sa.select(User.id).where(User.username == username))
    roles = frozenset(s.scalars(sa.select(UserRole.role).where(UserRole.user_id == user_id)))
    return resolve_scope(s, Actor(user_id=user_id, roles=roles,
                                  permissions=permissions_for(roles)))


class Page:
    def __init__(self, page: int = 1, page_size: int = 10) -> None:
        self.page, self.page_size, self.item_count = page, page_size, None


@contextlib.contextmanager
def captured(engine: Any):
    """Statements sent on `engine` (text with :named parameters, parameters, ms each)."""
    import re

    import sqlalchemy as sa

    seen: list[dict] = []

    def before(conn, cursor, statement, parameters, context, executemany):
        conn.info["bench_t0"] = time.perf_counter()

    def after(conn, cursor, statement, parameters, context, executemany):
        ms = (time.perf_counter() - conn.info.pop("bench_t0")) * 1000
        params = parameters if isinstance(parameters, dict) else {}
        seen.append({"sql": re.sub(r"%\((\w+)\)s", r":\1", statement).replace("%%", "%"),
                     "params": dict(params), "ms": ms, "many": executemany})

    sa.event.listen(engine, "before_cursor_execute", before)
    sa.event.listen(engine, "after_cursor_execute", after)
    try:
        yield seen
    finally:
        sa.event.remove(engine, "before_cursor_execute", before)
        sa.event.remove(engine, "after_cursor_execute", after)


def explain(ctx: Context, sql: str, params: dict) -> list[str]:
    import sqlalchemy as sa

    with ctx.engine.connect() as conn:
        plan = conn.execute(sa.text("EXPLAIN (ANALYZE, BUFFERS) " + sql), params).scalars().all()
        conn.rollback()
    return plan


def _fresh_bodies() -> contextlib.AbstractContextManager:
    """While active, bench.load.measure starts this module as its load generator (the same
    as bench._loadgen, but a list body is cycled through, one element per request)."""
    from unittest import mock

    from bench import load

    real = subprocess.Popen

    def popen(args, *a, **kw):
        if list(args[-2:]) == ["-m", "bench._loadgen"]:
            args = [*args[:-1], "bench.benchmarks.cases"]
        return real(args, *a, **kw)

    return mock.patch.object(load.subprocess, "Popen", popen)


def one_user(ctx: Context, label: str, path: str | list[str], login: str) -> dict:
    return ctx.measure(label, path, users=1, seconds=ONE_USER_SECONDS,
                       headers=ctx.auth_headers(login))


# ------------------------------------------------------------------------------ lines


def intake_bodies(ctx: Context) -> list[dict]:
    import random
    import uuid

    import sqlalchemy as sa

    rng = random.Random(20261201)
    with ctx.engine.connect() as conn:
        points = conn.execute(sa.text(
            "SELECT ST_X(d.geom), ST_Y(d.geom) FROM areas a, "
            "LATERAL ST_Dump(ST_GeneratePoints(a.boundary, :n, 7)) d WHERE a.code = :g"),
            {"n": 5000, "g": WORKER_GRID}).all()
        categories = conn.execute(sa.text(
            "SELECT id, code, attributes FROM case_categories "
            "WHERE parent_id IS NOT NULL AND active ORDER BY code")).all()
    bodies = []
    for i in range(INTAKE_BODIES):
        lon, lat = points[rng.randrange(len(points))]
        cid, code, attributes = categories[rng.randrange(len(categories))]
        answers = {a["code"]: (a["values"][rng.randrange(len(a["values"]))]["key"]
                               if a.get("values") else rng.randint(1, 50))
                   for a in attributes if a.get("required")}
        body = {"category_id": cid, "location": {"lon": round(lon, 7), "lat": round(lat, 7),
                                                 "accuracy_m": round(rng.uniform(3, 20), 1)},
                "description": f"基准上报 {code} #{i}", "address": f"东门路{rng.randint(1, 99)}号",
                "attributes": answers}
        if i % 2:
            body["client_uuid"] = str(uuid.uuid4())
        bodies.append(body)
    return bodies


def line_intake(ctx: Context) -> tuple[list[dict], dict]:
    import requests
    import sqlalchemy as sa

    headers = ctx.auth_headers("worker")
    bodies = intake_bodies(ctx)
    checked = bodies[-20:]  # not in the measured cycle's first pass
    dup_seen = 0
    for body in checked:
        resp = requests.post(f"{ctx.base_url}/cases", json=body, headers=headers, timeout=30)
        if resp.status_code != 201:
            raise RuntimeError(f"POST /cases: {resp.status_code} {resp.text[:300]}")
        dup_seen += bool(resp.json().get("likely_duplicates"))
    with ctx.engine.connect() as conn:
        before = conn.scalar(sa.text("SELECT max(id) FROM cases"))
    base = ctx.baseline(fresh=True)
    with _fresh_bodies():
        row = ctx.measure("POST /cases (worker)", "/cases", method="POST",
                          body=bodies[:-20], headers=headers)
    with ctx.engine.connect() as conn:
        made = conn.execute(sa.text(
            "SELECT count(*), count(*) FILTER (WHERE channel = 'worker_app'), "
            "(SELECT count(*) FROM outbox) FROM cases WHERE id > :b"),
            {"b": before}).one()
    # bodies near the end of the list: the measured line did not reach them (no replays)
    extra = {"profile": profile_intake(ctx, bodies[-121:-20]), "bodies": len(bodies) - 20,
             "checked_first": len(checked),
             "checked_with_duplicates": dup_seen, "created_during_line": made[0],
             "outbox_rows_total": made[2]}
    print(f"  intake: {made[0]} cases created during warm-up + window "
          f"({row['requests']} requests in the window)", flush=True)
    return [base, row], extra


def profile_intake(ctx: Context, bodies: list[dict], n: int = 100) -> dict:
    """n POST /cases through the Flask test client in this process (the app built from the
    run's environment, the worker's token): statements per request by kind, and the
    functions of the project where the time goes (cProfile, cumulative)."""
    import cProfile
    import io
    import pstats
    import re

    import sqlalchemy as sa

    from server.app import create_app
    from server.config import Config

    # the server's settings: string settings its environment sets, the log level it runs at
    overrides = {k: v for k, v in ctx.env.items()
                 if k.isupper() and isinstance(getattr(Config, k, None), str)}
    app = create_app(overrides | {"LOG_LEVEL": ctx.env.get("LOG_LEVEL", "WARNING")})
    client = app.test_client()
    headers = ctx.auth_headers("worker")
    client.post("/cases", json=bodies[0], headers=headers)  # warm: imports, pool
    profiler = cProfile.Profile()
    with captured(sa.engine.Engine) as stmts:
        t0 = time.perf_counter()
        profiler.enable()
        for body in bodies[1:n + 1]:
            resp = client.post("/cases", json=body, headers=headers)
            if resp.status_code not in (200, 201):
                raise RuntimeError(f"profile POST /cases: {resp.status_code} "
                                   f"{resp.get_data(as_text=True)[:300]}")
        profiler.disable()
        wall_ms = (time.perf_counter() - t0) * 1000 / n
    kinds: dict[str, list] = {}
    for st in stmts:
        kinds.setdefault(" ".join(st["sql"].split())[:100], []).append(st["ms"])
    by_statement = sorted(({"statement": k, "per_request": round(len(v) / n, 2),
                            "ms_per_request": round(sum(v) / n, 3)}
                           for k, v in kinds.items()), key=lambda r: -r["ms_per_request"])
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out)
    stats.sort_stats("cumulative").print_stats(
        re.escape(str(ctx.root)) + r"/(server|grid|geo|notifications)/", 25)
    sql_ms = sum(st["ms"] for st in stmts) / n
    print(f"  intake in-process: {wall_ms:.1f} ms per request, {len(stmts) / n:.1f} statements "
          f"({sql_ms:.1f} ms in round trips)", flush=True)
    return {"requests": n, "ms_per_request": round(wall_ms, 2),
            "statements_per_request": round(len(stmts) / n, 1),
            "sql_ms_per_request": round(sql_ms, 2), "by_statement": by_statement[:25],
            "cprofile": out.getvalue().splitlines()[:60]}


def line_queue(ctx: Context) -> tuple[list[dict], dict]:
    import requests
    from sqlalchemy.orm import Session

    from grid.cases import queue

    headers = ctx.auth_headers("dispatcher")
    path = "/cases?open=true&sort=due_at"
    resp = requests.get(ctx.base_url + path, headers=headers, timeout=30)
    if resp.status_code != 200 or len(resp.json()) != 10:
        raise RuntimeError(f"GET {path}: {resp.status_code} {resp.text[:300]}")
    pagination = resp.headers.get("X-Pagination")
    counts = requests.get(ctx.base_url + "/cases/counts?open=true", headers=headers,
                          timeout=30).json()
    # the SQL of the page and of the counts, as the service sends them
    with Session(ctx.engine) as s:
        actor = _actor(s, "dispatcher")
        with captured(ctx.engine) as page_sql:
            queue.list_cases(s, actor, {"open": True, "sort": "due_at"}, Page())
        with captured(ctx.engine) as count_sql:
            queue.count_by_state(s, actor, {"open": True})
    sql = {"count": page_sql[-2], "page": page_sql[-1], "counts": count_sql[-1]}
    plans = {k: explain(ctx, v["sql"], v["params"]) for k, v in sql.items()}
    timed = {k: ctx.sql_timings(v["sql"], v["params"], n=30, warmup=3)
             for k, v in sql.items()}
    for k, t in timed.items():
        print(f"  SQL queue {k:<7} p50 {t['p50']:.2f} ms  p99 {t['p99']:.2f} ms", flush=True)
    rows = [one_user(ctx, "GET /cases open due_at 1u", path, "dispatcher"),
            one_user(ctx, "GET /cases/counts 1u", "/cases/counts?open=true", "dispatcher")]
    base = ctx.baseline(fresh=True)
    rows += [base, ctx.measure("GET /cases open due_at", path, headers=headers)]
    return rows, {"pagination": pagination, "counts": counts, "captured": sql,
                  "sql": {k: v["sql"] for k, v in sql.items()}, "sql_ms": timed,
                  "explain_analyze": plans}


def line_sweep(ctx: Context) -> dict:
    from sqlalchemy.orm import Session

    from grid.cases import sweep
    from server.clock import now

    out: dict[str, Any] = {}
    for attempt in ("first", "second"):
        with Session(ctx.engine) as s, captured(ctx.engine) as stmts:
            at = now()
            t0 = time.perf_counter()
            done = sweep.sweep(s, at)
            t1 = time.perf_counter()
            s.commit()
            t2 = time.perf_counter()
        kinds: dict[str, list] = {}
        for st in stmts:
            key = " ".join(st["sql"].split())[:90]
            kinds.setdefault(key, []).append(st["ms"])
        top = sorted(({"statement": k, "count": len(v), "ms": round(sum(v), 1)}
                      for k, v in kinds.items()), key=lambda r: -r["ms"])[:10]
        sql_ms = sum(st["ms"] for st in stmts)
        out[attempt] = {"escalated": done, "sweep_s": round(t1 - t0, 3),
                        "commit_s": round(t2 - t1, 3), "statements": len(stmts),
                        "sql_s": round(sql_ms / 1000, 3), "by_statement": top}
        print(f"  sweep ({attempt}): {done} in {t1 - t0:.2f} s + commit {t2 - t1:.2f} s; "
              f"{len(stmts)} statements, {sql_ms / 1000:.2f} s of it in SQL round trips",
              flush=True)
    return out


def line_stats(ctx: Context) -> tuple[list[dict], dict]:
    from datetime import UTC, datetime, timedelta

    import requests
    from sqlalchemy.orm import Session

    from grid.cases import stats
    from server.config import Config

    end = datetime.now(UTC).replace(microsecond=0)
    start = end - timedelta(days=365)
    iso = "%Y-%m-%dT%H:%M:%SZ"
    path = f"/stats/performance?from={start:{iso}}&to={end:{iso}}"
    headers = ctx.auth_headers("district")
    t0 = time.perf_counter()
    resp = requests.get(ctx.base_url + path, headers=headers, timeout=60)
    first_ms = (time.perf_counter() - t0) * 1000
    if resp.status_code != 200:
        raise RuntimeError(f"GET {path}: {resp.status_code} {resp.text[:300]}")
    body = resp.json()
    with Session(ctx.engine) as s:
        actor = _actor(s, "district")
        with captured(ctx.engine) as stmts:
            t0 = time.perf_counter()
            stats.performance(s, actor, {"start": start, "end": end},
                                Config.CASE_SCORE_WEIGHTS)
            in_process_ms = (time.perf_counter() - t0) * 1000
    stats_sql = [st for st in stmts if "GROUPING SETS" in st["sql"]]
    # one statement (three before GROUPING SETS: total, departments, grids)
    names = [f"statement_{i + 1}" for i in range(len(stats_sql))]
    plans = {n: explain(ctx, st["sql"], st["params"])
             for n, st in zip(names, stats_sql, strict=True)}
    timed = {n: ctx.sql_timings(st["sql"], st["params"], n=5, warmup=1)
             for n, st in zip(names, stats_sql, strict=True)}
    for n, t in timed.items():
        print(f"  SQL stats {n:<11} p50 {t['p50']:.0f} ms  max {t['max']:.0f} ms", flush=True)
    row = one_user(ctx, "GET /stats/performance 1u", path, "district")
    rollup = _rollup_size(ctx)
    # the worker's folding of the roll-up (rows appended by the load and the intake line)
    with Session(ctx.engine) as s:
        t0 = time.perf_counter()
        folded = stats.compact_stats(s)
        s.commit()
        fold_s = time.perf_counter() - t0
    print(f"  roll-up: {rollup['rows']} rows for {rollup['keys']} keys ({rollup['size']}); "
          f"folded {folded} in {fold_s:.2f} s", flush=True)
    folded_row = one_user(ctx, "GET /stats/performance folded 1u", path, "district")
    return [row, folded_row], {
        "first_request_ms": round(first_ms, 1), "rollup": rollup,
        "fold": {**folded, "s": round(fold_s, 2)}, "rollup_after_fold": _rollup_size(ctx),
        "in_process_ms": round(in_process_ms, 1), "statements": len(stmts),
        "total": body.get("total"), "departments": len(body.get("departments", [])),
        "grids": len(body.get("grids", [])), "sql_ms": timed,
        "sql": {n: st["sql"] for n, st in zip(names, stats_sql, strict=True)},
        "explain_analyze": plans}


def _rollup_size(ctx: Context) -> dict:
    import sqlalchemy as sa

    with ctx.engine.connect() as conn:
        rows, keys, size = conn.execute(sa.text(
            "SELECT count(*), count(DISTINCT (day, area_id, department_id)), "
            "pg_size_pretty(pg_total_relation_size('case_stats_daily')) "
            "FROM case_stats_daily")).one()
    return {"rows": rows, "keys": keys, "size": size}


def run(ctx: Context) -> dict:
    import resource

    t0 = time.perf_counter()
    loaded = load_cases(ctx)
    loaded["total_s"] = round(time.perf_counter() - t0, 1)
    print(f"  loaded in {loaded['total_s']} s {loaded['timing']}: {loaded['by_state']}; "
          f"table {loaded['table_size']}, indexes {loaded['indexes_size']}; open past due "
          f"{loaded['open_past_due']}, past red {loaded['open_past_red']}", flush=True)

    intake_rows, intake = line_intake(ctx)
    queue_rows, queue = line_queue(ctx)
    sweep = line_sweep(ctx)
    stats_rows, stats = line_stats(ctx)
    for v in queue.pop("captured").values():
        v["params"] = {k: str(x) for k, x in v["params"].items()}

    intake_row = intake_rows[1]
    queue_1u = queue_rows[0]
    stats_row = stats_rows[0]
    sweep_s = sweep["first"]["sweep_s"] + sweep["first"]["commit_s"]
    bench_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {
        "rows": [*intake_rows, *queue_rows, *stats_rows],
        "data": loaded,
        "intake": intake,
        "queue": queue,
        "sweep": sweep,
        "stats": stats,
        "bench_process_peak_rss_mib": round(bench_rss, 1),
        "targets": TARGETS,
        "meets": {
            "intake_vs_healthz": intake_row["vs_healthz"] >= TARGETS["intake_vs_healthz"],
            "queue_p99_1_user": queue_1u["p99_ms"] < TARGETS["queue_p99_ms"],
            "sweep_s": sweep_s < TARGETS["sweep_s"],
            "stats_p99": stats_row["p99_ms"] < TARGETS["stats_p99_ms"],
        },
    }


# ------------------------------------------------------------------------------ load generator


def _loadgen_main() -> int:
    """bench._loadgen with one change: a JSON body that is a list of objects is cycled
    through (one element per request, shared by all users) instead of sent whole."""
    from locust import FastHttpUser  # first: gevent's monkey-patching

    from bench import _loadgen

    class FreshBodies(FastHttpUser):
        abstract = True

        def __init__(self, *args, **kwargs) -> None:
            super().__init__(*args, **kwargs)
            send = self.client.request

            def request(method, path, **kw):
                bodies = kw.get("json")
                if isinstance(bodies, list) and bodies and isinstance(bodies[0], dict):
                    kw["json"] = next(_CYCLES.setdefault(id(bodies), itertools.cycle(bodies)))
                return send(method, path, **kw)

            self.client.request = request

    _loadgen.FastHttpUser = FreshBodies
    return _loadgen.main()


_CYCLES: dict[int, Any] = {}

if __name__ == "__main__":
    sys.exit(_loadgen_main())

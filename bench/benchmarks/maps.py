"""Maps: vector tiles through HTTP vs their ST_AsMVT statement, grid profile and map.

Issue 7 targets:
- tile time at z12/z14/z16 through HTTP against the same ST_AsMVT statement run directly
  (psycopg2, one connection, same run): HTTP p50 / SQL p50 ≤ 1.3 at z14 and z16;
- tile p99 < 50 ms at z14;
- grid profile (GET /areas/{id}/profile) p99 < 100 ms;
- grid map GeoJSON (GET /areas/{id}/map) p99 < 150 ms.

Data: the issue's volumes by default (env vars scale them down for a quick try):
- BENCH_MAPS_BUILDINGS (default 30,000) buildings over the demo district's 61 grids, an
  entrance point each from a pool of ST_GeneratePoints inside the grid (INSERT … SELECT
  from generate_series through the owner role), then ANALYZE;
- BENCH_MAPS_PERSONS (default 1,000,000) persons: ROOMS_PER_BUILDING rooms with one
  household each in every benchmark building, the persons spread over those households
  (INSERT … SELECT with the persons' secondary indexes dropped and re-created), so the
  buildings' household and person counts are real work;
- BENCH_MAPS_CASES (default 1,000,000) historical cases plus 20,000 open ones, loaded with
  bench/benchmarks/cases.py's own statements (tiles show the open ones).

Measured, as the demo "dispatcher" (street scope), layers "buildings,cases":
1. for z = 12, 14, 16 a 3 × 3 block of tiles centred on the tile holding
   ST_PointOnSurface of grid 330183001001001 (the worker's grid): one user (latency) and
   /healthz's concurrency (throughput), the paths cycled through;
2. the SQL the app sends for those tiles, captured in-process (grid.maps.tiles.build_tile
   with the dispatcher's actor and the server's settings, a before/after_cursor_execute
   listener), timed with ctx.sql_timings on one connection after
   `SET max_parallel_workers_per_gather = 0` (what build_tile sets locally) and
   `SET jit = off` (what the app's engine sets for every session);
3. GET /areas/{id}/profile and GET /areas/{id}/map of that grid at one user.
"""

from __future__ import annotations

import math
import os
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bench.harness import Context

BUILDINGS = int(os.environ.get("BENCH_MAPS_BUILDINGS", 30_000))
CASES = int(os.environ.get("BENCH_MAPS_CASES", 1_000_000))
PERSONS = int(os.environ.get("BENCH_MAPS_PERSONS", 1_000_000))
ROOMS_PER_BUILDING = 12  # one household each: 1M persons ≈ 2.8 per household
DEMO_DISTRICT = "330183"
GRID = "330183001001001"
LAYERS = "buildings,cases"
ZOOMS = (12, 14, 16)
LOGIN = "dispatcher"
ONE_USER_SECONDS = 15.0
SEED = 0.20261201
TARGETS = {"ratio_z14": 1.3, "ratio_z16": 1.3, "tile_p99_z14_ms": 50.0,
           "profile_p99_ms": 100.0, "map_p99_ms": 150.0}

BUILDINGS_SQL = """
INSERT INTO buildings (source, area_id, name, address, use, floors, units, location,
    gps_crs, gps_raw_lon, gps_raw_lat, gps_accuracy_m, is_crowded_rental, is_unsafe,
    is_live_work_store, needs_review, version)
WITH b AS MATERIALIZED (
    SELECT i, floor(random() * :ngrids)::int AS gi, floor(random() * :per_grid)::int AS k,
           random() AS r
    FROM generate_series(1, :n) AS i
)
SELECT 'import', p.area_id, '基准楼' || b.i || '幢', '演示路' || (b.i % 500 + 1) || '号',
       CASE WHEN b.r < 0.8 THEN 'residential' WHEN b.r < 0.9 THEN 'commercial'
            ELSE 'mixed' END,
       1 + (b.i % 30), 1 + (b.i % 4), p.geom, 'wgs84', ST_X(p.geom), ST_Y(p.geom), 5.0,
       false, false, false, false, 1
FROM b JOIN bench_pts p ON p.gi = b.gi AND p.k = b.k
"""


# Rooms (one household each) in every benchmark building, then persons spread over those
# households; sex and birth date random (the profile's age bands), no ID numbers or phones.
PEOPLE_SQL = [
    """
INSERT INTO houses (source, area_id, building_id, floor, room, use, needs_review, version)
SELECT 'import', b.area_id, b.id, 1 + (k - 1) / 4,
       (100 * (1 + (k - 1) / 4) + 1 + (k - 1) % 4)::text, 'owner_occupied', false, 1
FROM buildings b CROSS JOIN generate_series(1, :rooms) AS k
WHERE b.source = 'import'
""",
    """
INSERT INTO households (source, area_id, house_id, type, needs_review, version)
SELECT 'import', h.area_id, h.id, 'registered', false, 1 FROM houses h
WHERE h.source = 'import'
""",
    """
INSERT INTO persons (source, area_id, household_id, name, relation_to_head, sex, birth_date,
    population_type, registration_situation, status, needs_review, version)
WITH hh AS MATERIALIZED (
    SELECT id, area_id, row_number() OVER (ORDER BY id) AS rn
    FROM households WHERE source = 'import'
), n AS (SELECT count(*) AS n FROM hh)
SELECT 'import', hh.area_id, hh.id, '居民' || i,
       CASE WHEN i <= (SELECT n FROM n) THEN 'head' ELSE 'other' END,
       CASE WHEN random() < 0.5 THEN 'M' ELSE 'F' END,
       date '2026-01-01' - (random() * 95 * 365)::int,
       CASE WHEN random() < 0.8 THEN 'registered' ELSE 'floating' END, 'both_here', 'present',
       false, 1
FROM generate_series(1, :n) AS i
JOIN hh ON hh.rn = 1 + (i - 1) % (SELECT n FROM n)
""",
]


def load_people(ctx: Context) -> dict:
    """PERSONS persons in ROOMS_PER_BUILDING rooms (a household each) of every benchmark
    building (once per database), with the secondary indexes of persons dropped for the
    load and re-created, then VACUUM ANALYZE (index-only counts need the visibility map)."""
    import sqlalchemy as sa

    engine = ctx.owner_engine()
    out: dict = {}
    try:
        with engine.connect() as conn:
            have = conn.scalar(sa.text("SELECT count(*) FROM persons"))
            if have < PERSONS:
                t0 = time.perf_counter()
                conn.execute(sa.text(PEOPLE_SQL[0]), {"rooms": ROOMS_PER_BUILDING})
                conn.execute(sa.text(PEOPLE_SQL[1]))
                conn.commit()
                out["houses_households_s"] = round(time.perf_counter() - t0, 1)
                t0 = time.perf_counter()
                indexes = conn.execute(sa.text(
                    "SELECT i.relname, pg_get_indexdef(i.oid) FROM pg_index x "
                    "JOIN pg_class i ON i.oid = x.indexrelid "
                    "WHERE x.indrelid = 'persons'::regclass AND NOT EXISTS "
                    "(SELECT 1 FROM pg_constraint c WHERE c.conindid = x.indexrelid)")).all()
                for name, _ in indexes:
                    conn.execute(sa.text(f'DROP INDEX "{name}"'))
                conn.execute(sa.text(PEOPLE_SQL[2]), {"n": PERSONS - have})
                conn.execute(sa.text("SET maintenance_work_mem = '256MB'"))
                for _, definition in indexes:
                    conn.execute(sa.text(definition))
                conn.commit()
                out["persons_s"] = round(time.perf_counter() - t0, 1)
            conn.commit()
            t0 = time.perf_counter()
            auto = conn.execution_options(isolation_level="AUTOCOMMIT")
            for table in ("houses", "households", "persons"):
                auto.execute(sa.text(f"VACUUM ANALYZE {table}"))
            out["vacuum_analyze_s"] = round(time.perf_counter() - t0, 1)
            out.update(conn.execute(sa.text(
                "SELECT (SELECT count(*) FROM houses) AS houses, "
                "(SELECT count(*) FROM households) AS households, "
                "(SELECT count(*) FROM persons) AS persons")).one()._asdict())
    finally:
        engine.dispose()
    return out


def load_buildings(ctx: Context) -> dict:
    import sqlalchemy as sa

    from bench.benchmarks import cases as cb

    engine = ctx.owner_engine()
    out: dict = {}
    try:
        with engine.connect() as conn:
            have = conn.scalar(sa.text("SELECT count(*) FROM buildings"))
            if have < BUILDINGS:
                t0 = time.perf_counter()
                for stmt in cb.SETUP_SQL[:4]:  # seed, bench_grids, bench_pts (+ index)
                    conn.execute(sa.text(stmt), {"seed": SEED, "district": DEMO_DISTRICT,
                                                 "per_grid": cb.POINTS_PER_GRID})
                ngrids = conn.scalar(sa.text("SELECT count(*) FROM bench_grids"))
                conn.execute(sa.text(BUILDINGS_SQL), {"ngrids": ngrids,
                                                      "per_grid": cb.POINTS_PER_GRID,
                                                      "n": BUILDINGS - have})
                conn.commit()
                out["insert_s"] = round(time.perf_counter() - t0, 1)
            conn.execution_options(isolation_level="AUTOCOMMIT").execute(
                sa.text("VACUUM ANALYZE buildings"))
            out["buildings"] = conn.scalar(sa.text("SELECT count(*) FROM buildings"))
    finally:
        engine.dispose()
    return out


def tile_xy(lon: float, lat: float, z: int) -> tuple[int, int]:
    n = 2 ** z
    x = int((lon + 180.0) / 360.0 * n)
    lat_r = math.radians(lat)
    y = int((1.0 - math.asinh(math.tan(lat_r)) / math.pi) / 2.0 * n)
    return x, y


def _app(ctx: Context):
    from server.app import create_app
    from server.config import Config

    overrides = {k: v for k, v in ctx.env.items()
                 if k.isupper() and isinstance(getattr(Config, k, None), str)}
    return create_app(overrides | {"LOG_LEVEL": ctx.env.get("LOG_LEVEL", "WARNING")})


def capture_tile_sql(ctx: Context, tiles_zxy: list[tuple[int, int, int]]) -> list[dict]:
    """The ST_AsMVT statement build_tile sends for each tile (text with :named params)."""
    from sqlalchemy.orm import Session

    from bench.benchmarks.cases import _actor, captured
    from grid.maps import tiles

    app = _app(ctx)
    config = app.config
    chosen = tiles.parse_layers(LAYERS)
    out = []
    with app.app_context(), Session(ctx.engine) as s:
        actor = _actor(s, LOGIN)
        for z, x, y in tiles_zxy:
            tctx = tiles.TileContext(z, x, y, actor,
                                     detail_zoom=config["TILE_DETAIL_MIN_ZOOM"],
                                     max_features=config["TILE_MAX_FEATURES"],
                                     area_min_zoom=config["TILE_AREA_MIN_ZOOM"],
                                     public_areas=config["MAP_PUBLIC_AREAS"])
            walls, sqls = [], []
            for _ in range(3):  # the last of three (warm): wall time vs its statements'
                with captured(ctx.engine) as stmts:
                    t0 = time.perf_counter()
                    data = tiles.build_tile(s, tctx, chosen)
                    walls.append((time.perf_counter() - t0) * 1000)
                s.rollback()
                sqls.append(sum(st["ms"] for st in stmts))
            mvt = [st for st in stmts if "ST_AsMVT" in st["sql"]]
            if len(mvt) != 1:
                raise RuntimeError(f"tile {z}/{x}/{y}: {len(mvt)} ST_AsMVT statements")
            out.append({"z": z, "x": x, "y": y, "sql": mvt[0]["sql"],
                        "params": mvt[0]["params"], "bytes": len(data),
                        "in_process_ms": round(walls[-1], 2),
                        "in_process_sql_ms": round(sqls[-1], 2)})
    return out


def time_sql(ctx: Context, captured_tiles: list[dict], n: int) -> dict:
    """ctx.sql_timings of the captured statements (params cycled), parallel workers off
    for the session as build_tile does for its transaction, and JIT off as the app's
    engine does."""
    import sqlalchemy as sa

    by_sql: dict[str, list[dict]] = {}
    for t in captured_tiles:
        by_sql.setdefault(t["sql"], []).append(t["params"])
    # ctx.sql_timings runs on a pooled connection of ctx.engine: set it on every one
    ev = sa.event

    def on_connect(dbapi_conn, record):
        cur = dbapi_conn.cursor()
        cur.execute("SET max_parallel_workers_per_gather = 0")
        cur.execute("SET jit = off")
        cur.close()
        dbapi_conn.commit()  # a rolled-back SET would be undone

    ctx.engine.dispose()
    ev.listen(ctx.engine, "connect", on_connect)
    try:
        parts = []
        for sql, params in by_sql.items():
            parts.append(ctx.sql_timings(sql, params, n=max(n // len(by_sql), 20), warmup=9))
    finally:
        ev.remove(ctx.engine, "connect", on_connect)
        ctx.engine.dispose()
    if len(parts) == 1:
        return parts[0] | {"statements": 1}
    # several distinct texts: report each, and the worst p50/p99 as the summary
    worst = {k: max(p[k] for p in parts) for k in ("p50", "p99")}
    return {**worst, "statements": len(parts), "each": parts}


def run(ctx: Context) -> dict:
    import requests
    import sqlalchemy as sa

    from bench.benchmarks import cases as cb

    t0 = time.perf_counter()
    cb.HISTORICAL = CASES
    cases_loaded = cb.load_cases(ctx)
    buildings_loaded = load_buildings(ctx)
    people_loaded = load_people(ctx)
    load_s = round(time.perf_counter() - t0, 1)
    print(f"  loaded in {load_s} s: buildings {buildings_loaded}, people {people_loaded}, "
          f"cases {cases_loaded['by_state']}", flush=True)

    with ctx.engine.connect() as conn:
        area_id, lon, lat = conn.execute(sa.text(
            "SELECT id, ST_X(ST_PointOnSurface(boundary)), ST_Y(ST_PointOnSurface(boundary)) "
            "FROM areas WHERE code = :g"), {"g": GRID}).one()
    headers = ctx.auth_headers(LOGIN)

    rows: list[dict] = []
    per_zoom: dict[str, dict] = {}
    for z in ZOOMS:
        cx, cy = tile_xy(lon, lat, z)
        zxy = [(z, cx + dx, cy + dy) for dy in (-1, 0, 1) for dx in (-1, 0, 1)]
        paths = [f"/tiles/{LAYERS}/{z}/{x}/{y}.mvt" for z, x, y in zxy]
        sizes = []
        for p in paths:
            resp = requests.get(ctx.base_url + p, headers=headers, timeout=60)
            if resp.status_code != 200:
                raise RuntimeError(f"GET {p}: {resp.status_code} {resp.text[:300]}")
            sizes.append(len(resp.content))
        cap = capture_tile_sql(ctx, zxy)
        sql = time_sql(ctx, cap, n=300)
        one = ctx.measure(f"tile z{z} 1u", paths, users=1, seconds=ONE_USER_SECONDS,
                          headers=headers)
        rows.append(one)
        ratio = one["p50_ms"] / sql["p50"] if sql["p50"] else None
        per_zoom[f"z{z}"] = {"center_tile": [z, cx, cy], "paths": paths, "http_bytes": sizes,
                             "in_process_bytes": [c["bytes"] for c in cap],
                             "in_process_build_tile_ms": [c["in_process_ms"] for c in cap],
                             "in_process_sql_ms": [c["in_process_sql_ms"] for c in cap],
                             "sql_ms": sql, "http_1u": one,
                             "ratio_http_p50_over_sql_p50": round(ratio, 2) if ratio else None,
                             "sql": cap[0]["sql"],
                             "params_example": {k: str(v) for k, v in cap[0]["params"].items()}}
        py_ms = sum(c["in_process_ms"] - c["in_process_sql_ms"] for c in cap) / len(cap)
        per_zoom[f"z{z}"]["in_process_python_ms_mean"] = round(py_ms, 2)
        print(f"  z{z}: build_tile in-process: {py_ms:.2f} ms outside SQL (mean of tiles)",
              flush=True)
        print(f"  z{z}: HTTP p50 {one['p50_ms']:.2f} p99 {one['p99_ms']:.2f} ms | SQL p50 "
              f"{sql['p50']:.2f} p99 {sql['p99']:.2f} ms | ratio {ratio:.2f} | bytes "
              f"{min(sizes)}-{max(sizes)}", flush=True)

    profile = ctx.measure("GET /areas/{grid}/profile 1u", f"/areas/{area_id}/profile",
                          users=1, seconds=ONE_USER_SECONDS, headers=headers)
    gmap = ctx.measure("GET /areas/{grid}/map 1u", f"/areas/{area_id}/map",
                       users=1, seconds=ONE_USER_SECONDS, headers=headers)
    rows += [profile, gmap]

    throughput: dict[str, dict] = {}
    if os.environ.get("BENCH_MAPS_THROUGHPUT", "1") != "0":
        base = ctx.baseline(fresh=True)
        rows.append(base)
        for z in ZOOMS:
            row = ctx.measure(f"tile z{z}", per_zoom[f"z{z}"]["paths"], headers=headers)
            rows.append(row)
            throughput[f"z{z}"] = row

    z14, z16 = per_zoom["z14"], per_zoom["z16"]
    return {
        "rows": rows,
        "data": {"buildings": buildings_loaded, "people": people_loaded, "cases": cases_loaded,
                 "load_s": load_s},
        "grid": {"code": GRID, "area_id": area_id, "point": [lon, lat]},
        "tiles": per_zoom,
        "throughput": throughput,
        "profile": profile,
        "map": gmap,
        "targets": TARGETS,
        "meets": {
            "ratio_z14": (z14["ratio_http_p50_over_sql_p50"] or 99) <= TARGETS["ratio_z14"],
            "ratio_z16": (z16["ratio_http_p50_over_sql_p50"] or 99) <= TARGETS["ratio_z16"],
            "tile_p99_z14": z14["http_1u"]["p99_ms"] < TARGETS["tile_p99_z14_ms"],
            "profile_p99": profile["p99_ms"] < TARGETS["profile_p99_ms"],
            "map_p99": gmap["p99_ms"] < TARGETS["map_p99_ms"],
        },
    }

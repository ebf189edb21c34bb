"""Locate with 10,000 grids: grid_at's SQL p50/p99 and GET /geo/locate requests/s vs /healthz.

Issue 3 targets: the SQL of `grid.areas.service.grid_at` p99 < 2 ms; HTTP locate ≥ 60 % of
/healthz requests/s in the same run.

Loads a lattice district (code 330110 under the demo city 330100, north of the demo district,
no overlap with it): 20 streets × 25 communities × 20 grids = 10,000 grids of 0.005° × 0.003°
(~480 m × 330 m), written straight into `areas` through the owner role (the import service
validates; this measures lookup, not import), then ANALYZE. The SQL timed is the statement
grid_at itself sends (captured from a call, so it follows the app), over 2,000 random points
of the lattice; the HTTP run cycles through 2,000 other random points (every user from its
own offset), after checking 200 of them against the lattice arithmetic.
"""

from __future__ import annotations

import json
import math
import random
import re

import requests
import sqlalchemy as sa
from sqlalchemy.orm import Session

from bench.harness import Context

DISTRICT = "330110"
CITY = "330100"
LON0, LAT0 = 120.00, 30.30  # south-west corner; the demo district lies below 30.09 N
COLS, ROWS = 100, 100  # grid cells
DLON, DLAT = 0.005, 0.003
STREETS, COMMUNITIES = 20, 25
COLS_PER_STREET = COLS // STREETS  # 5
ROWS_PER_COMMUNITY = ROWS // COMMUNITIES  # 4: 5 × 4 = 20 grids per community
POINTS = 2000
TARGETS = {"sql_p99_ms": 2.0, "http_vs_healthz": 0.60}


def _box(c0: int, r0: int, c1: int, r1: int) -> str:
    x0, y0 = LON0 + c0 * DLON, LAT0 + r0 * DLAT
    x1, y1 = LON0 + c1 * DLON, LAT0 + r1 * DLAT
    return f"SRID=4326;MULTIPOLYGON((({x0} {y0},{x1} {y0},{x1} {y1},{x0} {y1},{x0} {y0})))"


def street_code(s: int) -> str:
    return f"{DISTRICT}{s + 1:03d}"


def community_code(s: int, c: int) -> str:
    return f"{street_code(s)}{c + 1:03d}"


def expected_code(lon: float, lat: float) -> str:
    """The code of the lattice grid a point (not on an edge) falls in."""
    col = math.floor((lon - LON0) / DLON)
    row = math.floor((lat - LAT0) / DLAT)
    s = col // COLS_PER_STREET
    c = (ROWS - 1 - row) // ROWS_PER_COMMUNITY  # communities numbered north → south
    r_top = ROWS - c * ROWS_PER_COMMUNITY - 1
    g = (r_top - row) * COLS_PER_STREET + (col - s * COLS_PER_STREET) + 1
    return f"{community_code(s, c)}{g:03d}"


def load_lattice(ctx: Context) -> dict:
    """The lattice district (once per database), ANALYZEd; returns its counts."""
    engine = ctx.owner_engine()
    try:
        with engine.begin() as conn:
            if not conn.scalar(sa.text("SELECT count(*) FROM areas WHERE code = :d"),
                               {"d": DISTRICT}):
                _insert_lattice(conn)
            counts = dict(conn.execute(sa.text(
                "SELECT level, count(*) FROM areas WHERE code LIKE :p GROUP BY level"),
                {"p": DISTRICT + "%"}).all())
            bad_paths = conn.scalar(sa.text(
                "SELECT count(*) FROM areas a JOIN areas p ON p.id = a.parent_id "
                "WHERE a.code LIKE :p AND a.path <> p.path || a.id || '.'"),
                {"p": DISTRICT + "%"})
            if bad_paths:
                raise RuntimeError(f"{bad_paths} lattice areas have a wrong path")
        with engine.connect() as conn:
            conn.execute(sa.text("ANALYZE areas"))
            conn.commit()
            counts["all_grids"] = conn.scalar(sa.text(
                "SELECT count(*) FROM areas WHERE level = 'grid'"))
            counts["all_areas"] = conn.scalar(sa.text("SELECT count(*) FROM areas"))
    finally:
        engine.dispose()
    return counts


def _insert_lattice(conn: sa.Connection) -> None:
    city = conn.execute(sa.text("SELECT id, path FROM areas WHERE code = :c"),
                        {"c": CITY}).one()
    insert = sa.text(
        "INSERT INTO areas (code, name, level, parent_id, path, boundary, version) "
        "VALUES (:code, :name, :level, :parent_id, '', ST_GeomFromEWKT(:wkt), 1) RETURNING id")
    fix_path = sa.text("UPDATE areas SET path = :path WHERE id = :id")

    def add(code: str, name: str, level: str, parent: tuple, wkt: str) -> tuple:
        new_id = conn.execute(insert, {"code": code, "name": name, "level": level,
                                       "parent_id": parent[0], "wkt": wkt}).scalar_one()
        path = f"{parent[1]}{new_id}."
        conn.execute(fix_path, {"path": path, "id": new_id})
        return new_id, path

    district = add(DISTRICT, "基准区", "district", city, _box(0, 0, COLS, ROWS))
    grids = []
    for s in range(STREETS):
        c0 = s * COLS_PER_STREET
        street = add(street_code(s), f"基准街道{s + 1}", "street", district,
                     _box(c0, 0, c0 + COLS_PER_STREET, ROWS))
        for c in range(COMMUNITIES):
            r0 = ROWS - (c + 1) * ROWS_PER_COMMUNITY
            comm = add(community_code(s, c), f"基准社区{s + 1}-{c + 1}", "community", street,
                       _box(c0, r0, c0 + COLS_PER_STREET, r0 + ROWS_PER_COMMUNITY))
            g = 0
            for r in reversed(range(r0, r0 + ROWS_PER_COMMUNITY)):  # north row first
                for col in range(c0, c0 + COLS_PER_STREET):
                    g += 1
                    # path is the community's here; the grid's own id is appended below
                    grids.append({"code": f"{community_code(s, c)}{g:03d}",
                                  "name": f"基准网格{s + 1}-{c + 1}-{g}", "level": "grid",
                                  "parent_id": comm[0], "path": comm[1],
                                  "wkt": _box(col, r, col + 1, r + 1)})
    conn.execute(sa.text(
        "INSERT INTO areas (code, name, level, parent_id, path, boundary, version) "
        "VALUES (:code, :name, :level, :parent_id, :path, ST_GeomFromEWKT(:wkt), 1)"), grids)
    conn.execute(sa.text("UPDATE areas SET path = path || id || '.' "
                         "WHERE level = 'grid' AND code LIKE :p"), {"p": DISTRICT + "%"})
    conn.execute(sa.text("UPDATE areas SET area_m2 = ST_Area(boundary::geography) "
                         "WHERE code LIKE :p"), {"p": DISTRICT + "%"})



def grid_at_statement(ctx: Context) -> tuple[str, dict, str, str]:
    """The SQL grid.areas.service.grid_at sends, as text with :named parameters, its
    parameters, and the names of the longitude and latitude parameters."""
    from grid.areas import service

    probe_lon, probe_lat = LON0 + 0.5 * DLON + 0.000123, LAT0 + 0.5 * DLAT + 0.000321
    seen: list = []

    def grab(conn, cursor, statement, parameters, context, executemany):
        seen.append((statement, dict(parameters or {})))

    sa.event.listen(ctx.engine, "before_cursor_execute", grab)
    try:
        with Session(ctx.engine) as s:
            found = service.grid_at(s, probe_lon, probe_lat)
    finally:
        sa.event.remove(ctx.engine, "before_cursor_execute", grab)
    if found is None or found.code != expected_code(probe_lon, probe_lat):
        raise RuntimeError(f"grid_at found {found and found.code} for the probe point")
    statement, params = next((st, p) for st, p in seen if "ST_Covers" in st)
    lon_key = next(k for k, v in params.items() if v == probe_lon)
    lat_key = next(k for k, v in params.items() if v == probe_lat)
    text = re.sub(r"%\((\w+)\)s", r":\1", statement).replace("%%", "%")
    return text, params, lon_key, lat_key


def random_points(seed: int, n: int) -> list[tuple[float, float]]:
    rng = random.Random(seed)
    return [(round(LON0 + rng.uniform(0, COLS * DLON), 6),
             round(LAT0 + rng.uniform(0, ROWS * DLAT), 6)) for _ in range(n)]


def run(ctx: Context) -> dict:
    counts = load_lattice(ctx)
    print(f"  lattice: {counts}", flush=True)

    # --- SQL: grid_at's own statement, random points, one connection
    sql_text, params, lon_key, lat_key = grid_at_statement(ctx)
    sql_points = [{**params, lon_key: lon, lat_key: lat} for lon, lat in random_points(7, POINTS)]
    with ctx.engine.connect() as conn:
        plan = conn.execute(sa.text("EXPLAIN (ANALYZE, BUFFERS, FORMAT TEXT) " + sql_text),
                            sql_points[0]).scalars().all()
    sql = ctx.sql_timings(sql_text, sql_points, n=10_000, warmup=500)
    floor = ctx.sql_timings("SELECT 1", n=5000)
    print(f"  SQL grid_at ({counts['all_grids']} grids)  p50 {sql['p50']:.3f} ms  "
          f"p99 {sql['p99']:.3f} ms  (SELECT 1 p50 {floor['p50']:.3f}, p99 {floor['p99']:.3f})",
          flush=True)

    # --- HTTP: check some points first, then load with 2,000 random ones
    headers = ctx.auth_headers("worker")
    http_points = random_points(11, POINTS)
    wrong = []
    for lon, lat in http_points[:200]:
        resp = requests.get(f"{ctx.base_url}/geo/locate", params={"lon": lon, "lat": lat},
                            headers=headers, timeout=10)
        got = resp.json().get("grid", {}).get("code") if resp.status_code == 200 else None
        if got != expected_code(lon, lat) or len(resp.json().get("chain", [])) != 5:
            wrong.append({"lon": lon, "lat": lat, "status": resp.status_code, "got": got})
    if wrong:
        raise RuntimeError(f"locate answered wrongly for {len(wrong)} of 200 points: "
                           f"{json.dumps(wrong[:3])}")
    paths = [f"/geo/locate?lon={lon:.6f}&lat={lat:.6f}" for lon, lat in http_points]
    base = ctx.baseline(fresh=True)  # /healthz right before, same conditions
    http = ctx.measure("GET /geo/locate", paths, headers=headers)
    return {
        "rows": [base, http],
        "areas": counts,
        "sql": sql_text,
        "sql_points": len(sql_points),
        "sql_ms": sql,
        "select1_ms": floor,
        "explain_analyze": plan,
        "http_points": len(paths),
        "targets": TARGETS,
        "meets": {"sql_p99": sql["p99"] < TARGETS["sql_p99_ms"],
                  "http_vs_healthz": http["vs_healthz"] >= TARGETS["http_vs_healthz"]},
    }

"""Resident services: booking on one popular slot vs spread; nearby search, 5,000 points.

Booking needs one account per user (one active booking per resident per slot), and the
load generator sends one body with one set of headers, so booking is driven by threads of
its own here: `USERS` demo-password residents (created through the owner role, logged in
once each), each in a closed loop of `POST /bookings` then `POST /bookings/{id}/actions/
cancel` (both move the slot's `booked` with a conditional UPDATE, i.e. take its row lock).

- popular: every user books and cancels the SAME slot (capacity 1,000,000: every attempt
  succeeds, all of them serialize on one row);
- spread: each user cycles over its own 200 slots (no two users share a row).

Requests/s are reported next to /healthz driven by the same threaded client in the same run
(`x healthz` of those rows: the ratio to that), since this client is slower than locust.

Nearby search: 5,000 service points (district-wide, so the demo resident sees them all)
at random in the demo district's box, ANALYZEd; `GET /services?near=lon,lat` (KNN, first
page of 20) over 2,000 random points through the load generator against the /healthz
baseline, and its SQL (KNN on geography, LIMIT 20) timed directly next to `SELECT 1`.
"""

from __future__ import annotations

import random
import threading
import time
from datetime import UTC, datetime, timedelta

import requests
import sqlalchemy as sa

from bench.harness import Context
from bench.stats import summary_ms

USERS = 16
SPREAD_SLOTS = 200  # per user
POINTS = 5000
QUERIES = 2000
BOX = (119.90, 30.00, 120.02, 30.10)  # the demo district, roughly
PREFIX = "bench-svc-"


def _setup_booking(ctx: Context) -> dict:
    """A venue of the demo district with one popular slot and USERS × SPREAD_SLOTS others,
    and USERS residents with the demo password."""
    engine = ctx.owner_engine()
    start = datetime.now(UTC).replace(microsecond=0) + timedelta(days=7)
    try:
        with engine.begin() as conn:
            district = conn.scalar(sa.text("SELECT id FROM areas WHERE code = '330183'"))
            category = conn.scalar(sa.text(
                "SELECT id FROM service_categories WHERE code = 'venues'"))
            service = conn.scalar(sa.text(
                "INSERT INTO services (category_id, area_id, name, booking_mode, "
                "max_active_per_resident, version) VALUES (:c, :a, '基准场地', 'slots', 100, 1) "
                "RETURNING id"), {"c": category, "a": district})
            slots = list(conn.scalars(sa.text(
                "INSERT INTO service_slots (service_id, starts_at, ends_at, capacity) "
                "SELECT :s, :t + n * interval '1 minute', :t + (n + 1) * interval '1 minute', "
                ":cap FROM generate_series(0, :n) AS n ORDER BY n RETURNING id"),
                {"s": service, "t": start, "cap": 1_000_000, "n": USERS * SPREAD_SLOTS}))
            hashed = conn.scalar(sa.text(
                "SELECT password_hash FROM users WHERE username = 'resident'"))
            users = list(conn.scalars(sa.text(
                "INSERT INTO users (username, display_name, password_hash, is_active, "
                "failed_logins, version) SELECT :p || n || '-' || :svc, '基准居民', :h, true, "
                "0, 1 FROM generate_series(1, :n) AS n ORDER BY n RETURNING username"),
                {"p": PREFIX, "svc": service, "h": hashed, "n": USERS}))
            conn.execute(sa.text(
                "INSERT INTO user_roles (user_id, role) SELECT id, 'resident' FROM users "
                "WHERE username = ANY(:u)"), {"u": users})
    finally:
        engine.dispose()
    return {"service": service, "popular": slots[0], "spread": slots[1:], "users": users}


def _closed_loop(label: str, ctx: Context, tokens: list[str], work) -> dict:
    """Each token's thread calls `work(session, user_index, i)` (→ HTTP responses) in a
    closed loop: warm-up, then `ctx.seconds` measured. Returns requests/s and latencies."""
    stop, measuring = threading.Event(), threading.Event()
    timings: list[list[float]] = [[] for _ in tokens]
    failures: list[int] = [0] * len(tokens)

    def loop(u: int) -> None:
        http = requests.Session()
        http.headers["Authorization"] = f"Bearer {tokens[u]}"
        i = 0
        while not stop.is_set():
            for ms, ok in work(http, u, i):
                if measuring.is_set():
                    timings[u].append(ms)
                    failures[u] += 0 if ok else 1
            i += 1

    threads = [threading.Thread(target=loop, args=(u,), daemon=True) for u in range(len(tokens))]
    for t in threads:
        t.start()
    time.sleep(ctx.warmup)
    measuring.set()
    t0 = time.perf_counter()
    time.sleep(ctx.seconds)
    measuring.clear()
    elapsed = time.perf_counter() - t0
    stop.set()
    for t in threads:
        t.join(timeout=30)
    flat = [ms for per in timings for ms in per]
    row = {"label": label, "users": len(tokens), "requests": len(flat),
           "failures": sum(failures), "rps": (len(flat) - sum(failures)) / elapsed,
           **{f"{k}_ms": v for k, v in summary_ms(flat).items() if k != "count"}}
    print(f"  {label}: {row['rps']:.0f} req/s, p50 {row.get('p50_ms', 0):.1f} ms, "
          f"p99 {row.get('p99_ms', 0):.1f} ms, failures {row['failures']}", flush=True)
    return row


def _timed(http: requests.Session, method: str, url: str, **kw) -> tuple[float, requests.Response]:
    t0 = time.perf_counter()
    resp = http.request(method, url, timeout=30, **kw)
    return (time.perf_counter() - t0) * 1000, resp


def _booking_rows(ctx: Context, setup: dict) -> list[dict]:
    from grid.demo import DEMO_PASSWORD

    tokens = [ctx.token(u, DEMO_PASSWORD) for u in setup["users"]]
    base = ctx.base_url

    def healthz(http, u, i):
        ms, resp = _timed(http, "GET", f"{base}/healthz")
        return [(ms, resp.status_code == 200)]

    def cycle(slot_of):
        def work(http, u, i):
            ms1, booked = _timed(http, "POST", f"{base}/bookings", json={"slot_id": slot_of(u, i)})
            if booked.status_code != 201:
                return [(ms1, False)]
            b = booked.json()
            ms2, cancelled = _timed(http, "POST", f"{base}/bookings/{b['id']}/actions/cancel",
                                    json={"version": b["version"]})
            return [(ms1, True), (ms2, cancelled.status_code == 200)]
        return work

    spread = setup["spread"]
    rows = [_closed_loop("GET /healthz (threaded client)", ctx, tokens, healthz)]
    rows.append(_closed_loop("book+cancel, one popular slot", ctx, tokens,
                             cycle(lambda u, i: setup["popular"])))
    rows.append(_closed_loop("book+cancel, spread over slots", ctx, tokens,
                             cycle(lambda u, i: spread[u * SPREAD_SLOTS + i % SPREAD_SLOTS])))
    for row in rows:
        row["vs_healthz"] = row["rps"] / rows[0]["rps"]
    return rows


def _load_points(ctx: Context) -> int:
    engine = ctx.owner_engine()
    rng = random.Random(8)
    try:
        with engine.begin() as conn:
            district = conn.scalar(sa.text("SELECT id FROM areas WHERE code = '330183'"))
            have = conn.scalar(sa.text(
                "SELECT count(*) FROM services WHERE name LIKE '基准服务点%'"))
            if have < POINTS:
                categories = list(conn.scalars(sa.text("SELECT id FROM service_categories")))
                conn.execute(sa.text(
                    "INSERT INTO services (category_id, area_id, name, description, location, "
                    "booking_mode, version) VALUES (:c, :a, :n, '基准数据', "
                    "ST_SetSRID(ST_MakePoint(:lon, :lat), 4326), 'none', 1)"),
                    [{"c": rng.choice(categories), "a": district, "n": f"基准服务点{i}",
                      "lon": rng.uniform(BOX[0], BOX[2]), "lat": rng.uniform(BOX[1], BOX[3])}
                     for i in range(have, POINTS)])
        with engine.connect() as conn:
            conn.execute(sa.text("ANALYZE services"))
            conn.commit()
            return conn.scalar(sa.text("SELECT count(*) FROM services"))
    finally:
        engine.dispose()


KNN_SQL = """
SELECT s.id, geography(s.location) <-> geography(ST_SetSRID(ST_MakePoint(:lon, :lat), 4326))
FROM services s JOIN areas a ON a.id = s.area_id
WHERE s.active
ORDER BY geography(s.location) <-> geography(ST_SetSRID(ST_MakePoint(:lon, :lat), 4326))
LIMIT 20
"""


def run(ctx: Context) -> dict:
    setup = _setup_booking(ctx)
    booking = _booking_rows(ctx, setup)

    total = _load_points(ctx)
    rng = random.Random(11)
    points = [(round(rng.uniform(BOX[0], BOX[2]), 6), round(rng.uniform(BOX[1], BOX[3]), 6))
              for _ in range(QUERIES)]
    sql = ctx.sql_timings(KNN_SQL, [{"lon": x, "lat": y} for x, y in points], n=5000,
                          warmup=200)
    floor = ctx.sql_timings("SELECT 1", n=5000)
    with ctx.engine.connect() as conn:
        plan = conn.execute(sa.text("EXPLAIN (ANALYZE, BUFFERS) " + KNN_SQL),
                            {"lon": points[0][0], "lat": points[0][1]}).scalars().all()
    print(f"  SQL KNN ({total} services)  p50 {sql['p50']:.3f} ms  p99 {sql['p99']:.3f} ms  "
          f"(SELECT 1 p50 {floor['p50']:.3f}, p99 {floor['p99']:.3f})", flush=True)
    headers = ctx.auth_headers("resident")
    check = requests.get(f"{ctx.base_url}/services", headers=headers, timeout=10,
                         params={"near": f"{points[0][0]},{points[0][1]}",
                                 "page_size": 20}).json()
    if len(check) != 20 or [s["distance_m"] for s in check] != sorted(
            s["distance_m"] for s in check):
        raise RuntimeError(f"nearby search answered wrongly: {check[:2]}")
    base = ctx.baseline(fresh=True)
    near = ctx.measure("GET /services?near= (20 nearest)",
                       [f"/services?near={x},{y}&page_size=20" for x, y in points],
                       headers=headers)
    near_r = ctx.measure("GET /services?near=…,1000 m",
                         [f"/services?near={x},{y},1000&page_size=20" for x, y in points],
                         headers=headers)
    return {"rows": [*booking, base, near, near_r], "services": total, "knn_sql": KNN_SQL,
            "knn_sql_ms": sql, "select1_ms": floor, "explain_analyze": plan,
            "booking_users": USERS}

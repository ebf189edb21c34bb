"""Feeds in (1+N 多源): a batch upsert of N persons from another system vs COPY of the same rows.

Issue 19's target: rows/s of a feed's batch upsert of 100,000 persons ≥ 20 % of COPY's, and
its peak memory. N = BENCH_FEED_N (default 100,000) people with valid ID numbers, phones,
ethnicity, population type and a point in one of the demo district's grids.

1. COPY baseline: N *other* people (other ID numbers), the columns a feed writes to
   `persons` (location included), with ciphertexts, blind indexes and masks PRECOMPUTED
   outside the timing, COPY'd by the app's role in one transaction, committed. Then deleted
   and the table vacuumed, so that the feed starts from the same table.
2. Feed: a separate Python process (its own peak RSS: VmHWM, reset after the app started)
   creates the app and a `system` API client, then sends the rows as the API receives them:
   batches of MAX_FEED_ROWS (5,000) rows, each a JSON body decoded and given to
   grid.exchange.feeds.upsert_batch in its own transaction (one request each): the
   register's checks per row (marshmallow, GB 11643, mobiles, GPS), encryption and blind
   indexes, matching by record key and ID number, grids of the points, INSERT, the feed's
   keys and the provenance of every field. Rows/s = N ÷ wall time; ratio = that ÷ COPY's.
   The feed also writes N feed_records and N register_field_sources rows, which COPY does not.
3. The same batches again (a system resending): every row matched and compared, nothing
   written ("unchanged" rows/s).

The signature check and the HTTP layer are not in the timing (the request's JSON decoding
is). The data stays in this run's (throwaway) database.
"""

from __future__ import annotations

import csv
import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path

import sqlalchemy as sa

from bench.benchmarks.registry_import import (
    GIVEN,
    SURNAMES,
    CpuWindow,
    _vm,
    checkpoint,
    id_number,
    remove_copied,
)

N = int(os.environ.get("BENCH_FEED_N", "100000"))
SEED = 20261208
COLUMNS = ("area_id", "source", "needs_review", "version", "name", "id_number_enc",
           "id_number_bidx", "id_number_masked", "sex", "birth_date", "phone_enc",
           "phone_bidx", "phone_masked", "ethnicity", "population_type",
           "registration_situation", "status", "location", "gps_crs")


def grid_points(ctx) -> list[tuple[int, float, float]]:
    """(grid id, lon, lat) of a point inside each grid of the demo district."""
    with ctx.engine.connect() as conn:
        return [tuple(r) for r in conn.execute(sa.text(
            "SELECT id, ST_X(p), ST_Y(p) FROM (SELECT id, ST_PointOnSurface(boundary) AS p "
            "FROM areas WHERE level = 'grid' AND boundary IS NOT NULL) g ORDER BY id"))]


def people(n: int, offset: int, points: list, rng: random.Random):
    """Feed rows (dicts) of n people: ID numbers offset…offset+n."""
    for i in range(n):
        j = offset + i
        grid_id, lon, lat = points[i % len(points)]
        floating = rng.random() < 0.2
        yield grid_id, {
            "record_key": f"GA-{j:08d}",
            "name": rng.choice(SURNAMES) + rng.choice(GIVEN) + rng.choice(GIVEN),
            "id_number": id_number(j), "phone": f"13{j % 10**9:09d}",
            "ethnicity": "汉族", "population_type": "floating" if floating else "registered",
            "registration_situation": "present_unregistered" if floating else "both_here",
            "location": {"lon": lon, "lat": lat, "crs": "wgs84", "accuracy_m": 10.0}}


def write_feed(path: Path, points: list) -> None:
    with path.open("w") as fh:
        for _, row in people(N, 0, points, random.Random(SEED)):
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")


def write_copy_rows(ctx, path: Path, points: list) -> None:
    from grid.registry.validation import id_number_facts
    from server import pii
    from server.config import Config

    pii.configure(ctx.env.get("PII_KEYS", Config.PII_KEYS),
                  ctx.env.get("BLIND_INDEX_KEY", Config.BLIND_INDEX_KEY))
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        for grid_id, row in people(N, N, points, random.Random(SEED + 1)):
            number, phone = row["id_number"], row["phone"]
            sex, born = id_number_facts(number)
            point = row["location"]
            writer.writerow([
                grid_id, "other_system", "f", 1, row["name"],
                pii.encrypt(number, "person.id_number"),
                pii.blind_index(number, "person.id_number"), pii.mask_id_number(number),
                sex, born, pii.encrypt(phone, "person.phone"),
                pii.blind_index(phone, "person.phone"), pii.mask_phone(phone),
                row["ethnicity"], row["population_type"], row["registration_situation"],
                "present", f"SRID=4326;POINT({point['lon']!r} {point['lat']!r})", "wgs84"])


def copy_baseline(ctx, path: Path) -> dict:
    raw = ctx.engine.raw_connection()
    try:
        cur = raw.cursor()
        cur.execute("SELECT coalesce(max(id), 0) FROM persons")
        before = cur.fetchone()[0]
        raw.commit()
        t0 = time.perf_counter()
        with path.open() as fh:
            cur.copy_expert(f"COPY persons ({', '.join(COLUMNS)}) FROM STDIN "
                            "WITH (FORMAT csv)", fh)
        rows = cur.rowcount
        raw.commit()
        seconds = time.perf_counter() - t0
    finally:
        raw.close()
    return {"rows": rows, "seconds": seconds, "rows_per_s": rows / seconds, "max_id": before}


def feed_in_child(ctx, path: Path) -> dict:
    proc = subprocess.run([str(ctx.root / ".venv/bin/python"), "-m", "bench.benchmarks.feeds",
                           str(path)], env=ctx.env, cwd=ctx.root, capture_output=True,
                          text=True)
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr[-5000:])
        raise RuntimeError(f"the feeding process failed (exit {proc.returncode})")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _batches(path: str, size: int):
    """The feed as the API receives it: JSON bodies of `size` rows."""
    rows: list[str] = []
    with open(path) as fh:
        for line in fh:
            rows.append(line)
            if len(rows) == size:
                yield ('{"kind":"person","rows":[' + ",".join(rows) + "]}").encode()
                rows = []
    if rows:
        yield ('{"kind":"person","rows":[' + ",".join(rows) + "]}").encode()


def _pass(path: str, actor, sender, size: int) -> dict:
    from grid.exchange import feeds
    from server import db

    totals = {"created": 0, "updated": 0, "unchanged": 0, "queued_for_review": 0,
              "rejected": 0}
    t0 = time.perf_counter()
    for body in _batches(path, size):
        data = json.loads(body)
        with db.unit_of_work() as s:
            report = feeds.upsert_batch(s, actor, sender, data["kind"], data["rows"])
        for key in totals:
            totals[key] += getattr(report, key)
        db.session.remove()
    return {"seconds": time.perf_counter() - t0, **totals}


def child(path: str) -> None:
    """In the feeding process: the app, a `system` client, two passes of the feed."""
    from grid.exchange import schemas
    from grid.exchange.intake import Sender
    from server import apiclients, clock, db
    from server.app import create_app
    from server.auth.actor import Actor

    app = create_app({"LOG_LEVEL": "WARNING"})
    with app.app_context():
        with db.unit_of_work() as s:
            admin = Actor(user_id=None, permissions=frozenset({"apiclient:manage"}))
            client, _ = apiclients.create_client(s, admin, {"name": "市公安人口库 (bench)",
                                                            "kind": "system"})
        actor = Actor(user_id=None, roles=frozenset({"api:system"}),
                      permissions=apiclients.KIND_PERMISSIONS["system"])
        sender = Sender(client.id, client.name, clock.now())
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        rss_before = _vm("VmRSS")
        cpu0 = time.process_time()
        profile = os.environ.get("BENCH_FEED_PROFILE")  # a file for cProfile's stats
        if profile:
            import cProfile

            profiler = cProfile.Profile()
            profiler.enable()
        first = _pass(path, actor, sender, schemas.MAX_FEED_ROWS)
        if profile:
            profiler.disable()
            profiler.dump_stats(profile)
        first["cpu_seconds"] = time.process_time() - cpu0
        first["peak_rss_bytes"] = _vm("VmHWM")
        cpu0 = time.process_time()
        again = _pass(path, actor, sender, schemas.MAX_FEED_ROWS)
        again["cpu_seconds"] = time.process_time() - cpu0
    print(json.dumps({"first": first, "again": again, "rss_before_bytes": rss_before,
                      "batch_rows": schemas.MAX_FEED_ROWS}))


def run(ctx) -> dict:
    work = ctx.root / "var" / "bench-feeds"
    work.mkdir(parents=True, exist_ok=True)
    points = grid_points(ctx)
    feed_file, copy_file = work / f"feed-{N}.jsonl", work / f"feed-copy-{N}.csv"
    write_feed(feed_file, points)
    write_copy_rows(ctx, copy_file, points)
    print(f"  data: {N:,} people over {len(points)} grids "
          f"({feed_file.stat().st_size / 2**20:.1f} MiB of JSON)", flush=True)
    checkpointed = checkpoint(ctx)
    with CpuWindow(ctx) as cpu:
        copy = copy_baseline(ctx, copy_file)
    copy["cpu"] = cpu.result
    remove_copied(ctx, copy.pop("max_id"))
    print(f"  COPY persons (precomputed ciphertexts): {copy['rows']:,} rows in "
          f"{copy['seconds']:.1f} s = {copy['rows_per_s']:,.0f} rows/s; CPU {copy['cpu']}",
          flush=True)
    checkpoint(ctx)
    with CpuWindow(ctx) as cpu:
        fed = feed_in_child(ctx, feed_file)
    first, again = fed["first"], fed["again"]
    first["rows_per_s"] = N / first["seconds"]
    again["rows_per_s"] = N / again["seconds"]
    ratio = first["rows_per_s"] / copy["rows_per_s"]
    print(f"  feed (batches of {fed['batch_rows']:,}): created {first['created']:,} "
          f"(rejected {first['rejected']}) in {first['seconds']:.1f} s = "
          f"{first['rows_per_s']:,.0f} rows/s = {ratio:.0%} of COPY; Python CPU "
          f"{first['cpu_seconds']:.0f} s; peak RSS {first['peak_rss_bytes'] / 2**20:.0f} MiB "
          f"(after app start {fed['rss_before_bytes'] / 2**20:.0f} MiB); CPU {cpu.result}",
          flush=True)
    print(f"  the same feed again: unchanged {again['unchanged']:,} in "
          f"{again['seconds']:.1f} s = {again['rows_per_s']:,.0f} rows/s", flush=True)
    return {"rows": [{"label": "COPY persons (rows/s)", "rps": copy["rows_per_s"]},
                     {"label": "feed upsert, new (rows/s)", "rps": first["rows_per_s"]},
                     {"label": "feed upsert, unchanged (rows/s)", "rps": again["rows_per_s"]}],
            "n": N, "copy": copy, "feed": first, "feed_again": again,
            "feed_vs_copy": ratio, "checkpointed": checkpointed,
            "copy_input": "precomputed ciphertexts, blind indexes and masks (no Python work "
                          "timed)"}


if __name__ == "__main__":
    child(sys.argv[1])

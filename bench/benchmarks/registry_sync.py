"""Sync pull of one grid of 2,000 people, and person lookup by ID number (blind index).

Issue 4 targets: `GET /sync/pull` of a full grid of 2,000 people < 300 ms p99; the lookup by
ID number via the blind index: p99 reported (SQL and HTTP).

Data (loaded at the start, through the owner role, with COPY; the register's own rules are
not run, the rows are what they would have written):
- the demo worker's grid 330183001001001: 40 buildings, ~760 houses, 700 households and
  2,000 present persons (plus 60 who moved out or died: ended, not sent by a full sync),
  ~6 % with a care tag, every person in a household with its stay row;
- background volume in the other 60 demo grids: 100,000 persons with their households,
  houses and buildings at the same density, so that the indexes have a realistic size;
- every record GPS-tagged (a point in its grid), as phones collect them; ID numbers valid
  (GB 11643 check character via python-stdnum), encrypted (AES-GCM), blind-indexed (HMAC)
  and masked with server.pii under the keys of server/config.py (the dev keys unless the
  environment sets PII_KEYS / BLIND_INDEX_KEY: the same the server uses); phones likewise.
Then VACUUM ANALYZE.

Measured, as the demo worker (one client, sequential, client-side wall time with requests,
which accepts gzip as phones' HTTP stacks do — OkHttp, NSURLSession — and inflates it):
1. first sync: pages of the default size (grid.sync.schemas.PAGE_DEFAULT, 2,000) from no
   cursor until has_more is false, FULL_PULLS times (after WARM_PULLS unmeasured):
   whole-pull and per-page p50/p99, bytes of JSON and bytes on the wire per page;
2. the same first sync in pages of OLD_PAGE (500, the default until 2026-12-01);
3. 50 changes pushed through POST /sync/push (40 updates, 5 creates, 5 ends), then the
   incremental pull from the cursor the full sync ended with, FULL_PULLS times (a pull is
   read-only: each returns the same changes), and an empty incremental pull;
4. under load: the first page (limit=500) at LOAD_USERS users, requests/s vs /healthz;
5. ID lookup: `SELECT id FROM persons WHERE id_number_bidx = :b` (ctx.sql_timings over
   5,000 random persons of all 102,060) next to SELECT 1, and `GET /persons?id_number=`
   (ID numbers of the worker's grid) at /healthz's concurrency vs /healthz.
Server RSS (gunicorn master + workers) is sampled during the sequential pulls as well.
"""

from __future__ import annotations

import csv
import io
import itertools
import os
import random
import resource
import time
import uuid
from collections import Counter
from datetime import date, timedelta

import psutil
import requests
import shapely
import sqlalchemy as sa
from stdnum.cn import ric

from bench.harness import Context
from bench.load import _busy_pct, _Sampler
from bench.stats import summary_ms
from grid.registry.scope import ID_FIELD, PHONE_FIELD
from grid.registry.validation import normalize_id_number
from grid.sync.schemas import PAGE_DEFAULT
from server import pii
from server.config import Config

GRID = "330183001001001"  # the demo worker's grid (grid/demo.py)
DEMO_DISTRICT = "330183"
PERSONS, ENDED, HOUSEHOLDS, BUILDINGS = 2000, 60, 700, 40
BACKGROUND_PERSONS = 100_000
PAGE, OLD_PAGE = PAGE_DEFAULT, 500
FULL_PULLS, WARM_PULLS = 30, 3
CHANGES = 50
LOAD_USERS = 4  # a page costs tens of ms of server CPU: more users only queue
SEED = 20261122
TARGETS = {"full_grid_pull_p99_ms": 300.0}

SURNAMES = ("王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶"
            "程苏魏吕丁任沈姚卢姜崔钟谭陆汪范金石廖贾夏韦付方白邹孟熊秦邱江尹薛闫段雷侯龙史陶黎贺顾"
            "毛郝龚邵万钱严覃武戴莫孔向汤")
GIVEN = ("伟芳娜秀英敏静丽强磊军洋勇艳杰娟涛明超兰霞平刚桂华建国红梅玉珍志文斌宇浩凯鹏飞鑫晨"
         "欣怡佳琪子涵雨萱梓轩若汐一诺嘉懿俊杰思远婷春燕海燕丹凤慧君")
# Region codes where people's ID numbers were issued: 富阳 first (the registered), then the
# provinces floating population comes from.
LOCAL_REGION = "330183"
OTHER_REGIONS = ("330102", "330106", "330381", "340104", "341221", "360102", "362201",
                 "410102", "411302", "420106", "430102", "431102", "500101", "510104",
                 "511602", "522401", "532101", "612401", "130102", "370102")
MOBILE_PREFIXES = ("133", "135", "136", "137", "138", "139", "150", "151", "152", "158",
                   "159", "176", "177", "180", "182", "186", "187", "188", "189", "199")
CARE = ("elderly_alone", "empty_nest", "disabled", "low_income", "veteran",
        "left_behind_child", "unemployed")

COMMON = ("id", "area_id", "source", "created_by", "updated_by", "needs_review", "version",
          "ended_at", "end_reason", "location", "gps_crs", "gps_raw_lon", "gps_raw_lat",
          "gps_accuracy_m", "gps_captured_at", "gps_device_id")
COLUMNS = {
    "buildings": COMMON + ("name", "address", "use", "floors", "units", "is_crowded_rental",
                           "is_unsafe", "is_live_work_store", "leader_name",
                           "leader_phone_enc", "leader_phone_masked"),
    "houses": COMMON + ("building_id", "unit", "floor", "room", "use", "floor_area_m2",
                        "owner_name", "owner_phone_enc", "owner_phone_masked"),
    "households": COMMON + ("house_id", "household_no", "head_person_id", "type"),
    "persons": COMMON + ("name", "id_number_enc", "id_number_bidx", "id_number_masked", "sex",
                         "birth_date", "phone_enc", "phone_bidx", "phone_masked", "ethnicity",
                         "household_id", "relation_to_head", "population_type",
                         "registration_situation", "status"),
    "household_stays": ("person_id", "household_id", "relation_to_head", "since", "until"),
    "person_tags": ("person_id", "kind", "tag", "start_date", "created_by"),
}
ORDER = ("buildings", "houses", "households", "persons", "household_stays", "person_tags")


# --- the register generator ----------------------------------------------------------------


def with_check(body: str) -> str:
    """17 digits + their GB 11643 check character (stdnum's calc_check_digit ignores the last
    character of what it is given), checked by the register's own rule."""
    number = body + ric.calc_check_digit(body + "0")
    normalize_id_number(number, today=date(2026, 11, 22))
    return number


class Register:
    """Rows of a synthetic register, grid by grid (deterministic for a seed)."""

    def __init__(self, seed: int, worker_id: int) -> None:
        self.rng = random.Random(seed)
        self.worker_id = worker_id
        self.rows: dict[str, list[tuple]] = {t: [] for t in ORDER}
        self.used_ids: set[str] = set()
        self.next_id: dict[str, int] = {}  # table -> next id of the block reserved for it
        self.id_numbers: dict[int, str] = {}  # person id -> ID number, for the target grid
        self.capture = False

    # identifiers ------------------------------------------------------------------------

    def id_number(self, local: bool, born: date) -> str:
        rng = self.rng
        while True:
            region = LOCAL_REGION if local else rng.choice(OTHER_REGIONS)
            number = with_check(f"{region}{born:%Y%m%d}{rng.randrange(1000):03d}")
            if number not in self.used_ids:
                self.used_ids.add(number)
                return number

    def mobile(self) -> str:
        return self.rng.choice(MOBILE_PREFIXES) + f"{self.rng.randrange(10**8):08d}"

    def name(self) -> str:
        given = "".join(self.rng.choice(GIVEN) for _ in range(self.rng.choice((1, 2, 2))))
        return self.rng.choice(SURNAMES) + given

    def take(self, table: str) -> int:
        i = self.next_id[table]
        self.next_id[table] = i + 1
        return i

    # GPS ----------------------------------------------------------------------------------

    def point_in(self, polygon: shapely.Geometry) -> tuple[float, float]:
        minx, miny, maxx, maxy = polygon.bounds
        while True:
            x, y = self.rng.uniform(minx, maxx), self.rng.uniform(miny, maxy)
            if polygon.contains(shapely.Point(x, y)):
                return round(x, 7), round(y, 7)

    def gps(self, lon: float, lat: float, jitter_m: float = 0.0) -> tuple:
        rng = self.rng
        if jitter_m:
            lon += rng.uniform(-jitter_m, jitter_m) / 96_000  # ~m per degree at 30° N
            lat += rng.uniform(-jitter_m, jitter_m) / 111_000
        lon, lat = round(lon, 7), round(lat, 7)
        at = f"2026-{rng.randint(1, 10):02d}-{rng.randint(1, 28):02d}T" \
             f"{rng.randint(8, 18):02d}:{rng.randint(0, 59):02d}:00+08:00"
        return (f"SRID=4326;POINT({lon} {lat})", "wgs84", lon, lat,
                round(rng.uniform(3, 30), 1), at, f"phone-{self.worker_id}")

    def common(self, table: str, area_id: int, where: tuple, end_reason: str | None = None
               ) -> tuple:
        ended_at = "2026-09-30T10:00:00+08:00" if end_reason else None
        return (self.take(table), area_id, "grid_worker", self.worker_id, self.worker_id, False,
                1, ended_at, end_reason, *where)

    # one grid -----------------------------------------------------------------------------

    @staticmethod
    def houses_for(households: int) -> int:
        return round(households * 1.08)  # ~8 % of the houses empty

    def grid(self, area_id: int, polygon: shapely.Geometry, persons: int, households: int,
             buildings: int, ended: int = 0) -> None:
        """Buildings, houses, households and `persons` present persons of one grid, plus
        `ended` who moved out or died (members of the same households, never their head)."""
        rng, rows = self.rng, self.rows
        sizes = [rng.choices((1, 2, 3, 4, 5, 6), (20, 25, 25, 17, 8, 5))[0]
                 for _ in range(households)]
        total = persons + ended
        while sum(sizes) != total:  # adjust to the exact number of persons
            i = rng.randrange(households)
            if sum(sizes) < total:
                sizes[i] += 1
            elif sizes[i] > 1:
                sizes[i] -= 1
        houses_n = self.houses_for(households)
        houses = []  # (house id, the building's point)
        for b in range(buildings):
            n_houses = houses_n // buildings + (1 if b < houses_n % buildings else 0)
            spot = self.point_in(polygon)
            building_id = self.next_id["buildings"]
            floors = rng.randint(4, 18)
            units = max(1, -(-n_houses // (floors * 2)))  # two flats per floor and unit
            leader = self.mobile()
            rows["buildings"].append(self.common("buildings", area_id, self.gps(*spot)) + (
                f"{b + 1}幢", f"示范路{b + 1}号", "residential", floors, units,
                rng.random() < 0.03, False, rng.random() < 0.02, self.name(),
                pii.encrypt(leader, "buildings.phone"), pii.mask_phone(leader)))
            flats = itertools.product(range(1, floors + 1), range(1, units + 1), (1, 2))
            for floor, unit, door in itertools.islice(flats, n_houses):
                owner = self.mobile()
                use = rng.choices(("owner_occupied", "rented", "business"), (70, 27, 3))[0]
                houses.append((self.next_id["houses"], spot))
                rows["houses"].append(self.common("houses", area_id, self.gps(*spot, 5)) + (
                    building_id, str(unit), floor, f"{floor}{door:02d}", use,
                    round(rng.uniform(45, 140), 1), self.name(),
                    pii.encrypt(owner, "houses.phone"), pii.mask_phone(owner)))
        rng.shuffle(houses)
        ends = set(rng.sample([(h, m) for h, size in enumerate(sizes) for m in range(1, size)],
                              ended)) if ended else set()
        for h, size in enumerate(sizes):
            house_id, spot = houses[h]
            where = self.gps(*spot, 5)
            local = rng.random() < 0.75
            household_id = self.next_id["households"]
            head = self.next_id["persons"]
            rows["households"].append(self.common("households", area_id, where) + (
                house_id, f"{household_id:09d}", head,
                "registered" if local else "non_registered"))
            for m in range(size):
                self.person(area_id, household_id, m, local, where, ended=(h, m) in ends)

    def person(self, area_id: int, household_id: int, m: int, local: bool, where: tuple,
               ended: bool) -> None:
        rng = self.rng
        relation = ("head", "spouse", "child", "child", "parent", "grandchild")[min(m, 5)]
        age = {"head": (28, 85), "spouse": (25, 85), "child": (0, 40), "parent": (60, 95),
               "grandchild": (0, 12)}[relation]
        born = date(2026, 6, 30) - timedelta(days=rng.randint(age[0] * 365, age[1] * 365))
        foreign = not local and rng.random() < 0.02
        number = None if foreign else self.id_number(local and rng.random() < 0.9, born)
        phone = self.mobile() if 16 <= 2026 - born.year <= 80 and rng.random() < 0.85 else None
        sex = ("M" if int(number[16]) % 2 else "F") if number else rng.choice("MF")
        status = rng.choice(("moved_out", "deceased")) if ended else "present"
        person_id = self.next_id["persons"]
        self.rows["persons"].append(self.common(
            "persons", area_id, self.gps(*where[2:4], 3), status if ended else None) + (
            self.name(), pii.encrypt(number, ID_FIELD), pii.blind_index(number, ID_FIELD),
            pii.mask_id_number(number), sex, born.isoformat(), pii.encrypt(phone, PHONE_FIELD),
            pii.blind_index(phone, PHONE_FIELD), pii.mask_phone(phone),
            "汉族" if rng.random() < 0.97 else rng.choice(("回族", "畲族", "苗族", "土家族")),
            household_id, relation,
            "foreign" if foreign else ("registered" if local else "floating"),
            "both_here" if local else "present_unregistered", status))
        self.rows["household_stays"].append(
            (person_id, household_id, relation, "2025-01-01T00:00:00+08:00",
             "2026-09-30T10:00:00+08:00" if ended else None))
        old = 2026 - born.year >= 70
        if rng.random() < (0.25 if old else 0.03):
            tag = rng.choice(CARE[:2]) if old else rng.choice(CARE[2:])
            self.rows["person_tags"].append((person_id, "care", tag, "2025-06-01",
                                             self.worker_id))
        if self.capture and number and not ended:
            self.id_numbers[person_id] = number


def _csv(rows: list[tuple]) -> io.StringIO:
    buf = io.StringIO()
    writer = csv.writer(buf)
    for row in rows:
        writer.writerow(["t" if v is True else "f" if v is False else v for v in row])
    buf.seek(0)
    return buf


def load_register(ctx: Context) -> dict:
    """Generate and COPY the register (see the module docstring); returns what was loaded."""
    pii.configure(Config.PII_KEYS, Config.BLIND_INDEX_KEY)
    engine = ctx.owner_engine()
    t0 = time.monotonic()
    try:
        with engine.connect() as conn:
            worker_id = conn.scalar(sa.text("SELECT id FROM users WHERE username = 'worker'"))
            grids = conn.execute(sa.text(
                "SELECT id, code, ST_AsBinary(boundary) FROM areas WHERE level = 'grid' "
                "AND code LIKE :d ORDER BY code"), {"d": DEMO_DISTRICT + "%"}).all()
            already = conn.scalar(sa.text("SELECT count(*) FROM persons"))
        if already:
            raise RuntimeError(f"persons already holds {already} rows: run on a fresh database")
        target = next(g for g in grids if g.code == GRID)
        others = [g for g in grids if g.code != GRID]
        # (area id, boundary, persons, households, buildings, ended) of every grid: the
        # background ones at the density of the target grid, the target grid last.
        per_grid, extra = divmod(BACKGROUND_PERSONS, len(others))
        plan = []
        for i, g in enumerate(others):
            n = per_grid + (1 if i < extra else 0)
            plan.append((g.id, g[2], n, round(n * HOUSEHOLDS / PERSONS),
                         max(1, round(n * BUILDINGS / PERSONS)), 0))
        plan.append((target.id, target[2], PERSONS, HOUSEHOLDS, BUILDINGS, ENDED))
        need = {"buildings": sum(p[4] for p in plan),
                "houses": sum(Register.houses_for(p[3]) for p in plan),
                "households": sum(p[3] for p in plan),
                "persons": sum(p[2] + p[5] for p in plan)}
        reg = Register(SEED, worker_id)
        raw = engine.raw_connection()
        try:
            cur = raw.cursor()
            # Reserve a block of ids of each identity sequence (the app's inserts follow on).
            for table, n in need.items():
                cur.execute("SELECT nextval(pg_get_serial_sequence(%s, 'id'))", (table,))
                first = cur.fetchone()[0]
                cur.execute("SELECT setval(pg_get_serial_sequence(%s, 'id'), %s)",
                            (table, first + n - 1))
                reg.next_id[table] = first
            raw.commit()
            reserved_end = {t: reg.next_id[t] + n for t, n in need.items()}
            for area_id, wkb, persons, households, buildings, ended in plan:
                reg.capture = area_id == target.id
                reg.grid(area_id, shapely.from_wkb(bytes(wkb)), persons, households,
                         buildings, ended)
            if reg.next_id != reserved_end:
                raise RuntimeError(f"ids used {reg.next_id}, reserved up to {reserved_end}")
            generated = time.monotonic()
            counts = {}
            for table in ORDER:
                rows = reg.rows[table]
                for start in range(0, len(rows), 20_000):
                    cur.copy_expert(f"COPY {table} ({', '.join(COLUMNS[table])}) FROM STDIN "
                                    "WITH (FORMAT csv)", _csv(rows[start:start + 20_000]))
                counts[table] = len(rows)
                reg.rows[table] = []
            raw.commit()
            copied = time.monotonic()
            raw.driver_connection.autocommit = True
            cur = raw.driver_connection.cursor()
            cur.execute("VACUUM (ANALYZE) " + ", ".join(ORDER))
            cur.execute("ANALYZE areas")
        finally:
            raw.close()
        with engine.connect() as conn:
            in_grid = {t: conn.scalar(sa.text(
                f"SELECT count(*) FROM {t} WHERE area_id = :a AND ended_at IS NULL"),
                {"a": target.id}) for t in ("buildings", "houses", "households", "persons")}
            sizes = dict(conn.execute(sa.text(
                "SELECT relname, pg_total_relation_size(oid) / 1048576.0 FROM pg_class "
                "WHERE relname IN ('persons', 'households', 'houses', 'buildings')")).all())
    finally:
        engine.dispose()
    return {
        "grid": GRID, "grid_id": target.id, "worker_id": worker_id,
        "rows": counts, "in_grid_current": in_grid,
        "background_grids": len(others),
        "table_mib": {k: round(float(v), 1) for k, v in sizes.items()},
        "generate_s": round(generated - t0, 1), "copy_s": round(copied - generated, 1),
        "vacuum_analyze_s": round(time.monotonic() - copied, 1),
        "id_numbers": reg.id_numbers,
        "used_id_numbers": reg.used_ids,
    }


# --- measuring -----------------------------------------------------------------------------


class Puller:
    """One phone: sequential pulls with requests, every page timed (ms)."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.http = requests.Session()
        self.pages_ms: list[float] = []
        self.page_bytes: list[int] = []
        self.wire_bytes: list[int] = []

    def reset(self) -> None:
        self.pages_ms, self.page_bytes, self.wire_bytes = [], [], []

    def bytes_mean(self) -> dict:
        """Mean bytes of JSON per page, and as sent (gzipped when large enough)."""
        n = len(self.page_bytes)
        return {"bytes_mean": sum(self.page_bytes) / n, "wire_bytes_mean": sum(self.wire_bytes) / n}

    def page(self, cursor: str | None, limit: int) -> dict:
        params = {"limit": limit, **({"cursor": cursor} if cursor else {})}
        t0 = time.perf_counter()
        resp = self.http.get(f"{self.ctx.base_url}/sync/pull", params=params,
                             headers=self.ctx.auth_headers("worker"), timeout=60)
        ms = (time.perf_counter() - t0) * 1000
        if resp.status_code != 200:
            raise RuntimeError(f"pull: {resp.status_code} {resp.text[:300]}")
        self.pages_ms.append(ms)
        self.page_bytes.append(len(resp.content))
        self.wire_bytes.append(int(resp.headers.get("Content-Length", len(resp.content))))
        return resp.json()

    def full(self, limit: int) -> tuple[float, list[dict], str]:
        """A first sync: pages until has_more is false. (ms, items, final cursor).

        ms = the sum of the pages' request times (sent → body received and un-gzipped):
        this client's parsing of the JSON between pages (~25 ms a page of 2,000 here,
        a phone's own business) is not the server's time."""
        items, cursor, first = [], None, True
        self.last_pages: list[dict] = []  # what each page held (types), for the JSON
        start = len(self.pages_ms)
        while True:
            body = self.page(cursor, limit)
            self.last_pages.append(dict(Counter(it["type"] for it in body["items"])))
            if body["reset"] != first:
                raise RuntimeError("reset must be true on the first page only")
            first = False
            items += body["items"]
            cursor = body["next_cursor"]
            if not body["has_more"]:
                return sum(self.pages_ms[start:]), items, cursor


class Window:
    """A stretch of sequential requests made by this process: server (gunicorn tree) and
    PostgreSQL CPU, everything else on the machine, and the peak RSS of the server and of
    this process (the client), as bench.load reports them for a load run."""

    def __init__(self, ctx: Context) -> None:
        self.sampler = _Sampler(ctx.server_pid, os.getpid(), ctx.db_pid)
        self.me = psutil.Process()

    def __enter__(self) -> Window:
        self.sampler.start()
        self.t0 = time.monotonic()
        self.cpu0 = self.sampler.cpu_snapshot()
        self.me0 = sum(self.me.cpu_times()[:2])
        return self

    def __exit__(self, *exc: object) -> None:
        self.elapsed = time.monotonic() - self.t0
        self.cpu1 = self.sampler.cpu_snapshot()
        self.me1 = sum(self.me.cpu_times()[:2])
        self.sampler.stop()

    def row(self, label: str, timings: list[float], *, items: float, extra: dict | None = None
            ) -> dict:
        """A summary-table row (users = 1; requests/s and x healthz do not apply)."""
        stats = summary_ms(timings)
        pct = {k: 100 * (self.cpu1[k] - self.cpu0[k]) / self.elapsed for k in ("server", "db")}
        client = 100 * (self.me1 - self.me0) / self.elapsed
        machine = _busy_pct(self.cpu0["machine"], self.cpu1["machine"]) * psutil.cpu_count()
        return {"label": label, "users": 1, "rps": None,
                "per_s": len(timings) / (sum(timings) / 1000),
                "p50_ms": stats["p50"], "p95_ms": stats["p95"], "p99_ms": stats["p99"],
                "max_ms": stats["max"], "mean_ms": stats["mean"], "requests": len(timings),
                "failures": 0, "items": items,
                "server_rss_peak_mib": self.sampler.server_peak / 2**20,
                "loadgen_rss_peak_mib": self.sampler.loadgen_peak / 2**20,
                "server_cpu_pct": pct["server"], "loadgen_cpu_pct": client,
                "db_cpu_pct": pct["db"] if self.sampler.db_pid else None,
                "other_cpu_pct": max(0.0, machine - pct["server"] - pct["db"] - client),
                "server_cpu_ms_per_request": 10 * pct["server"] * self.elapsed / len(timings),
                "db_cpu_ms_per_request": 10 * pct["db"] * self.elapsed / len(timings),
                **(extra or {})}


def _push_changes(ctx: Context, loaded: dict, person_ids: list[int]) -> dict:
    """50 changes of the worker's grid through POST /sync/push, as a phone sends them."""
    rng = random.Random(SEED + 1)
    chosen = rng.sample(person_ids, 45)
    updates, ends = chosen[:40], chosen[40:]
    engine = ctx.owner_engine()
    with engine.connect() as conn:
        households = conn.scalars(sa.text(
            "SELECT id FROM households WHERE area_id = :a AND ended_at IS NULL ORDER BY id"),
            {"a": loaded["grid_id"]}).all()
    engine.dispose()
    ops = []
    for i, pid in enumerate(updates):
        data = ({"phone": rng.choice(MOBILE_PREFIXES) + f"{rng.randrange(10**8):08d}"}
                if i % 2 else {"name": f"更正姓名{i}"})
        ops.append({"op": "update", "type": "person", "id": pid, "version": 1, "data": data})
    used = loaded["used_id_numbers"]
    for _ in range(5):
        while True:
            number = with_check(f"{LOCAL_REGION}2026{rng.randint(1, 9):02d}"
                                f"{rng.randint(1, 28):02d}{rng.randrange(1000):03d}")
            if number not in used:
                used.add(number)
                break
        ops.append({"op": "create", "type": "person", "client_uuid": str(uuid.uuid4()),
                    "data": {"name": "新生儿" + str(len(ops)), "id_number": number,
                             "household_id": rng.choice(households),
                             "relation_to_head": "grandchild"}})
    for pid in ends:
        ops.append({"op": "end", "type": "person", "id": pid, "version": 1,
                    "data": {"status": "moved_out", "reason": "迁往外地"}})
    t0 = time.perf_counter()
    resp = requests.post(f"{ctx.base_url}/sync/push", json={"items": ops},
                         headers=ctx.auth_headers("worker"), timeout=60)
    ms = (time.perf_counter() - t0) * 1000
    if resp.status_code != 200:
        raise RuntimeError(f"push: {resp.status_code} {resp.text[:300]}")
    statuses = Counter(r["status"] for r in resp.json()["results"])
    bad = [r for r in resp.json()["results"] if r["status"] >= 300]
    if bad:
        raise RuntimeError(f"push: {len(bad)} items failed, e.g. {bad[0]}")
    return {"operations": len(ops), "statuses": dict(statuses), "push_ms": ms, "ended": ends}


def _incremental(ctx: Context, puller: Puller, cursor: str, label: str, changes: int
                 ) -> tuple[dict, str]:
    """Pulls from one cursor (read-only: each gets the same items); the row and the cursor
    that follows. At least `changes` items expected, none when changes is 0."""
    for _ in range(WARM_PULLS):
        puller.page(cursor, PAGE)
    puller.reset()
    with Window(ctx) as w:
        for _ in range(FULL_PULLS):
            body = puller.page(cursor, PAGE)
            if body["has_more"] or body["reset"]:
                raise RuntimeError(f"{label}: more than one page, or a reset")
    items = body["items"]
    if len(items) < changes or (changes == 0 and items):
        raise RuntimeError(f"{label}: {len(items)} items")
    row = w.row(label, puller.pages_ms, items=len(items),
                extra={"items_by_type": dict(Counter(it["type"] for it in items))})
    print(f"  {label}: {len(items)} items, p50 {row['p50_ms']:.1f} ms "
          f"p99 {row['p99_ms']:.1f} ms", flush=True)
    return row, body["next_cursor"]


def run(ctx: Context) -> dict:
    loaded = load_register(ctx)
    id_numbers = loaded.pop("id_numbers")
    print(f"  loaded {loaded['rows']} in {loaded['generate_s']} s + COPY {loaded['copy_s']} s"
          f" + VACUUM ANALYZE {loaded['vacuum_analyze_s']} s; grid {GRID}: "
          f"{loaded['in_grid_current']}", flush=True)
    expected_items = sum(loaded["in_grid_current"].values())
    puller = Puller(ctx)
    rows = []

    # 1. first sync, pages of PAGE
    for _ in range(WARM_PULLS):
        puller.full(PAGE)
    puller.reset()
    whole = []
    with Window(ctx) as w:
        for _ in range(FULL_PULLS):
            ms, items, final_cursor = puller.full(PAGE)
            whole.append(ms)
            keys = {(it["type"], it["id"]) for it in items}
            if len(items) != expected_items or len(keys) != len(items):
                raise RuntimeError(f"a full pull gave {len(items)} items ({len(keys)} "
                                   f"distinct), expected {expected_items}")
    pages = len(puller.pages_ms) // FULL_PULLS
    kinds = dict(Counter(it["type"] for it in items))
    rows.append(w.row(f"pull: full grid {pages}x{PAGE}", whole, items=len(items),
                      extra={"pages": pages, "items_by_type": kinds}))
    by_page = [{"page": i + 1, "items": puller.last_pages[i],
                **summary_ms(puller.pages_ms[i::pages])} for i in range(pages)]
    rows.append(w.row(f"pull: a page of {PAGE}", puller.pages_ms, items=PAGE,
                      extra={**puller.bytes_mean(), "by_page": by_page}))
    print(f"  full pull: {len(items)} items {kinds} in {pages} pages: p50 "
          f"{rows[-2]['p50_ms']:.0f} ms p99 {rows[-2]['p99_ms']:.0f} ms; a page p50 "
          f"{rows[-1]['p50_ms']:.0f} p99 {rows[-1]['p99_ms']:.0f} ms", flush=True)

    # 2. the same first sync in pages of OLD_PAGE
    for _ in range(WARM_PULLS):
        puller.full(OLD_PAGE)
    puller.reset()
    old_whole = []
    with Window(ctx) as w:
        for _ in range(FULL_PULLS):
            ms, old_items, _ = puller.full(OLD_PAGE)
            old_whole.append(ms)
            if len(old_items) != expected_items:
                raise RuntimeError(f"a full pull in pages of {OLD_PAGE} gave {len(old_items)}")
    old_pages = len(puller.pages_ms) // FULL_PULLS
    rows.append(w.row(f"pull: full grid {old_pages}x{OLD_PAGE}", old_whole,
                      items=len(old_items), extra={"pages": old_pages}))
    rows.append(w.row(f"pull: a page of {OLD_PAGE}", puller.pages_ms, items=OLD_PAGE,
                      extra=puller.bytes_mean()))
    print(f"  full pull in pages of {OLD_PAGE}: p50 {rows[-2]['p50_ms']:.0f} ms "
          f"p99 {rows[-2]['p99_ms']:.0f} ms", flush=True)

    # 3. incremental: CHANGES changes pushed, then pulls from the cursor the full sync ended
    # with (read-only: each gets the same changes), then from the one after them
    person_ids = sorted(i for (t, i) in keys if t == "person")
    pushed = _push_changes(ctx, loaded, person_ids)
    delta_row, after = _incremental(ctx, puller, final_cursor,
                                    f"pull: after {CHANGES} changes", CHANGES)
    empty_row, _ = _incremental(ctx, puller, after, "pull: nothing changed", 0)
    rows += [delta_row, empty_row]

    # 4. the first page under load, next to a fresh /healthz
    headers = ctx.auth_headers("worker")
    base = ctx.baseline(fresh=True)
    load_row = ctx.measure(f"GET /sync/pull limit={PAGE}", f"/sync/pull?limit={PAGE}",
                           users=LOAD_USERS, headers=headers)

    # 5. ID-number lookup: SQL over all persons, HTTP over the worker's grid
    with ctx.engine.connect() as conn:
        bidx = conn.scalars(sa.text(
            "SELECT id_number_bidx FROM persons WHERE id_number_bidx IS NOT NULL "
            "ORDER BY md5(id::text) LIMIT 5000")).all()
        plan = conn.execute(sa.text("EXPLAIN (ANALYZE, BUFFERS) SELECT id FROM persons "
                                    "WHERE id_number_bidx = :b"), {"b": bidx[0]}).scalars().all()
    lookup_sql = ctx.sql_timings("SELECT id FROM persons WHERE id_number_bidx = :b",
                                 [{"b": b} for b in bidx], n=10_000, warmup=500)
    select1 = ctx.sql_timings("SELECT 1", n=5000)
    print(f"  SQL lookup by blind index p50 {lookup_sql['p50']:.3f} ms p99 "
          f"{lookup_sql['p99']:.3f} ms (SELECT 1 p50 {select1['p50']:.3f}, p99 "
          f"{select1['p99']:.3f})", flush=True)
    present = sorted(n for i, n in id_numbers.items() if i not in pushed["ended"])
    numbers = random.Random(SEED + 2).sample(present, 1000)
    check = requests.get(f"{ctx.base_url}/persons", params={"id_number": numbers[0]},
                         headers=headers, timeout=10)
    if check.status_code != 200 or len(check.json()) != 1:
        raise RuntimeError(f"GET /persons?id_number= gave {check.status_code} "
                           f"{check.text[:200]}")
    base2 = ctx.baseline(fresh=True)
    lookup_http = ctx.measure("GET /persons?id_number=", [f"/persons?id_number={n}"
                                                          for n in numbers], headers=headers)
    bench_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    full_row, old_full_row = rows[0], rows[2]
    return {
        "rows": [*rows, base, load_row, base2, lookup_http],
        "data": loaded | {"used_id_numbers": len(loaded["used_id_numbers"])},
        "expected_items": expected_items,
        "pushed": pushed,
        "lookup_sql_ms": lookup_sql,
        "select1_ms": select1,
        "lookup_explain_analyze": plan,
        "bench_process_peak_rss_mib": round(bench_rss, 1),
        "targets": TARGETS,
        "meets": {"full_grid_pull_p99": full_row["p99_ms"] < TARGETS["full_grid_pull_p99_ms"],
                  f"full_grid_pull_p99_pages_of_{OLD_PAGE}":
                      old_full_row["p99_ms"] < TARGETS["full_grid_pull_p99_ms"]},
    }

"""Registry import: a persons ledger (CSV) through the import service vs COPY; ID lookup.

Issue 4's volume is 1,000,000 people / 400,000 households / 30,000 buildings over 500 grids;
this benchmark imports N people (BENCH_IMPORT_N, default 200,000) in households of 1-4
(2.5 on average, so 0.4 N households) spread over BENCH_IMPORT_GRIDS grids (default 500:
grids without boundaries are added under the demo communities to reach it). Buildings are
not part of a persons ledger and are not loaded here.

1. The ledger is generated as a community would send it: a UTF-8 (BOM) CSV with Chinese
   headers and labels (序号, 姓名, 公民身份号码, 手机号码, 民族, 与户主关系, 人口类型, 户籍情况,
   户号, 户类型, 地址, 网格编码), valid ID numbers (GB 11643), about 1 % without one.
2. COPY baseline: N *other* people (other ID numbers, so that the unique index does not
   refuse the import later), the same columns the import writes to `persons`, with the
   encrypted, blind-indexed and masked values PRECOMPUTED (outside the timing), COPY'd
   into `persons` from a file by the app's role in one transaction, committed: the
   database's own cost of those rows (indexes, the change-stamp trigger, constraints, WAL
   with fsync on). Then they are deleted and the table vacuumed, so that the import starts
   from the same table.
3. Import: a separate Python process (so that its peak RSS is its own: VmHWM) creates the
   app and calls grid.ledgers.imports.import_ledger as the demo district administrator on
   the CSV file: reading, validation (the register's rules), encryption and blind indexes
   per row, duplicate checks (file and register), households by 户号, COPY in batches, one
   transaction, committed. Rows/s = N / wall time (commit included); ratio = that ÷ COPY's.
   The import also writes 0.4 N households and N household stays, which COPY does not.
4. After the load: `SELECT … FROM persons WHERE id_number_bidx = :b` for random imported
   people (ctx.sql_timings, p50/p99), and `GET /persons?id_number=` through HTTP as the
   district administrator (a row of the summary table, with its ratio to /healthz).

The data stays in this run's (throwaway) database.
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

import psutil
import sqlalchemy as sa

from bench import load

N = int(os.environ.get("BENCH_IMPORT_N", "200000"))
GRIDS = int(os.environ.get("BENCH_IMPORT_GRIDS", "500"))
# Ledger formats imported one after the other (each its own people and 户号): csv, xlsx.
FORMATS = tuple(os.environ.get("BENCH_IMPORT_FORMATS", "csv").split(","))
# Only the imports: no COPY baseline, no lookups (a before/after of the import alone).
ONLY_IMPORT = os.environ.get("BENCH_IMPORT_ONLY", "") not in ("", "0")
LOOKUPS = 5000
SEED = 20261122
DISTRICT = "330183"

SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘"
GIVEN = "伟芳娜秀英敏静丽强磊军洋勇艳杰娟涛明超兰霞平刚桂建国红梅志华海燕玉文晓东春"
ETHNICITIES = ["汉族"] * 95 + ["回族", "畲族", "满族", "苗族", "土家族"]
HEADER = ["序号", "姓名", "公民身份号码", "手机号码", "民族", "与户主关系", "人口类型",
          "户籍情况", "户号", "户类型", "地址", "网格编码"]


# --- data -----------------------------------------------------------------------------------


def ensure_grids(ctx, target: int) -> list[str]:
    """Grid codes of the district, adding grids (no boundary) under the demo communities
    until there are `target`."""
    with ctx.owner_engine().begin() as conn:
        codes = conn.scalars(sa.text(
            "SELECT code FROM areas WHERE level = 'grid' AND code LIKE :p ORDER BY code"),
            {"p": DISTRICT + "%"}).all()
        communities = conn.execute(sa.text(
            "SELECT id, code, name, path FROM areas WHERE level = 'community' "
            "AND code LIKE :p ORDER BY code"), {"p": DISTRICT + "%"}).all()
        k = 100
        while len(codes) < target:
            k += 1
            for cid, ccode, cname, cpath in communities:
                if len(codes) >= target:
                    break
                code = f"{ccode}{k:03d}"
                new_id = conn.scalar(sa.text(
                    "INSERT INTO areas (code, name, level, parent_id, path, version) "
                    "VALUES (:code, :name, 'grid', :parent, '', 1) RETURNING id"),
                    {"code": code, "name": f"{cname}第{k}网格", "parent": cid})
                conn.execute(sa.text("UPDATE areas SET path = :p WHERE id = :id"),
                             {"p": f"{cpath}{new_id}.", "id": new_id})
                codes.append(code)
    return sorted(codes)[:target]


def id_number(i: int) -> str:
    """The i-th of a sequence of distinct valid ID numbers (birth dates 1940-2019)."""
    from datetime import date, timedelta

    from stdnum.cn import ric

    days = 29200
    born = date(1940, 1, 1) + timedelta(days=i % days)
    body = f"330183{born:%Y%m%d}{i // days:03d}"
    return body + ric.calc_check_digit(body + "0")


def people(n: int, grids: list[str], offset: int, rng: random.Random, prefix: str = ""):
    """(序号, fields…) of n people in households of 1-4, grid by grid (户号 start with
    `prefix`, so that the ledgers of one run do not share households)."""
    per_grid = -(-n // len(grids))
    i = 0
    for g, grid in enumerate(grids):
        household = 0
        in_grid = 0
        while in_grid < per_grid and i < n:
            household += 1
            size = min(rng.choice((1, 2, 2, 3, 3, 4)), per_grid - in_grid, n - i)
            floating = rng.random() < 0.2
            for member in range(size):
                j = offset + i
                relation = ("户主", "配偶", "子女", "父母")[member]
                yield [i + 1, rng.choice(SURNAMES) + rng.choice(GIVEN) + rng.choice(GIVEN),
                       "" if j % 97 == 0 else id_number(j),
                       f"13{j % 10**9:09d}" if member < 2 else "",
                       rng.choice(ETHNICITIES), relation,
                       "流动人口" if floating else "户籍人口",
                       "人在户不在" if floating else "人户同在",
                       f"{prefix}{g:03d}{household:05d}", "流动户" if floating else "户籍户",
                       f"{grid[-6:]}号楼{household % 30 + 1}单元", grid]
                i += 1
                in_grid += 1


def write_ledger(path: Path, n: int, grids: list[str], offset: int = 0,
                 prefix: str = "") -> None:
    rows = people(n, grids, offset, random.Random(SEED + offset), prefix)
    if path.suffix == ".xlsx":
        from openpyxl import Workbook

        workbook = Workbook(write_only=True)  # what Excel would save: shared strings
        sheet = workbook.create_sheet("实有人口")
        sheet.append(HEADER)
        for row in rows:
            sheet.append(row)
        workbook.save(path)
        return
    with path.open("w", encoding="utf-8-sig", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(HEADER)
        writer.writerows(rows)


COPY_COLUMNS = ("area_id", "source", "created_by", "updated_by", "needs_review", "version",
                "name", "id_number_enc", "id_number_bidx", "id_number_masked", "sex",
                "birth_date", "phone_enc", "phone_bidx", "phone_masked", "ethnicity",
                "relation_to_head", "population_type", "registration_situation", "status")


def write_copy_rows(ctx, path: Path, n: int, grids: list[str]) -> None:
    """The COPY baseline's rows: n other people, encrypted values precomputed."""
    from grid.registry.validation import id_number_facts
    from server import pii
    from server.config import Config

    pii.configure(ctx.env.get("PII_KEYS", Config.PII_KEYS),
                  ctx.env.get("BLIND_INDEX_KEY", Config.BLIND_INDEX_KEY))
    with ctx.engine.connect() as conn:
        area_ids = dict(conn.execute(sa.text("SELECT code, id FROM areas WHERE code = ANY(:c)"),
                                     {"c": grids}).all())
        user = conn.scalar(sa.text("SELECT id FROM users WHERE username = 'district'"))
    relations = {"户主": "head", "配偶": "spouse", "子女": "child", "父母": "parent"}
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        for row in people(n, grids, n, random.Random(SEED + 1)):
            number, phone = row[2] or None, row[3] or None
            sex, born = id_number_facts(number) if number else (None, None)
            writer.writerow([
                area_ids[row[11]], "import", user, user, "f", 1, row[1],
                pii.encrypt(number, "person.id_number"),
                pii.blind_index(number, "person.id_number"), pii.mask_id_number(number), sex,
                born, pii.encrypt(phone, "person.phone"), pii.blind_index(phone, "person.phone"),
                pii.mask_phone(phone), row[4], relations[row[5]],
                "floating" if row[6] == "流动人口" else "registered",
                "present_unregistered" if row[6] == "流动人口" else "both_here", "present"])


# --- measurements ---------------------------------------------------------------------------


class CpuWindow:
    """CPU over a timed phase, 100 = one core: PostgreSQL (the local cluster), this process
    with its children (the importing process), and everything else on the machine (noise,
    as bench.load reports it for HTTP lines)."""

    def __init__(self, ctx) -> None:
        self.db_pid = ctx.db_pid

    def _own(self) -> float:
        t = psutil.Process().cpu_times()
        return t.user + t.system + t.children_user + t.children_system

    def __enter__(self):
        self.t0, self.machine0 = time.perf_counter(), psutil.cpu_times()
        self.db0, self.own0 = load._cpu_seconds(self.db_pid), self._own()
        return self

    def __exit__(self, *exc) -> None:
        elapsed = time.perf_counter() - self.t0
        machine = load._busy_pct(self.machine0, psutil.cpu_times()) * psutil.cpu_count()
        db = 100 * (load._cpu_seconds(self.db_pid) - self.db0) / elapsed
        own = 100 * (self._own() - self.own0) / elapsed
        self.result = {"db_cpu_pct": round(db), "bench_cpu_pct": round(own),
                       "other_cpu_pct": round(max(0.0, machine - db - own))}


def checkpoint(ctx) -> bool:
    """CHECKPOINT (a superuser's) before a timed load, so that each starts with no dirty
    buffers and a fresh WAL segment; False when the run has no superuser URL."""
    url = ctx.urls.get("ADMIN_DATABASE_URL")
    if not url or url == ctx.urls.get("DATABASE_URL"):
        return False
    try:
        engine = sa.create_engine(url.rsplit("/", 1)[0] + "/" + ctx.engine.url.database,
                                  poolclass=sa.NullPool)
        with engine.connect() as conn:
            conn.execution_options(isolation_level="AUTOCOMMIT").execute(sa.text("CHECKPOINT"))
        return True
    except sa.exc.SQLAlchemyError:
        return False


def copy_baseline(ctx, path: Path) -> dict:
    raw = ctx.engine.raw_connection()
    try:
        cur = raw.cursor()
        cur.execute("SELECT coalesce(max(id), 0) FROM persons")
        before = cur.fetchone()[0]
        raw.commit()
        t0 = time.perf_counter()
        with path.open() as fh:
            cur.copy_expert(f"COPY persons ({', '.join(COPY_COLUMNS)}) FROM STDIN "
                            "WITH (FORMAT csv)", fh)
        rows = cur.rowcount
        raw.commit()
        seconds = time.perf_counter() - t0
    finally:
        raw.close()
    return {"rows": rows, "seconds": seconds, "rows_per_s": rows / seconds, "max_id": before}


def remove_copied(ctx, before: int) -> None:
    """The COPY'd people go again, so that the import starts from the same table."""
    with ctx.owner_engine().connect() as conn:
        conn.execute(sa.text("DELETE FROM persons WHERE id > :b"), {"b": before})
        conn.commit()
        conn.execution_options(isolation_level="AUTOCOMMIT").execute(
            sa.text("VACUUM ANALYZE persons"))


def import_in_child(ctx, path: Path) -> dict:
    proc = subprocess.run([str(ctx.root / ".venv/bin/python"), "-m",
                           "bench.benchmarks.registry_import", str(path)],
                          env=ctx.env, cwd=ctx.root, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr[-5000:])
        raise RuntimeError(f"the import process failed (exit {proc.returncode})")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _vm(field: str) -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    return 0


def child(path: str) -> None:
    """In the importing process: the app, the district administrator, one import. Since
    imports became jobs (202 + job), the same path as the API: submit (checks of the file,
    the upload stored) then the worker's run of the job; before that, the service call."""
    from grid.areas import service as areas
    from grid.ledgers import imports as ledgers
    from server import db
    from server.app import create_app
    from server.auth.actor import Actor
    from server.auth.models import User, UserRole
    from server.auth.permissions import permissions_for

    app = create_app({"LOG_LEVEL": "WARNING"})
    with app.app_context():
        s = db.session()
        user = s.scalars(sa.select(User).where(User.username == "district")).one()
        roles = frozenset(s.scalars(sa.select(UserRole.role).where(UserRole.user_id == user.id)))
        actor = areas.resolve_scope(s, Actor(user_id=user.id, roles=roles,
                                             permissions=permissions_for(roles)))
        s.rollback()
        # The peak of the import itself, not of start-up (create_app peaks at ~185 MiB
        # while building the app, then settles at ~130): "5" resets VmHWM to the current RSS.
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        rss_before = _vm("VmRSS")
        t0 = time.perf_counter()
        cpu0 = time.process_time()
        submit_s = submit_peak = None
        if hasattr(ledgers, "submit_import"):
            from server import jobs
            from server.storage.blobs import blob_store

            store = blob_store()
            with open(path, "rb") as fh, db.unit_of_work() as s:
                job_id = ledgers.submit_import(
                    s, actor, store, "persons", fh, filename=Path(path).name,
                    limits=ledgers.ImportLimits.from_config(app.config)).id
            submit_s = time.perf_counter() - t0
            # The upload is read into memory to be stored (by gunicorn, in production):
            # its peak apart from the worker's run of the job.
            submit_peak = _vm("VmHWM")
            with open("/proc/self/clear_refs", "w") as fh:
                fh.write("5")
            ran = jobs.run_next(db.session(), store, progress_engine=app.extensions["db_engine"])
            db.session.remove()
            with db.unit_of_work() as s:
                job = s.get(jobs.Job, job_id)
                if job.state != "succeeded":
                    raise RuntimeError(f"the import job {ran}: {job.error}")
                report = job.result
        else:
            with open(path, "rb") as fh, db.unit_of_work() as s:
                report = ledgers.import_ledger(s, actor, "persons", fh, filename=Path(path).name)
        seconds = time.perf_counter() - t0
        cpu = time.process_time() - cpu0
    print(json.dumps({"seconds": seconds, "cpu_seconds": cpu, "rows": report["rows"],
                      "valid": report["valid"], "invalid": report["invalid"],
                      "written": report["written"], "rss_before_bytes": rss_before,
                      "peak_rss_bytes": _vm("VmHWM"), "batch_rows": ledgers.BATCH_ROWS,
                      "submit_seconds": submit_s, "submit_peak_rss_bytes": submit_peak,
                      "as_job": submit_s is not None}))


def run(ctx) -> dict:
    from server import pii
    from server.config import Config

    work = ctx.root / "var" / "bench-import"
    work.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    grids = ensure_grids(ctx, GRIDS)
    # Each format its own people (ID numbers from k·N) and 户号 (prefix): k = 0, 2, 3…
    # (N…2N are the COPY baseline's, deleted again before the imports).
    ledgers = {}
    for k, fmt in enumerate(FORMATS):
        offset = 0 if k == 0 else (k + 1) * N
        ledgers[fmt] = (work / f"persons-{N}.{fmt}", offset)
        write_ledger(ledgers[fmt][0], N, grids, offset, "" if k == 0 else f"{fmt[0].upper()}")
    copy_file = work / f"persons-copy-{N}.csv"
    if not ONLY_IMPORT:
        write_copy_rows(ctx, copy_file, N, grids)
    prepared = time.perf_counter() - t0
    sizes = {fmt: path.stat().st_size / 2**20 for fmt, (path, _) in ledgers.items()}
    print(f"  data: {N:,} people over {len(grids)} grids, ledgers "
          f"{', '.join(f'{f} {m:.1f} MiB' for f, m in sizes.items())} "
          f"(prepared in {prepared:.0f} s)", flush=True)

    checkpointed = checkpoint(ctx)
    copy = None
    if not ONLY_IMPORT:
        with CpuWindow(ctx) as cpu:
            copy = copy_baseline(ctx, copy_file)
        copy["cpu"] = cpu.result
        remove_copied(ctx, copy.pop("max_id"))
        print(f"  COPY persons (precomputed ciphertexts): {copy['rows']:,} rows in "
              f"{copy['seconds']:.1f} s = {copy['rows_per_s']:,.0f} rows/s; CPU {copy['cpu']}",
              flush=True)
    imports = {}
    for fmt, (ledger, _) in ledgers.items():
        checkpoint(ctx)
        with CpuWindow(ctx) as cpu:
            imp = import_in_child(ctx, ledger)
        imp["cpu"] = cpu.result
        imp["rows_per_s"] = imp["valid"] / imp["seconds"]
        imp["ledger_mib"] = sizes[fmt]
        vs_copy = f" = {imp['rows_per_s'] / copy['rows_per_s']:.0%} of COPY" if copy else ""
        how = (f"as a job: submit {imp['submit_seconds']:.1f} s, peak RSS "
               f"{imp['submit_peak_rss_bytes'] / 2**20:.0f} MiB; then the job"
               if imp.get("as_job") else "in-process service call")
        print(f"  import {fmt} ({how}): {imp['valid']:,} rows in {imp['seconds']:.1f} s "
              f"= {imp['rows_per_s']:,.0f} rows/s{vs_copy}; Python CPU "
              f"{imp['cpu_seconds']:.0f} s; peak RSS {imp['peak_rss_bytes'] / 2**20:.0f} MiB "
              f"(after app start {imp['rss_before_bytes'] / 2**20:.0f} MiB); written "
              f"{imp['written']}; CPU {imp['cpu']}", flush=True)
        imports[fmt] = imp
    rows = [{"label": f"import {fmt} (rows/s)", "rps": imp["rows_per_s"]}
            for fmt, imp in imports.items()]
    result = {"rows": rows, "n": N, "grids": len(grids), "ledger_mib": sizes,
              "imports": imports, "checkpointed": checkpointed}
    if ONLY_IMPORT:
        return result
    first = imports[FORMATS[0]]
    ratio = first["rows_per_s"] / copy["rows_per_s"]

    with ctx.owner_engine().connect() as conn:
        conn.execution_options(isolation_level="AUTOCOMMIT").execute(sa.text("ANALYZE"))
    rng = random.Random(SEED + 2)
    sample = [id_number(k) for k in (rng.randrange(N) for _ in range(LOOKUPS)) if k % 97]
    pii.configure(ctx.env.get("PII_KEYS", Config.PII_KEYS),
                  ctx.env.get("BLIND_INDEX_KEY", Config.BLIND_INDEX_KEY))
    params = [{"b": pii.blind_index(x, "person.id_number")} for x in sample]
    lookup = ctx.sql_timings("SELECT id, area_id, name, id_number_masked FROM persons "
                             "WHERE id_number_bidx = :b", params, n=LOOKUPS)
    floor = ctx.sql_timings("SELECT 1", n=LOOKUPS)
    print(f"  lookup by ID number (blind index): p50 {lookup['p50']:.3f} ms, p99 "
          f"{lookup['p99']:.3f} ms (SELECT 1: p50 {floor['p50']:.3f}, p99 {floor['p99']:.3f})",
          flush=True)
    http = ctx.measure("GET /persons?id_number=",
                       [f"/persons?id_number={x}" for x in sample[:500]],
                       headers=ctx.auth_headers("district"))
    result["rows"] = [{"label": "COPY persons (rows/s)", "rps": copy["rows_per_s"]},
                      *rows, http]
    return {**result, "copy": copy, "import": first, "import_vs_copy": ratio,
            "lookup_ms": lookup, "select1_ms": floor,
            "copy_input": "precomputed ciphertexts, blind indexes and masks (no Python work "
                          "timed)"}


if __name__ == "__main__":
    child(sys.argv[1])

"""What a benchmark gets: `Context`, bound to the server and database of this run.

A benchmark is a module `bench/benchmarks/<name>.py` with a docstring (its first line is the
description `python -m bench.run --list` shows) and

    def run(ctx: Context) -> dict:
        row = ctx.measure("GET /geo/locate", "/geo/locate?lon=119.96&lat=30.05",
                          headers=ctx.auth_headers("worker"))
        return {"rows": [row]}

`rows` are printed in the summary table; anything else in the dict goes to the JSON file
(bench/results/<name>-<date>T<HHMM>.json). Rows made by `ctx.measure` carry `vs_healthz`: their
requests/s divided by those of /healthz measured in the same run (`ctx.baseline()`).
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import requests
import sqlalchemy as sa

from bench import load
from bench.stats import summary_ms

# /healthz concurrency that gave the most requests/s when last tuned (bench/README.md);
# used when a run needs the baseline but the `healthz` benchmark (which re-tunes) is not run.
BASELINE_USERS = 32
DEFAULT_SECONDS = 20.0
# Other processes' CPU during a measurement (100 = one core) above which it counts as noisy.
NOISY_CPU_PCT = 20
DEFAULT_WARMUP = 3.0


@dataclass
class Context:
    base_url: str
    server_pid: int
    db_pid: int | None  # postmaster of the local cluster (None with DATABASE_URL)
    env: dict  # the app's environment: database URLs, FLASK_APP, PATH with .venv/bin
    urls: dict  # DATABASE_URL (app role), MIGRATION_DATABASE_URL (owner), ADMIN_DATABASE_URL
    root: Any  # the repository root (Path)
    seconds: float = DEFAULT_SECONDS
    warmup: float = DEFAULT_WARMUP
    users: int | None = None  # forced concurrency (--users); None: each benchmark decides
    baseline_users: int = BASELINE_USERS
    _baseline: dict | None = field(default=None, repr=False)
    _tokens: dict = field(default_factory=dict, repr=False)
    _engine: sa.Engine | None = field(default=None, repr=False)

    # ------------------------------------------------------------------ HTTP load

    def measure(
        self,
        label: str,
        path: str | list[str],
        *,
        users: int | None = None,
        seconds: float | None = None,
        warmup: float | None = None,
        headers: dict | None = None,
        method: str = "GET",
        body: object = None,
        ratio: bool = True,
    ) -> dict:
        """`bench.load.measure` against this run's server, labelled, with `vs_healthz`
        (requests/s ÷ the /healthz baseline of this run) unless ratio=False."""
        users = users or self.users or self.baseline_users
        row = load.measure(
            path, users=users, headers=headers, method=method, body=body,
            seconds=self.seconds if seconds is None else seconds,
            warmup=self.warmup if warmup is None else warmup,
            base_url=self.base_url, server_pid=self.server_pid, db_pid=self.db_pid,
        )
        row = {"label": label, **row}
        if ratio:
            row["vs_healthz"] = row["rps"] / self.baseline()["rps"]
        print("  " + one_line(row), flush=True)
        return row

    def baseline(self, fresh: bool = False) -> dict:
        """/healthz measured in this run (once, unless fresh=True): what ratios divide by."""
        if self._baseline is None or fresh:
            self._baseline = self.measure("/healthz (baseline)", "/healthz", ratio=False,
                                          users=self.baseline_users)
            self._baseline["vs_healthz"] = 1.0
        return self._baseline

    def set_baseline(self, row: dict, users: int | None = None) -> None:
        """Adopt a /healthz row as this run's baseline (the `healthz` benchmark does)."""
        row["vs_healthz"] = 1.0
        self._baseline = row
        if users:
            self.baseline_users = users

    # ------------------------------------------------------------------ accounts

    def token(self, login: str = "worker", password: str | None = None) -> str:
        """An access token for a demo account (grid/demo.py DEMO_ACCOUNTS: admin, district,
        auditor, dispatcher, dispatcher2, staff, chief, worker, worker2, handler, resident;
        password DEMO_PASSWORD unless given). Logged in once per run and
        cached: login is rate-limited (10 per account, 60 per IP per 5 minutes) and costs an
        argon2 hash. Renewed a minute before it expires."""
        cached = self._tokens.get(login)
        if cached and cached[1] > time.monotonic():
            return cached[0]
        if password is None:
            from grid.demo import DEMO_PASSWORD

            password = DEMO_PASSWORD
        resp = requests.post(f"{self.base_url}/auth/login", timeout=30,
                             json={"login": login, "password": password})
        if resp.status_code != 200:
            raise RuntimeError(f"login as {login!r} failed: {resp.status_code} {resp.text[:200]}")
        data = resp.json()
        expires = time.monotonic() + max(60, data.get("expires_in", 900) - 60)
        self._tokens[login] = (data["access_token"], expires)
        return data["access_token"]

    def auth_headers(self, login: str = "worker") -> dict:
        return {"Authorization": f"Bearer {self.token(login)}"}

    # ------------------------------------------------------------------ database

    @property
    def engine(self) -> sa.Engine:
        """SQLAlchemy engine on DATABASE_URL (the app's role)."""
        if self._engine is None:
            self._engine = sa.create_engine(self.urls["DATABASE_URL"], pool_size=2)
        return self._engine

    def owner_engine(self) -> sa.Engine:
        """Engine on MIGRATION_DATABASE_URL (owner role): bulk data generation, ANALYZE."""
        return sa.create_engine(self.urls["MIGRATION_DATABASE_URL"], poolclass=sa.NullPool)

    def sql_timings(
        self,
        sql: str,
        params: Mapping | Iterable[Mapping] | None = None,
        *,
        n: int = 1000,
        warmup: int = 50,
    ) -> dict:
        """Client-side latency of one statement on one connection (execute + fetch all),
        n timed runs after `warmup` untimed ones. `params`: one mapping, or an iterable of
        them cycled through (e.g. random points). Returns count, p50/p95/p99/max/mean (ms)."""
        if params is None or isinstance(params, Mapping):
            param_list = [params or {}]
        else:
            param_list = list(params) or [{}]
        stmt = sa.text(sql)
        timings = []
        with self.engine.connect() as conn:
            for i in range(warmup + n):
                p = param_list[i % len(param_list)]
                t0 = time.perf_counter()
                conn.execute(stmt, p).fetchall()
                if i >= warmup:
                    timings.append((time.perf_counter() - t0) * 1000)
            conn.rollback()
        return summary_ms(timings)

    # ------------------------------------------------------------------ app commands

    def flask(self, *args: str) -> str:
        """Run `flask <args>` with the app's environment (e.g. a data generator command)."""
        proc = subprocess.run([str(self.root / ".venv/bin/flask"), *args], env=self.env,
                              cwd=self.root, capture_output=True, text=True)
        if proc.returncode != 0:
            sys.stderr.write(proc.stderr)
            raise RuntimeError(f"flask {' '.join(args)} failed (exit {proc.returncode})")
        return proc.stdout

    def close(self) -> None:
        if self._engine is not None:
            self._engine.dispose()


def one_line(row: dict) -> str:
    """A measured row in one line, for progress output."""
    ratio = f"  x{row['vs_healthz']:.2f}" if "vs_healthz" in row else ""
    fail = f"  FAILURES {row['failures']}: {row['errors']}" if row["failures"] else ""
    db = f" db {row['db_cpu_pct']:.0f}%" if row.get("db_cpu_pct") is not None else ""
    return (
        f"{row['label']:<24} users {row['users']:>3}  {row['rps']:7.1f} req/s{ratio}  "
        f"p50 {_ms(row['p50_ms'])}  p99 {_ms(row['p99_ms'])} ms  "
        f"CPU server {row['server_cpu_pct']:.0f}% loadgen {row['loadgen_cpu_pct']:.0f}%{db} "
        f"other {row['other_cpu_pct']:.0f}%{fail}"
    )


def _ms(v: float | None) -> str:
    return "   -" if v is None else f"{v:5.2f}"

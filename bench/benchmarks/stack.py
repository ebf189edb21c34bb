"""What every authenticated request costs before its own work: the stack (issue 16).

Against this run's server (the code under test) and, when BENCH_BEFORE names a commit, a
second gunicorn serving that commit's code from a throwaway git worktree on the same
database, measured in turns (before, after, before, after…) so that both see the same
machine. One plain client, one request at a time (bench.load.sequential):

- /healthz (no database, no token): HTTP and Flask alone;
- GET /me (the token, the actor, one small read);
- the empty z16 tile 0/0 (nothing there: the token, the actor, one prepared statement):
  its HTTP p50 minus its statement's p50 on a bare connection is "the stack";
- GET /geo/locate at a demo point: one user's requests/s ÷ /healthz's.

The before server waits on /healthz, not /readyz: an older commit's /readyz may not know
this database's newest migration.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
import time
from pathlib import Path

import requests

from bench import load
from bench.harness import Context
from bench.run import free_port, stop_process

ROUNDS = 3
SECONDS = 4.0
EMPTY_TILE = "/tiles/buildings,cases/16/0/0.mvt"
LOCATE = "/geo/locate?lon=119.962000&lat=30.052000"


def _serve_commit(ctx: Context, commit: str, workdir: Path) -> tuple[subprocess.Popen, str]:
    tree = workdir / "before"
    subprocess.run(["git", "worktree", "add", "--detach", "-f", str(tree), commit],
                   cwd=ctx.root, check=True, capture_output=True)
    port = free_port()
    env = {**ctx.env, "PYTHONPATH": str(tree)}
    gunicorn = Path(ctx.env["PATH"].split(os.pathsep)[0]) / "gunicorn"
    log = (workdir / "gunicorn.log").open("w")
    proc = subprocess.Popen([str(gunicorn), "-w", "2", "-b", f"127.0.0.1:{port}",
                             "--log-level", "warning", "wsgi:app"],
                            env=env, cwd=tree, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if requests.get(f"{base}/healthz", timeout=2).status_code == 200:
                return proc, base
        except requests.RequestException:
            pass
        time.sleep(0.2)
    stop_process(proc)
    raise RuntimeError(f"the server of {commit} did not start; see {workdir}/gunicorn.log")


def _token(base: str) -> dict:
    from grid.demo import DEMO_PASSWORD

    resp = requests.post(f"{base}/auth/login", json={"login": "dispatcher",
                                                      "password": DEMO_PASSWORD}, timeout=30)
    resp.raise_for_status()
    return {"Authorization": f"Bearer {resp.json()['access_token']}"}


def _empty_tile_sql(ctx: Context) -> float:
    from bench.benchmarks.maps import tile_statements, time_sql

    timed = time_sql(ctx, tile_statements(ctx, [(16, 0, 0)]), n=300)
    return timed["prepared"]["p50"]


def _round(servers: dict[str, tuple[str, dict]]) -> dict[str, dict[str, dict]]:
    out: dict[str, dict[str, dict]] = {name: {} for name in servers}
    for label, path, auth in (("healthz", "/healthz", False), ("me", "/me", True),
                              ("empty_tile", EMPTY_TILE, True), ("locate", LOCATE, True)):
        for name, (base, headers) in servers.items():
            out[name][label] = load.sequential([path], seconds=SECONDS, warmup=0.5,
                                               headers=headers if auth else None,
                                               base_url=base)
    return out


def _median(values: list[float]) -> float:
    values = sorted(values)
    return values[len(values) // 2]


def run(ctx: Context) -> dict:
    servers = {"after": (ctx.base_url, _token(ctx.base_url))}
    before_commit = os.environ.get("BENCH_BEFORE")
    before_proc = None
    workdir = Path(tempfile.mkdtemp(prefix="bench-before-"))
    try:
        if before_commit:
            before_proc, base = _serve_commit(ctx, before_commit, workdir)
            servers = {"before": (base, _token(base)), **servers}
        rounds = [_round(servers) for _ in range(ROUNDS)]
    finally:
        stop_process(before_proc)
        if before_commit:
            subprocess.run(["git", "worktree", "remove", "--force", str(workdir / "before")],
                           cwd=ctx.root, capture_output=True)
    sql_ms = _empty_tile_sql(ctx)
    summary: dict[str, dict] = {}
    for name in servers:
        failed = {label for r in rounds for label, row in r[name].items() if row["p50"] is None}
        if failed:
            raise RuntimeError(f"{name}: no 200 answer for {sorted(failed)}")
        p50 = {label: _median([r[name][label]["p50"] for r in rounds])
               for label in rounds[0][name]}
        summary[name] = {**{f"{k}_p50_ms": round(v, 3) for k, v in p50.items()},
                         "stack_ms": round(p50["empty_tile"] - sql_ms, 3),
                         # one user's requests/s of locate ÷ /healthz's
                         "locate_vs_healthz": round(p50["healthz"] / p50["locate"], 2),
                         "failures": sum(r[name][label]["failures"] for r in rounds
                                         for label in r[name])}
        print(f"  {name:<6} " + "  ".join(f"{k} {v}" for k, v in summary[name].items()),
              flush=True)
    print(f"  empty tile statement p50 (prepared, bare connection): {sql_ms:.3f} ms", flush=True)
    return {"rows": [], "before_commit": before_commit, "empty_tile_sql_p50_ms": sql_ms,
            "summary": summary, "rounds": rounds}

"""`make bench [ARGS="healthz ..."]`: a throwaway PostGIS, the app under gunicorn, benchmarks.

    .venv/bin/python -m bench.run [NAME ...] [--seconds S] [--warmup S] [--users N] [--list]

Starts its own cluster in var/bench-postgres on port 54339 (BENCH_PGPORT), fresh each run,
fsync on, unless DATABASE_URL is set; runs `flask bootstrap-db` and `flask seed-demo`;
serves the app with `gunicorn -w 2` (BENCH_WORKERS) on a free port with gunicorn's and the
app's log level at WARNING (BENCH_LOG_LEVEL; per-request log lines off) and no access log,
the server's output going to var/bench-gunicorn.log; runs the benchmarks in
bench/benchmarks/ (all, `healthz` first, or those named); writes
bench/results/<name>-<date>T<HHMM>.json per benchmark; prints a summary; stops what it started.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import importlib
import importlib.metadata
import json
import os
import pkgutil
import platform
import signal
import socket
import subprocess
import sys
import time
import traceback

import psutil
import requests
import sqlalchemy as sa

from bench import benchmarks, load
from bench.harness import NOISY_CPU_PCT, Context
from scripts import devenv, localdb

ROOT = devenv.ROOT
PG_DIR = "var/bench-postgres"
RESULTS = ROOT / "bench" / "results"
SERVER_LOG = ROOT / "var" / "bench-gunicorn.log"
FIRST = ("healthz",)  # run before the others: it sets the baseline they are compared with
# Run after the others: registry_import leaves 200,000 persons behind, and registry_sync
# needs an empty register for its own (so `bench.run registry_sync registry_import` works).
LAST = ("registry_import",)


def available() -> dict[str, str]:
    """Benchmark name -> description (first docstring line), healthz first."""
    found = {}
    for mod in pkgutil.iter_modules(benchmarks.__path__):
        if not mod.name.startswith("_"):
            doc = importlib.import_module(f"bench.benchmarks.{mod.name}").__doc__ or ""
            found[mod.name] = doc.strip().splitlines()[0] if doc.strip() else ""
    order = sorted(found, key=lambda n: (n not in FIRST, n in LAST,
                                         FIRST.index(n) if n in FIRST else 0, n))
    return {n: found[n] for n in order}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_gunicorn(env: dict, port: int, workers: int) -> subprocess.Popen:
    SERVER_LOG.parent.mkdir(parents=True, exist_ok=True)
    log = SERVER_LOG.open("w")
    cmd = [str(devenv.BIN / "gunicorn"), "-w", str(workers), "-b", f"127.0.0.1:{port}",
           "--log-level", "warning", "wsgi:app"]  # no --access-logfile: access log off
    print(f"bench: gunicorn {' '.join(cmd[1:])}  (output: {SERVER_LOG.relative_to(ROOT)})",
          flush=True)
    try:
        return subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    finally:
        log.close()


def postmaster_pid() -> int | None:
    try:
        return int((ROOT / PG_DIR / "postmaster.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def wait_ready(proc: subprocess.Popen, base_url: str, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"gunicorn exited ({proc.returncode}); see {SERVER_LOG}")
        try:
            resp = requests.get(f"{base_url}/readyz", timeout=2)
            if resp.status_code == 200:
                return resp.json()
            last = f"{resp.status_code} {resp.text[:200]}"
        except requests.RequestException as exc:
            last = type(exc).__name__
        time.sleep(0.2)
    raise RuntimeError(f"/readyz not 200 after {timeout:.0f} s ({last}); see {SERVER_LOG}")


def stop_process(proc: subprocess.Popen | None) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)  # gunicorn: graceful stop of master and workers
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        for p in load.process_tree(proc.pid)[::-1]:
            p.kill()
        proc.wait()


def machine_info(urls: dict, workers: int, log_level: str) -> dict:
    cpu_model = ""
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as fh:
        cpu_model = next((ln.split(":", 1)[1].strip() for ln in fh
                          if ln.startswith("model name")), "")
    with sa.create_engine(urls["DATABASE_URL"], poolclass=sa.NullPool).connect() as conn:
        pg = conn.scalar(sa.text("SHOW server_version"))
        postgis = conn.scalar(sa.text("SELECT PostGIS_Lib_Version()"))
        geos = conn.scalar(sa.text("SELECT PostGIS_GEOS_Version()"))
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                            capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                           capture_output=True, text=True).stdout.strip()
    versions = {}
    for pkg in ("flask", "gunicorn", "sqlalchemy", "psycopg2-binary", "locust", "gevent"):
        try:
            versions[pkg] = importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            versions[pkg] = None
    return {
        "nproc": len(os.sched_getaffinity(0)),
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "cpu_model": cpu_model,
        "kernel": platform.release(),
        "loadavg_at_start": [round(x, 2) for x in os.getloadavg()],
        "python": platform.python_version(),
        "postgresql": pg,
        "postgis": postgis,
        "geos": geos,
        "packages": versions,
        "commit": commit + ("+dirty" if dirty else ""),
        "server": f"gunicorn -w {workers} (sync workers), app log level {log_level}, "
                  "no access log",
        "load_generator": "locust FastHttpUser, 1 process (gevent), closed loop, on the "
                          "same machine: it shares the cores with gunicorn and PostgreSQL",
        "database": "DATABASE_URL" if os.environ.get("DATABASE_URL") else
                    f"throwaway cluster {PG_DIR} (fsync on)",
    }


COLUMNS = [  # key, title, width, format
    ("label", "benchmark", 24, "{:<24}"),
    ("users", "users", 5, "{:>5}"),
    ("rps", "req/s", 8, "{:>8.1f}"),
    ("vs_healthz", "x healthz", 9, "{:>9.2f}"),
    ("p50_ms", "p50 ms", 7, "{:>7.2f}"),
    ("p95_ms", "p95 ms", 7, "{:>7.2f}"),
    ("p99_ms", "p99 ms", 7, "{:>7.2f}"),
    ("failures", "fail", 5, "{:>5}"),
    ("server_rss_peak_mib", "srv RSS MiB", 11, "{:>11.1f}"),
    ("loadgen_rss_peak_mib", "gen RSS MiB", 11, "{:>11.1f}"),
    ("server_cpu_pct", "srv CPU%", 8, "{:>8.0f}"),
    ("loadgen_cpu_pct", "gen CPU%", 8, "{:>8.0f}"),
    ("db_cpu_pct", "db CPU%", 7, "{:>7.0f}"),
    ("other_cpu_pct", "other CPU%", 10, "{:>10.0f}"),
]


def table(rows: list[dict]) -> str:
    """The summary: one line per measured row, in the order the benchmarks made them."""
    lines = [" ".join(title.ljust(w) if key == "label" else title.rjust(w)
                      for key, title, w, _ in COLUMNS)]
    for row in rows:
        lines.append(" ".join("-".rjust(w) if row.get(key) is None else fmt.format(row[key])
                              for key, _, w, fmt in COLUMNS))
    return "\n".join(lines)


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split("\n")[0])
    parser.add_argument("names", nargs="*", help="benchmarks to run (default: all)")
    parser.add_argument("--list", action="store_true", help="list the benchmarks and exit")
    parser.add_argument("--seconds", type=float, default=None, help="measured seconds (20)")
    parser.add_argument("--warmup", type=float, default=None, help="warm-up seconds (3)")
    parser.add_argument("--users", type=int, default=None, help="force this concurrency")
    return parser.parse_args(argv)


def main(argv: list[str]) -> int:
    args = parse(argv)
    names = available()
    if args.list:
        for name, doc in names.items():
            print(f"{name:<16} {doc}")
        return 0
    unknown = [n for n in args.names if n not in names]
    if unknown:
        print(f"bench: unknown benchmark(s) {', '.join(unknown)}; have: {', '.join(names)}",
              file=sys.stderr)
        return 2
    selected = [n for n in names if n in args.names] if args.names else list(names)

    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt))
    port = int(os.environ.get("BENCH_PGPORT", "54339"))
    workers = int(os.environ.get("BENCH_WORKERS", "2"))
    log_level = os.environ.get("BENCH_LOG_LEVEL", "WARNING")
    started = time.monotonic()
    ours = not os.environ.get("DATABASE_URL")  # a local cluster: stop it whatever happens
    flask = str(devenv.BIN / "flask")
    server = None
    ctx = None
    results: dict[str, dict] = {}
    failed: list[str] = []
    try:
        urls, ours = devenv.database(PG_DIR, port, "grid_bench", fresh=True, fast=False)
        env = devenv.child_env(urls)
        env["LOG_LEVEL"] = log_level
        env.pop("GUNICORN_CMD_ARGS", None)
        subprocess.run([flask, "bootstrap-db"], env=env, cwd=ROOT, check=True)
        subprocess.run([flask, "seed-demo"], env=env, cwd=ROOT, check=True)
        http_port = free_port()
        server = start_gunicorn(env, http_port, workers)
        base_url = f"http://127.0.0.1:{http_port}"
        ready = wait_ready(server, base_url)
        print(f"bench: server ready at {base_url} (PostGIS {ready.get('postgis')})", flush=True)
        db_pid = postmaster_pid() if ours else None
        load.set_target(base_url, server.pid, db_pid)
        machine = machine_info(urls, workers, log_level)
        ctx = Context(base_url=base_url, server_pid=server.pid, db_pid=db_pid, env=env,
                      urls=urls, root=ROOT, users=args.users)
        if args.seconds is not None:
            ctx.seconds = args.seconds
        if args.warmup is not None:
            ctx.warmup = args.warmup
        today = dt.date.today().isoformat()
        RESULTS.mkdir(parents=True, exist_ok=True)
        for name in selected:
            print(f"\n== {name}: {names[name]}", flush=True)
            t0 = time.monotonic()
            try:
                result = importlib.import_module(f"bench.benchmarks.{name}").run(ctx)
            except Exception:
                traceback.print_exc()
                failed.append(name)
                continue
            if server.poll() is not None:
                raise RuntimeError(f"gunicorn died during {name}; see {SERVER_LOG}")
            record = {
                "benchmark": name,
                "date": today,
                "finished_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                "duration_s": round(time.monotonic() - t0, 1),
                "command": "python -m bench.run " + " ".join(argv),
                "machine": machine,
                "baseline_healthz": ctx._baseline,
                **result,
            }
            # the time too: two runs of a day must not overwrite each other's figures
            stamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H%M")
            path = RESULTS / f"{name}-{stamp}.json"
            path.write_text(json.dumps(record, indent=2, ensure_ascii=False) + "\n")
            results[name] = record
            print(f"  -> {path.relative_to(ROOT)}", flush=True)
    except KeyboardInterrupt:
        print("\nbench: interrupted", file=sys.stderr)
        return 130
    except localdb.LocalDbError as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return exc.exit_code
    except (subprocess.CalledProcessError, RuntimeError) as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 1
    finally:
        if ctx is not None:
            ctx.close()
        stop_process(server)
        if ours:
            localdb.stop(ROOT / PG_DIR)

    rows = [row for rec in results.values() for row in rec.get("rows", [])]
    m = machine
    print(f"\n{m['nproc']} cores ({m['cpu_model']}), {m['memory_gib']} GiB, Python {m['python']}, "
          f"PostgreSQL {m['postgresql']}, PostGIS {m['postgis']}; {m['server']}; "
          f"load generator on the same cores. x healthz = req/s / /healthz req/s of this run.")
    print(table(rows))
    noisy = [r["label"] for r in rows if (r.get("other_cpu_pct") or 0) > NOISY_CPU_PCT]
    if noisy:
        print(f"bench: NOISY: other processes used > {NOISY_CPU_PCT}% CPU (of one core) "
              f"during {', '.join(noisy)}; absolute figures are low, compare ratios")
    print(f"bench: done in {time.monotonic() - started:.0f} s"
          + (f"; FAILED: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

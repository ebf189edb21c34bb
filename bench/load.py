"""Drive the server with HTTP load and measure it: `measure()`.

The load comes from locust (FastHttpUser, headless, through its library API) in a child
process (`bench/_loadgen.py`); this side feeds it the request, samples the memory of the
server (gunicorn master + workers) and of the generator, and times their CPU over the
measured window. Each locust user is a closed loop (no think time), so `users` is the number
of requests in flight.

The machine has 2 cores: the load generator, gunicorn and PostgreSQL share them, so the
figures are a floor for the server, and ratios taken in one run (see bench/README.md) are
what later benchmarks compare.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import threading
from collections.abc import Sequence
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent
SAMPLE_EVERY_S = 0.2

_target: dict = {"base_url": None, "server_pid": None, "db_pid": None}


def set_target(base_url: str, server_pid: int | None = None, db_pid: int | None = None) -> None:
    """The server `measure()` drives when not told otherwise (bench.run sets it); db_pid is
    the postmaster of a local cluster, whose CPU is then reported apart."""
    _target.update(base_url=base_url.rstrip("/"), server_pid=server_pid, db_pid=db_pid)


def measure(
    url_path: str | Sequence[str],
    *,
    seconds: float,
    users: int,
    headers: dict | None = None,
    method: str = "GET",
    body: object = None,
    warmup: float = 3.0,
    base_url: str | None = None,
    server_pid: int | None = None,
    db_pid: int | None = None,
) -> dict:
    """Load `url_path` with `users` concurrent closed-loop users: `warmup` seconds unmeasured,
    then `seconds` measured. `body`: dict/list (sent as JSON), str or bytes. `url_path` may
    be a list of paths (e.g. random points): each user cycles through it.

    Returns rps (successful responses per second), p50_ms/p95_ms/p99_ms/max_ms/mean_ms,
    requests, failures (non-2xx or transport errors) with the commonest errors, and
    server_rss_peak_mib (gunicorn master + workers, sampled every 0.2 s), loadgen_rss_peak_mib,
    and CPU over the measured window, 100 = one core: server_cpu_pct, loadgen_cpu_pct,
    db_cpu_pct (local cluster only), machine_cpu_pct (all processes) and other_cpu_pct (what
    is left: other processes on the machine, i.e. noise).
    """
    base_url = (base_url or _target["base_url"] or "").rstrip("/")
    if not base_url:
        raise ValueError("no server: pass base_url= or call bench.load.set_target() first")
    server_pid = server_pid if server_pid is not None else _target["server_pid"]
    db_pid = db_pid if db_pid is not None else _target["db_pid"]
    if users < 1 or seconds <= 0 or warmup < 0:
        raise ValueError("users >= 1, seconds > 0 and warmup >= 0, please")
    paths = [url_path] if isinstance(url_path, str) else list(url_path)
    if not paths:
        raise ValueError("no url_path")
    spec = {
        "base_url": base_url, "paths": paths, "method": method.upper(), "users": users,
        "seconds": seconds, "warmup": warmup, "headers": headers or {},
    }
    if isinstance(body, dict | list):
        spec["json"] = body
    elif isinstance(body, bytes):
        spec["data_b64"] = base64.b64encode(body).decode()
    elif body is not None:
        spec["data"] = str(body)

    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with tempfile.TemporaryFile("w+") as errfile:
        proc = subprocess.Popen(
            [sys.executable, "-m", "bench._loadgen"], cwd=ROOT, env=env, text=True,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=errfile,
        )
        sampler = _Sampler(server_pid, proc.pid, db_pid)
        watchdog = threading.Timer(warmup + seconds + 60, proc.kill)
        result = cpu0 = cpu1 = None
        try:
            sampler.start()
            watchdog.start()
            proc.stdin.write(json.dumps(spec))
            proc.stdin.close()
            for line in proc.stdout:
                line = line.strip()
                if line == "window-start":
                    cpu0 = sampler.cpu_snapshot()
                elif line == "window-end":
                    cpu1 = sampler.cpu_snapshot()
                elif line.startswith("{"):
                    result = json.loads(line)
            proc.wait(timeout=30)
        finally:
            watchdog.cancel()
            sampler.stop()
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        errfile.seek(0)
        stderr = errfile.read()
    if proc.returncode != 0 or result is None or cpu0 is None or cpu1 is None:
        tail = "\n".join(stderr.strip().splitlines()[-15:])
        raise RuntimeError(f"load generator failed (exit {proc.returncode}):\n{tail}")

    lat = result.pop("latency_ms")
    elapsed = result["seconds"]
    cpu = {k: 100 * (cpu1[k] - cpu0[k]) / elapsed for k in ("server", "db")}
    machine = _busy_pct(cpu0["machine"], cpu1["machine"]) * psutil.cpu_count()
    out = {
        "method": spec["method"], "path": paths[0], "paths": len(paths), "users": users,
        "warmup": warmup,
        **result,
        **{f"{k}_ms": v for k, v in lat.items() if k != "count"},
        "server_rss_peak_mib": sampler.server_peak / 2**20,
        "server_processes": sampler.server_procs,
        "loadgen_rss_sampled_peak_mib": sampler.loadgen_peak / 2**20,
        "server_cpu_pct": cpu["server"],
        "db_cpu_pct": cpu["db"] if db_pid else None,
        "machine_cpu_pct": machine,
        "other_cpu_pct": max(0.0, machine - cpu["server"] - cpu["db"]
                             - result["loadgen_cpu_pct"]),
        "loadgen_warnings": [ln for ln in stderr.splitlines() if "warn" in ln.lower()][:5],
    }
    return out


def _busy_pct(before, after) -> float:
    # guest time is already counted in user time on Linux
    def _total(t):
        return sum(t) - getattr(t, "guest", 0) - getattr(t, "guest_nice", 0)

    total = _total(after) - _total(before)
    idle = (after.idle + getattr(after, "iowait", 0)) - (before.idle + getattr(before, "iowait", 0))
    return 100 * (total - idle) / total if total > 0 else 0.0


def process_tree(pid: int | None) -> list[psutil.Process]:
    """A process and all its descendants (gunicorn: master and workers)."""
    if pid is None:
        return []
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def _cpu_seconds(pid: int | None) -> float:
    """user + system CPU seconds of a process tree, children that exited and were waited
    for included (postgres backends come and go with connections)."""
    total = 0.0
    for p in process_tree(pid):
        with contextlib.suppress(psutil.NoSuchProcess):
            t = p.cpu_times()
            total += t.user + t.system + t.children_user + t.children_system
    return total


class _Sampler(threading.Thread):
    """Peak RSS of the server tree and the load generator, every SAMPLE_EVERY_S."""

    def __init__(self, server_pid: int | None, loadgen_pid: int, db_pid: int | None) -> None:
        super().__init__(daemon=True)
        self.server_pid, self.loadgen_pid, self.db_pid = server_pid, loadgen_pid, db_pid
        self.server_peak = self.loadgen_peak = 0
        self.server_procs = 0
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.is_set():
            self.sample()
            self._halt.wait(SAMPLE_EVERY_S)

    def sample(self) -> None:
        procs = process_tree(self.server_pid)
        rss = 0
        for p in procs:
            with contextlib.suppress(psutil.NoSuchProcess):
                rss += p.memory_info().rss
        if rss > self.server_peak:
            self.server_peak, self.server_procs = rss, len(procs)
        with contextlib.suppress(psutil.NoSuchProcess):
            rss = psutil.Process(self.loadgen_pid).memory_info().rss
            self.loadgen_peak = max(self.loadgen_peak, rss)

    def cpu_snapshot(self) -> dict:
        return {"server": _cpu_seconds(self.server_pid), "db": _cpu_seconds(self.db_pid),
                "machine": psutil.cpu_times()}

    def stop(self) -> None:
        self._halt.set()
        if self.is_alive():
            self.join(timeout=2)
        self.sample()  # one last look, in case the run was shorter than a sample period


def sequential(
    paths: Sequence[str],
    *,
    seconds: float,
    headers: dict | None = None,
    warmup: float = 2.0,
    base_url: str | None = None,
) -> dict:
    """One client sending one GET at a time from this process, over http.client (a new
    connection per request: gunicorn's sync workers close it after each response): a
    one-user latency without locust's own time per request (~1 ms of the 1.6 ms /healthz
    takes at one user in `measure`), the HTTP counterpart of timing a statement over a
    bare psycopg2 connection. Paths are cycled. Returns p50_ms… (bench.stats.summary_ms),
    rps and failures (non-200 answers)."""
    import http.client
    import time
    import urllib.parse

    from bench.stats import summary_ms

    url = urllib.parse.urlsplit((base_url or _target["base_url"] or "").rstrip("/"))
    if not url.hostname:
        raise ValueError("no server: pass base_url= or call bench.load.set_target() first")
    latencies: list[float] = []
    failures = 0
    start = time.perf_counter()
    measured_from = start + warmup
    i = 0
    while (now := time.perf_counter()) < measured_from + seconds:
        path = paths[i % len(paths)]
        i += 1
        t0 = time.perf_counter()
        conn = http.client.HTTPConnection(url.hostname, url.port, timeout=60)
        try:
            conn.request("GET", path, headers=headers or {})
            response = conn.getresponse()
            response.read()
            ok = response.status == 200
        finally:
            conn.close()
        elapsed = (time.perf_counter() - t0) * 1000
        if now >= measured_from:
            if ok:
                latencies.append(elapsed)
            else:
                failures += 1
    return {**summary_ms(latencies), "rps": len(latencies) / seconds, "failures": failures}

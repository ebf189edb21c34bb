"""The load generator process behind `bench.load.measure` (not meant to be run by hand).

locust's library API (Environment + LocalRunner, FastHttpUser, gevent) in a process of its
own, so that gevent's monkey-patching stays out of the harness and the generator's memory and
CPU are measured apart from it. Reads one JSON spec on stdin; prints `window-start` when the
warm-up is over, `window-end` when the measured window closes, then one JSON line of results.

Latencies are recorded per request as floats (locust's own percentiles round to whole
milliseconds, too coarse for a sub-millisecond endpoint).
"""

from __future__ import annotations

import base64
import itertools
import json
import resource
import sys
import time
from array import array
from collections import Counter

import gevent
from locust import FastHttpUser, constant, task
from locust.env import Environment

from bench.stats import summary_ms


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main() -> int:
    spec = json.load(sys.stdin)
    method, users = spec["method"], int(spec["users"])
    paths = spec["paths"]  # one or more; each user walks the list from its own offset
    offsets = itertools.count()
    request_kw: dict = {"headers": spec.get("headers") or None, "name": paths[0]}
    if spec.get("json") is not None:
        request_kw["json"] = spec["json"]
    elif spec.get("data") is not None:
        request_kw["data"] = spec["data"]
    elif spec.get("data_b64") is not None:
        request_kw["data"] = base64.b64decode(spec["data_b64"])

    class Client(FastHttpUser):
        host = spec["base_url"]
        wait_time = constant(0)  # closed loop: each user sends its next request at once

        def on_start(self) -> None:
            self.path_index = next(offsets) % len(paths)

        @task
        def hit(self) -> None:
            path = paths[self.path_index]
            self.path_index = (self.path_index + 1) % len(paths)
            self.client.request(method, path, **request_kw)

    env = Environment(user_classes=[Client])
    latencies = array("d")
    errors: Counter[str] = Counter()
    state = {"on": False}

    def on_request(response_time, exception=None, response=None, **_kw) -> None:
        if not state["on"]:
            return
        if exception is None:
            latencies.append(response_time)
        else:
            errors[_error_key(exception, response)] += 1

    env.events.request.add_listener(on_request)
    runner = env.create_local_runner()
    runner.start(users, spawn_rate=users)
    gevent.sleep(float(spec["warmup"]))

    print("window-start", flush=True)
    cpu0 = _cpu_seconds()
    state["on"] = True
    t0 = time.perf_counter()
    gevent.sleep(float(spec["seconds"]))
    state["on"] = False
    elapsed = time.perf_counter() - t0
    cpu1 = _cpu_seconds()
    print("window-end", flush=True)
    runner.quit()

    failures = sum(errors.values())
    result = {
        "seconds": round(elapsed, 3),
        "requests": len(latencies) + failures,
        "ok": len(latencies),
        "failures": failures,
        "errors": dict(errors.most_common(5)),
        "rps": len(latencies) / elapsed,
        "latency_ms": summary_ms(latencies),
        "loadgen_cpu_pct": 100 * (cpu1 - cpu0) / elapsed,
        "loadgen_rss_peak_mib": _peak_rss_mib(),
    }
    print(json.dumps(result), flush=True)
    return 0


def _error_key(exception, response) -> str:
    """Group failures: status and the error body's message (no request ids), or the
    transport error."""
    status = getattr(response, "status_code", None)
    if not status:
        return repr(exception)[:200]
    try:
        text = response.text or ""
    except Exception:  # an undecodable body
        text = ""
    try:
        message = json.loads(text).get("message", "")
    except (ValueError, AttributeError):
        message = " ".join(text.split())[:120]
    return f"{status} {message}".strip()


def _peak_rss_mib() -> float:
    """VmHWM: this process's own peak RSS. (ru_maxrss would not do: Linux carries it over
    exec, so it would report the harness's size at fork time.)"""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


if __name__ == "__main__":
    sys.exit(main())

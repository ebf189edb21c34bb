"""`make run` keeps its processes running (scripts/supervise.py), with real child
processes: small Python scripts that exit, or are killed, as a crashed worker would."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

from scripts.supervise import Supervisor

ROOT = Path(__file__).resolve().parents[2]


def _script(tmp_path: Path, name: str, body: str) -> list[str]:
    """A child that records each start (its pid and time) in <name>.starts, then runs body."""
    path = tmp_path / f"{name}.py"
    path.write_text(textwrap.dedent(f"""\
        import os, sys, time
        with open({str(tmp_path / f"{name}.starts")!r}, "a") as f:
            f.write(f"{{os.getpid()}} {{time.monotonic()}}\\n")
    """) + textwrap.dedent(body))
    return [sys.executable, str(path)]


def _starts(tmp_path: Path, name: str) -> list[tuple[int, float]]:
    path = tmp_path / f"{name}.starts"
    if not path.exists():
        return []
    return [(int(pid), float(at)) for pid, at in
            (line.split() for line in path.read_text().splitlines())]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie (exited, not yet reaped by its parent) counts as gone
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().split(") ", 1)[1][0] != "Z"


def _wait_for(condition, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_a_child_that_dies_is_restarted_with_growing_delays(tmp_path):
    crashing = _script(tmp_path, "crashing", "sys.exit(3)\n")
    steady = _script(tmp_path, "steady", "time.sleep(120)\n")
    logged: list[str] = []
    supervisor = Supervisor({"worker": crashing, "gunicorn": steady}, backoff_base_s=0.1,
                            backoff_max_s=0.4, log=logged.append)
    runner = threading.Thread(target=supervisor.run, kwargs={"poll_s": 0.02})
    runner.start()
    try:
        _wait_for(lambda: len(_starts(tmp_path, "crashing")) >= 6)
    finally:
        supervisor.stop()
        runner.join(30)
    assert not runner.is_alive()
    times = [at for _, at in _starts(tmp_path, "crashing")]
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
    # 0.1, 0.2, 0.4, then capped at 0.4 (plus the child's start-up each time)
    assert gaps[0] >= 0.1 and gaps[1] >= 0.2 and all(g >= 0.4 for g in gaps[2:]), gaps
    assert gaps[3] < 0.4 + 2.0  # capped, not still doubling
    assert any("worker exited (exit 3)" in line and "restarting in 0.1 s" in line
               for line in logged), logged
    assert any("restarting in 0.4 s" in line for line in logged), logged
    # The other process was left alone while the worker crashed, and stopped at the end.
    (steady_pid, _), = _starts(tmp_path, "steady")
    assert not _alive(steady_pid)
    assert not any(_alive(pid) for pid, _ in _starts(tmp_path, "crashing"))


def test_a_killed_worker_is_replaced_and_only_sigterm_stops_everything(tmp_path):
    """As `make run` runs it: the supervisor in its own process, its children killed from
    outside (kill -9 of the worker, as the issue did), then SIGTERM to the supervisor."""
    worker = _script(tmp_path, "worker", "time.sleep(120)\n")
    web = _script(tmp_path, "web", "time.sleep(120)\n")
    main = tmp_path / "main.py"
    main.write_text(textwrap.dedent(f"""\
        import sys
        from scripts.supervise import Supervisor
        sys.exit(Supervisor({{"worker": {worker!r}, "gunicorn": {web!r}}},
                            backoff_base_s=0.1, stop_grace_s=5).run(poll_s=0.05))
    """))
    supervisor = subprocess.Popen([sys.executable, str(main)], cwd=ROOT,
                                  env={**os.environ, "PYTHONPATH": str(ROOT)},
                                  stderr=subprocess.PIPE, text=True)
    try:
        _wait_for(lambda: _starts(tmp_path, "worker") and _starts(tmp_path, "web"))
        (first, _), = _starts(tmp_path, "worker")
        os.kill(first, signal.SIGKILL)
        _wait_for(lambda: len(_starts(tmp_path, "worker")) == 2)
        assert supervisor.poll() is None  # the stack is still up
        (web_pid, _), = _starts(tmp_path, "web")
        assert _alive(web_pid)
        second = _starts(tmp_path, "worker")[1][0]
        assert _alive(second)

        supervisor.send_signal(signal.SIGTERM)
        assert supervisor.wait(timeout=30) == 0
        assert not _alive(second) and not _alive(web_pid)
        err = supervisor.stderr.read()
        assert "worker exited (signal SIGKILL)" in err and "worker restarted" in err, err
    finally:
        if supervisor.poll() is None:
            supervisor.kill()
            supervisor.wait()
        for pid, _ in _starts(tmp_path, "worker") + _starts(tmp_path, "web"):
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)

"""Keep the processes of `make run` running: one that exits is started again, after a delay
that doubles while it keeps failing (1 s, 2 s, 4 s… up to 30 s) and is back to 1 s once it
had run for a minute. Every exit and restart is logged. Only SIGINT (Ctrl-C) or SIGTERM to
the supervisor stops everything: children get SIGTERM, then SIGKILL after a grace period.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field


def log_stderr(message: str) -> None:
    print(f"make run: {message}", file=sys.stderr, flush=True)


@dataclass
class Child:
    name: str
    argv: list[str]
    process: subprocess.Popen | None = None
    started_at: float = 0.0
    failures: int = 0  # exits in a row that came before STABLE_AFTER_S
    restart_at: float | None = None
    starts: int = field(default=0)


class Supervisor:
    def __init__(self, commands: dict[str, list[str]], *, env: dict | None = None,
                 cwd: str | os.PathLike[str] | None = None, backoff_base_s: float = 1.0,
                 backoff_max_s: float = 30.0, stable_after_s: float = 60.0,
                 stop_grace_s: float = 15.0, log: Callable[[str], None] = log_stderr) -> None:
        self.children = [Child(name, argv) for name, argv in commands.items()]
        self.env, self.cwd, self.log = env, cwd, log
        self.backoff_base_s, self.backoff_max_s = backoff_base_s, backoff_max_s
        self.stable_after_s, self.stop_grace_s = stable_after_s, stop_grace_s
        self.stopping = threading.Event()

    def _start(self, child: Child) -> None:
        child.process = subprocess.Popen(child.argv, env=self.env, cwd=self.cwd)
        child.started_at = time.monotonic()
        child.restart_at = None
        child.starts += 1

    def delay(self, failures: int) -> float:
        """The wait before the restart that follows `failures` quick exits in a row."""
        return min(self.backoff_max_s, self.backoff_base_s * 2 ** max(0, failures - 1))

    def step(self) -> None:
        """Notice exits, schedule restarts, and start what is due."""
        now = time.monotonic()
        for child in self.children:
            process = child.process
            if process is not None and process.poll() is not None:
                ran = now - child.started_at
                child.failures = 1 if ran >= self.stable_after_s else child.failures + 1
                wait = self.delay(child.failures)
                child.process, child.restart_at = None, now + wait
                self.log(f"{child.name} exited ({_exit_text(process.returncode)}) after "
                         f"{ran:.1f} s; restarting in {wait:g} s")
            if (child.process is None and child.restart_at is not None
                    and now >= child.restart_at and not self.stopping.is_set()):
                self._start(child)
                self.log(f"{child.name} restarted (pid {child.process.pid})")

    def run(self, poll_s: float = 0.2) -> int:
        """Start every child and keep them running until stop() (or SIGINT/SIGTERM when
        called from the main thread); then stop them all. Returns 0."""
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                signal.signal(sig, lambda signum, frame: self.stopping.set())
        try:
            for child in self.children:
                if not self.stopping.is_set():
                    self._start(child)
            while not self.stopping.wait(poll_s):
                self.step()
        finally:
            self.stop_all()
        return 0

    def stop(self) -> None:
        self.stopping.set()

    def stop_all(self) -> None:
        running = [c.process for c in self.children
                   if c.process is not None and c.process.poll() is None]
        for process in running:
            process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + self.stop_grace_s
        for process in running:
            try:
                process.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _exit_text(code: int) -> str:
    if code < 0:
        try:
            return f"signal {signal.Signals(-code).name}"
        except ValueError:
            return f"signal {-code}"
    return f"exit {code}"

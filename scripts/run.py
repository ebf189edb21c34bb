"""`make run`: database, migrations, demo data once, then gunicorn and the worker.

Ctrl-C (or SIGTERM) stops gunicorn, the worker and the local cluster this started.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from scripts import devenv, localdb


def main() -> int:
    port = int(os.environ.get("PORT", "8000"))
    workers = os.environ.get("WEB_CONCURRENCY", "2")
    try:
        urls, ours = devenv.database(
            "var/postgres", int(os.environ.get("PGPORT", "54320")), "grid", False, False)
    except localdb.LocalDbError as exc:
        print(f"make run: {exc}", file=sys.stderr)
        return exc.exit_code
    env = devenv.child_env(urls)
    flask = str(devenv.BIN / "flask")
    procs: list[subprocess.Popen] = []
    try:
        subprocess.run([flask, "bootstrap-db"], env=env, cwd=devenv.ROOT, check=True)
        subprocess.run([flask, "seed-demo"], env=env, cwd=devenv.ROOT, check=True)
        # No gunicorn access log: the app writes one JSON line per request itself.
        procs.append(subprocess.Popen(
            [str(devenv.BIN / "gunicorn"), "-w", workers, "-b", f"127.0.0.1:{port}",
             "wsgi:app"], env=env, cwd=devenv.ROOT))
        procs.append(subprocess.Popen([flask, "worker"], env=env, cwd=devenv.ROOT))
        # Extra push senders: the outbox is shared through SKIP LOCKED and leases; the
        # other tasks (sweeps, reminders) stay in the one full worker.
        for _ in range(int(os.environ.get("NOTIFY_WORKERS", "1")) - 1):
            procs.append(subprocess.Popen([flask, "worker", "--task", "deliver_notifications"],
                                          env=env, cwd=devenv.ROOT))
        base = f"http://127.0.0.1:{port}"
        print(f"\n  API docs: {base}/api/docs   OpenAPI: {base}/api/openapi.json\n"
              f"  Ready:    {base}/readyz     Demo accounts: see README.md\n"
              "  Ctrl-C stops everything.\n", flush=True)
        stopping: list[int] = []
        # Ctrl-C reaches the whole process group; SIGTERM only us. Either way: stop cleanly.
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda signum, frame: stopping.append(signum))
        while not stopping and all(p.poll() is None for p in procs):
            time.sleep(0.5)
        if stopping:
            return 0
        failed = next(p for p in procs if p.returncode is not None)
        print(f"make run: {failed.args[0]} exited ({failed.returncode}); stopping",
              file=sys.stderr)
        return failed.returncode or 1
    except KeyboardInterrupt:  # Ctrl-C during set-up
        return 130
    except subprocess.CalledProcessError as exc:
        print(f"make run: {' '.join(exc.cmd[1:])} failed (exit {exc.returncode})",
              file=sys.stderr)
        return 1
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()
        if ours:
            localdb.stop(devenv.ROOT / "var/postgres")


if __name__ == "__main__":
    sys.exit(main())

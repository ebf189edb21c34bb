"""`make run`: database, migrations, demo data once, then gunicorn and the worker, kept
running by scripts/supervise.py (one that dies is restarted, with backoff, and logged).

Ctrl-C (or SIGTERM) stops gunicorn, the worker and the local cluster this started.
"""

from __future__ import annotations

import os
import subprocess
import sys

from scripts import devenv, localdb
from scripts.supervise import Supervisor


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
    try:
        subprocess.run([flask, "bootstrap-db"], env=env, cwd=devenv.ROOT, check=True)
        subprocess.run([flask, "seed-demo"], env=env, cwd=devenv.ROOT, check=True)
        # server/gunicorn_conf.py: its limits, and its own errors in the API's JSON shape.
        commands = {"gunicorn": [str(devenv.BIN / "gunicorn"), "-c", "server/gunicorn_conf.py",
                                 "-w", workers, "-b", f"127.0.0.1:{port}", "wsgi:app"],
                    "worker": [flask, "worker"]}
        # Extra push senders: the outbox is shared through SKIP LOCKED and leases; the
        # other tasks (sweeps, reminders) stay in the one full worker.
        for n in range(2, int(os.environ.get("NOTIFY_WORKERS", "1")) + 1):
            commands[f"sender {n}"] = [flask, "worker", "--task", "deliver_notifications"]
        base = f"http://127.0.0.1:{port}"
        print(f"\n  API docs: {base}/api/docs   OpenAPI: {base}/api/openapi.json\n"
              f"  Ready:    {base}/readyz     Demo accounts: see README.md\n"
              "  A process that dies is restarted; Ctrl-C stops everything.\n", flush=True)
        # Ctrl-C reaches the whole process group; SIGTERM only us. Either way the
        # supervisor stops its children and returns.
        return Supervisor(commands, env=env, cwd=devenv.ROOT).run()
    except KeyboardInterrupt:  # Ctrl-C during set-up
        return 130
    except subprocess.CalledProcessError as exc:
        print(f"make run: {' '.join(exc.cmd[1:])} failed (exit {exc.returncode})",
              file=sys.stderr)
        return 1
    finally:
        if ours:
            localdb.stop(devenv.ROOT / "var/postgres")


if __name__ == "__main__":
    sys.exit(main())

"""`make test`: a throwaway PostgreSQL + PostGIS cluster, migrated, then the whole suite.

Extra arguments go to pytest: `make test ARGS="-k auth -x"`.
"""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
import time

from scripts import devenv, localdb


def main(argv: list[str]) -> int:
    started = time.monotonic()
    port = int(os.environ.get("TEST_PGPORT", "54329"))
    # Another port gets its own directory, so two suites can run side by side.
    pg_dir = "var/test-postgres" if port == 54329 else f"var/test-postgres-{port}"
    # --fresh wipes the directory: a second suite on the same one must not kill the first.
    (devenv.ROOT / "var").mkdir(exist_ok=True)
    lock = open(devenv.ROOT / f"{pg_dir}.lock", "w")  # noqa: SIM115 - held for the whole run
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        print(f"make test: another test run is using {pg_dir}; wait for it, or run this one "
              "beside it with TEST_PGPORT=<another port>", file=sys.stderr)
        return 1
    devenv.ensure_browser()
    try:
        urls, ours = devenv.database(pg_dir, port, "grid_test", fresh=True, fast=True)
    except localdb.LocalDbError as exc:
        print(f"make test: {exc}", file=sys.stderr)
        return exc.exit_code
    try:
        cmd = [str(devenv.BIN / "python"), "-m", "pytest", *argv]
        code = subprocess.call(cmd, cwd=devenv.ROOT, env=devenv.child_env(urls))
    finally:
        if ours:
            localdb.stop(devenv.ROOT / pg_dir)
    print(f"make test: finished in {time.monotonic() - started:.0f} s (exit {code})")
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

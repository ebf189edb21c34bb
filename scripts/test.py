"""`make test`: a throwaway PostgreSQL + PostGIS cluster, migrated, then the whole suite.

Extra arguments go to pytest: `make test ARGS="-k auth -x"`.
"""

from __future__ import annotations

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

"""What `make run` and `make test` share: the database (local cluster or DATABASE_URL)
and the environment the app's processes get."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from scripts import localdb

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent  # the project's .venv/bin


def database(dir: str, port: int, db: str, fresh: bool, fast: bool) -> tuple[dict, bool]:
    """The three database URLs, and whether we started a local cluster for them.

    With DATABASE_URL set, that server is used as it is (production path): the migration
    URL defaults to it, and tests that need their own databases need ADMIN_DATABASE_URL.
    """
    if os.environ.get("DATABASE_URL"):
        url = os.environ["DATABASE_URL"]
        return {
            "DATABASE_URL": url,
            "MIGRATION_DATABASE_URL": os.environ.get("MIGRATION_DATABASE_URL") or url,
            "ADMIN_DATABASE_URL": os.environ.get("ADMIN_DATABASE_URL") or url,
        }, False
    localdb.ensure_packages()
    return localdb.start(ROOT / dir, port, db=db, fresh=fresh, fast=fast), True


def child_env(urls: dict) -> dict:
    env = {**os.environ, **urls, "FLASK_APP": "wsgi", "PYTHONPATH": str(ROOT)}
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    return env


BROWSERS = ("chromium", "chromium-browser", "google-chrome")


FONT = "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc"  # Chinese in the page's screenshot


def ensure_browser() -> None:
    """Chromium (and a small Chinese font) for the map page test
    (tests/grid/maps/test_map_page.py): installed with apt-get when root and missing;
    otherwise that one test is skipped, with a note here."""
    import shutil
    import subprocess

    if any(shutil.which(name) for name in BROWSERS) and os.path.exists(FONT):
        return
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        print("make test: Chromium is not installed, the map page test will be skipped "
              "(apt-get install chromium)", file=sys.stderr)
        return
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (["apt-get", "update", "-qq"],
                ["apt-get", "install", "-y", "-qq", "--no-install-recommends", "chromium",
                 "fonts-wqy-microhei"]):
        if subprocess.call(cmd, env=env, stdout=sys.stderr, stderr=sys.stderr) != 0:
            print(f"make test: `{' '.join(cmd)}` failed; the map page test will be skipped",
                  file=sys.stderr)
            return

"""The one clock: UTC instants for the database, local dates for people.

Grid work happens in Asia/Shanghai (DEFAULT_TIMEZONE): a tag that starts "today" or a
month of indicators is counted in that zone, not in the server's (often UTC)."""

from __future__ import annotations

from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

from flask import current_app


def now() -> datetime:
    return datetime.now(UTC)


def local_zone() -> ZoneInfo:
    return ZoneInfo(current_app.config["DEFAULT_TIMEZONE"])


def local_today() -> date:
    """Today where the register is kept (DEFAULT_TIMEZONE), not where the server runs.
    Read from now(), so that a test pinning now() pins the local day with it."""
    return now().astimezone(local_zone()).date()

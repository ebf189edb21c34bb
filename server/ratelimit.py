"""Fixed-window rate limits kept in PostgreSQL.

Counters live in the database (not in process memory) so that every gunicorn worker and
every app server sees the same count. Old windows are deleted by `flask sweep`.
"""

from __future__ import annotations

import time

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, Session, mapped_column

from server.db import Base
from server.errors import TooManyRequests


class RateLimitBucket(Base):
    __tablename__ = "rate_limit_buckets"

    key: Mapped[str] = mapped_column(sa.String(200), primary_key=True)
    window_start: Mapped[int] = mapped_column(sa.BigInteger, primary_key=True)  # epoch seconds
    hits: Mapped[int] = mapped_column(sa.Integer, nullable=False)


def _window(window_s: int, now: float | None = None) -> tuple[int, int]:
    now = time.time() if now is None else now
    start = int(now // window_s) * window_s
    return start, max(1, int(start + window_s - now))


def check(s: Session, key: str, limit: int, window_s: int, message: str) -> None:
    """Raise 429 if `key` has used up its window, without counting (no row lock taken)."""
    start, retry_after = _window(window_s)
    hits = s.scalar(
        sa.select(RateLimitBucket.hits).where(
            RateLimitBucket.key == key, RateLimitBucket.window_start == start
        )
    )
    if hits is not None and hits >= limit:
        raise TooManyRequests(message, retry_after=retry_after)


def hit(s: Session, key: str, limit: int, window_s: int, message: str) -> None:
    """Count one use of `key`; raise 429 (keeping the count) once the limit is passed."""
    start, retry_after = _window(window_s)
    stmt = sa.text(
        "INSERT INTO rate_limit_buckets (key, window_start, hits) VALUES (:k, :w, 1) "
        "ON CONFLICT (key, window_start) DO UPDATE SET hits = rate_limit_buckets.hits + 1 "
        "RETURNING hits"
    )
    hits = s.execute(stmt, {"k": key, "w": start}).scalar_one()
    if hits > limit:
        raise TooManyRequests(message, retry_after=retry_after)


def prune(s: Session, older_than_s: int = 86400) -> int:
    cutoff = int(time.time()) - older_than_s
    result = s.execute(sa.delete(RateLimitBucket).where(RateLimitBucket.window_start < cutoff))
    return result.rowcount

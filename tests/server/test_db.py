"""The connection pool: a connection PostgreSQL dropped while it sat idle in the pool is
replaced before use (no failed request), without a ping per checkout otherwise."""

from __future__ import annotations

import sqlalchemy as sa

from server import db


def _engine(urls) -> sa.Engine:
    engine = sa.create_engine(urls["DATABASE_URL"], pool_size=1, max_overflow=0)
    db._ping_when_idle(engine)
    return engine


def _count_pings(engine: sa.Engine, monkeypatch) -> list:
    pings: list = []
    ping = engine.dialect.do_ping

    def counted(dbapi_connection):
        pings.append(dbapi_connection)
        return ping(dbapi_connection)

    monkeypatch.setattr(engine.dialect, "do_ping", counted)
    return pings


def test_an_idle_connection_dropped_by_the_server_is_replaced(urls, monkeypatch):
    engine = _engine(urls)
    try:
        with engine.connect() as conn:
            first = conn.scalar(sa.text("SELECT pg_backend_pid()"))
        killer = sa.create_engine(urls["ADMIN_DATABASE_URL"], poolclass=sa.NullPool)
        with killer.connect() as conn:
            conn.scalar(sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": first})
        killer.dispose()
        monkeypatch.setattr(db, "PING_AFTER_IDLE_S", 0.0)
        pings = _count_pings(engine, monkeypatch)
        with engine.connect() as conn:
            assert conn.scalar(sa.text("SELECT pg_backend_pid()")) != first
        assert len(pings) == 1
    finally:
        engine.dispose()


def test_a_connection_in_steady_use_is_not_pinged(urls, monkeypatch):
    engine = _engine(urls)
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
        pings = _count_pings(engine, monkeypatch)
        for _ in range(3):
            with engine.connect() as conn:
                conn.execute(sa.text("SELECT 2"))
        assert pings == []
        monkeypatch.setattr(db, "PING_AFTER_IDLE_S", 0.0)
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 3"))
        assert len(pings) == 1
    finally:
        engine.dispose()

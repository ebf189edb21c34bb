"""The connection pool: a connection PostgreSQL dropped while it sat idle in the pool is
replaced before use (no failed request), without a ping per checkout otherwise. Prepared
statements (server.db.Prepared) and read-only views (server.db.read_only)."""

from __future__ import annotations

import uuid

import pytest
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


# --- prepared statements --------------------------------------------------------------------


def _prepared_here(conn: sa.Connection) -> int:
    return conn.scalar(sa.text("SELECT count(*) FROM pg_prepared_statements"))


def test_a_prepared_statement_is_prepared_once_per_connection_and_answers_as_the_query(urls):
    engine = _engine(urls)
    query = sa.select(sa.literal_column("'x'").op("||")(sa.bindparam("a", type_=sa.String))
                      .label("joined"), sa.bindparam("n", type_=sa.Integer) + 1)
    prepared = db.Prepared(query)
    try:
        with engine.connect() as conn:
            before = _prepared_here(conn)
            assert prepared.execute(conn, {"a": "y", "n": 1}).all() == [("xy", 2)]
            assert prepared.execute(conn, {"a": "z", "n": 41}).one().joined == "xz"
            assert _prepared_here(conn) == before + 1
        with engine.connect() as conn:  # the same connection from the pool: still there
            assert prepared.execute(conn, {"a": "w", "n": 0}).all() == [("xw", 1)]
            assert _prepared_here(conn) == before + 1
            conn.invalidate()  # a new connection (after a restart) prepares it again
        with engine.connect() as conn:
            assert prepared.execute(conn, {"a": "v", "n": 0}).all() == [("xv", 1)]
    finally:
        engine.dispose()


def test_values_written_into_a_prepared_statement_are_literals_and_a_percent_is_no_placeholder(
        urls):
    engine = _engine(urls)
    query = sa.select((sa.literal(41) + sa.bindparam("n", type_=sa.Integer)).label("sum"),
                      sa.literal_column("'ab%'").like(sa.bindparam("p", type_=sa.String) + "%"),
                      sa.literal_column("'b'").in_(["a", "b"]))
    prepared = db.Prepared(query)
    assert "41" in prepared.prepare_sql and "(INTEGER, VARCHAR)" in prepared.prepare_sql
    try:
        with engine.connect() as conn:
            assert prepared.execute(conn, {"n": 1, "p": "ab"}).one() == (42, True, True)
            assert prepared.execute(conn, {"n": 0, "p": "x"}).one() == (41, False, True)
    finally:
        engine.dispose()


def test_a_prepared_statements_settings_end_with_it(urls):
    engine = _engine(urls)
    setting = "SELECT current_setting('max_parallel_workers_per_gather')"
    prepared = db.Prepared(sa.select(sa.text(setting[7:])),
                           settings="SET LOCAL max_parallel_workers_per_gather = 0")
    try:
        with engine.connect() as conn:
            default = conn.scalar(sa.text(setting))
            assert default != "0"
            conn.rollback()
            conn.execution_options(isolation_level="AUTOCOMMIT")
            assert prepared.execute(conn, {}).scalar() == "0"
            assert conn.scalar(sa.text(setting)) == default  # one implicit transaction
        with engine.connect() as conn:  # in a transaction: until it ends
            assert prepared.execute(conn, {}).scalar() == "0"
            assert conn.scalar(sa.text(setting)) == "0"
            conn.rollback()
            assert conn.scalar(sa.text(setting)) == default
    finally:
        engine.dispose()


def test_a_connection_holds_a_bounded_number_of_prepared_statements(urls, monkeypatch):
    monkeypatch.setattr(db.Prepared, "MAX_PER_CONNECTION", 3)
    engine = _engine(urls)
    statements = [db.Prepared(sa.select(sa.literal(i) + sa.bindparam("n", type_=sa.Integer)))
                  for i in range(5)]
    try:
        with engine.connect() as conn:
            before = _prepared_here(conn)
            for i, prepared in enumerate(statements):
                assert prepared.execute(conn, {"n": 1}).scalar() == i + 1
            assert _prepared_here(conn) == before + 3  # the two least recently used went
            assert statements[0].execute(conn, {"n": 2}).scalar() == 2  # prepared again
            assert _prepared_here(conn) == before + 3
    finally:
        engine.dispose()


# --- read-only views --------------------------------------------------------------------------


def _xids(s) -> tuple:
    xid = "SELECT pg_current_xact_id()::text"
    return s.scalar(sa.text(xid)), s.scalar(sa.text(xid))


def test_a_read_only_view_runs_without_a_transaction_and_the_next_request_is_transactional(
        app, own_session, db_session):
    @db.read_only
    def view():
        return _xids(db.session())

    with app.test_request_context("/"):
        first, second = view()
    assert first != second  # each statement its own transaction: no BEGIN ... ROLLBACK
    db.session.remove()
    with db.unit_of_work() as s:  # back on the app's own pool: transactional
        first, second = _xids(s)
    assert first == second


def _bucket_count(s, key: str) -> int:
    return s.scalar(sa.text("SELECT count(*) FROM rate_limit_buckets WHERE key = :k"),
                    {"k": key})


def test_a_write_in_a_read_only_view_fails_and_the_next_request_writes_as_usual(
        app, own_session, db_session):
    from server import ratelimit

    key = f"test-read-only-{uuid.uuid4()}"

    @db.read_only
    def stray_write():
        ratelimit.hit(db.session(), key, 10, 60, "slow down")

    with app.test_request_context("/"), \
            pytest.raises(sa.exc.InternalError, match="read-only transaction"):
        stray_write()
    db.session.remove()
    try:
        with db.unit_of_work() as s:  # the next request: a write commits as usual
            assert s.scalar(sa.text("SHOW default_transaction_read_only")) == "off"
            assert _bucket_count(s, key) == 0  # the refused write left nothing behind
            ratelimit.hit(s, key, 10, 60, "slow down")
        db.session.remove()
        with db.unit_of_work() as s:
            assert _bucket_count(s, key) == 1
    finally:
        with db.unit_of_work() as s:
            s.execute(sa.text("DELETE FROM rate_limit_buckets WHERE key = :k"), {"k": key})
        db.session.remove()


def test_a_read_only_view_cannot_open_a_unit_of_work(app, own_session, db_session):
    @db.read_only
    def view():
        with db.unit_of_work():
            pass

    with app.test_request_context("/"), pytest.raises(RuntimeError, match="read_only"):
        view()
    db.session.remove()
    with db.unit_of_work():  # only inside the view
        pass

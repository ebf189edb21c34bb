"""Engine, session, declarative Base and the mixins every table uses.

One scoped session per thread (a gunicorn sync worker serves one request at a time), removed
when the app context ends. Views open a unit of work around one service call; tests bind the
session to an outer transaction with savepoints and roll it back after each test.
"""

from __future__ import annotations

import functools
import hashlib
import math
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

import psycopg2
import sqlalchemy as sa
from geoalchemy2 import Geometry
from sqlalchemy.dialects.postgresql import psycopg2 as pg_psycopg2
from sqlalchemy.dialects.postgresql.base import ischema_names as pg_ischema_names
from sqlalchemy.orm import (
    DeclarativeBase,
    Mapped,
    Session,
    declared_attr,
    mapped_column,
    scoped_session,
    sessionmaker,
)

from server.errors import DomainError

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = sa.MetaData(naming_convention=NAMING_CONVENTION)


# expire_on_commit=False: responses are serialized after the unit of work commits.
SessionFactory = sessionmaker(expire_on_commit=False)
session: scoped_session[Session] = scoped_session(SessionFactory)
_engines: dict[str, sa.Engine] = {}
_read_only_twins: dict[sa.Engine, sa.Engine] = {}

# A connection back from the pool after this long idle is pinged first.
PING_AFTER_IDLE_S = 10.0

# JIT off for the app's sessions: PostGIS's function costs and OR-ed subplans push plain
# requests past jit_above_cost, and compiling cost up to seconds for statements that run in
# milliseconds (7 s for a 250 ms grid profile at 1M persons, 170 ms for a 30 ms tile;
# bench/README.md "maps"). No request here runs long enough to win it back.
_SESSION_OPTIONS = "-c jit=off"


def engine_for(url: str, pool_size: int = 5) -> sa.Engine:
    """One engine per URL per process (create_app may run several times in tests)."""
    if url not in _engines:
        engine = sa.create_engine(url, pool_size=pool_size, max_overflow=pool_size,
                                  connect_args={"options": _SESSION_OPTIONS})
        _ping_when_idle(engine)
        _engines[url] = engine
    return _engines[url]


def read_only_twin(engine: sa.Engine) -> sa.Engine:
    """The engine @read_only views use instead of `engine`: the same database through a pool
    of its own, whose connections run in autocommit and refuse writes (PostgreSQL's
    default_transaction_read_only, set when they connect). Setting either per request
    instead (psycopg2's `readonly` in autocommit is a SET, and another to undo it when the
    connection goes back) would cost the two round trips autocommit saves; a pool of its own
    also means no read-only or autocommit connection ever reaches a writing request. The
    price: a worker may hold a connection in each pool."""
    twin = _read_only_twins.get(engine)
    if twin is None:
        twin = sa.create_engine(
            engine.url, pool_size=engine.pool.size(), max_overflow=engine.pool.size(),
            isolation_level="AUTOCOMMIT",
            connect_args={"options": f"{_SESSION_OPTIONS} -c default_transaction_read_only=on"})
        _ping_when_idle(twin)
        twin = _read_only_twins.setdefault(engine, twin)
    return twin


def dispose_twin(engine: sa.Engine) -> None:
    """Close the read-only pool of `engine`, if one was made (tests with engines of their
    own)."""
    twin = _read_only_twins.pop(engine, None)
    if twin is not None:
        twin.dispose()


def _ping_when_idle(engine: sa.Engine) -> None:
    """pool_pre_ping, but only for a connection that sat idle in the pool: pinging on every
    checkout cost a round trip per request. A connection in steady use that PostgreSQL
    dropped meanwhile (a restart) fails one request, and SQLAlchemy then invalidates the
    whole pool; an idle one (the usual victim of restarts and firewalls) is replaced
    before use."""

    @sa.event.listens_for(engine, "checkin")
    def _idle_from(dbapi_connection: Any, record: Any) -> None:
        record.info["idle_since"] = time.monotonic()

    @sa.event.listens_for(engine, "checkout")
    def _ping(dbapi_connection: Any, record: Any, proxy: Any) -> None:
        if time.monotonic() - record.info.get("idle_since", math.inf) < PING_AFTER_IDLE_S:
            return
        try:
            engine.dialect.do_ping(dbapi_connection)
        except Exception as exc:  # any failure: the pool retries with a new connection
            raise sa.exc.DisconnectionError() from exc


def unavailable(exc: BaseException) -> bool:
    """The database cannot be reached (refused, down, dropped the connection, pool
    exhausted): a failure of the moment, not of the request, that the one error handler
    answers 503 with Retry-After. psycopg2 raises OperationalError for each of these (also
    for a cancelled statement or a deadlock, which are worth a retry as well); SQLAlchemy
    wraps it, or marks another DBAPI error with connection_invalidated."""
    if isinstance(exc, (sa.exc.OperationalError, sa.exc.TimeoutError,
                        sa.exc.DisconnectionError, psycopg2.OperationalError)):
        return True
    return isinstance(exc, sa.exc.DBAPIError) and bool(exc.connection_invalidated)


def init_db(app: Any) -> sa.Engine:
    engine = engine_for(app.config["DATABASE_URL"], app.config["DB_POOL_SIZE"])
    SessionFactory.configure(bind=engine)
    app.extensions["db_engine"] = engine
    app.teardown_appcontext(lambda exc: session.remove())
    return engine


@contextmanager
def unit_of_work() -> Iterator[Session]:
    """One transaction around one service call: commit on success, roll back on failure.

    A DomainError with keep_changes (failed-login counters, rate-limit hits) commits what
    was recorded before it was raised, then propagates.
    """
    s = session()
    if s.info.get("read_only"):
        raise RuntimeError("unit_of_work() in a view marked read_only: it would not be atomic")
    s.info["unit_of_work"] = True  # see commit_read_audit
    try:
        yield s
        s.commit()
    except DomainError as exc:
        if exc.keep_changes:
            s.commit()
        else:
            s.rollback()
        raise
    except BaseException:
        s.rollback()
        raise
    finally:
        s.info.pop("unit_of_work", None)


def commit_read_audit(s: Session) -> None:
    """Commit what a plain read recorded (an audit row of a read that must not be lost with
    the read's rolled-back session); inside a unit of work it commits with the work."""
    if not s.info.get("unit_of_work") and not s.info.get("read_only"):
        s.commit()


def read_only(view: Callable) -> Callable:
    """For views that only read (put it above @login_required, which reads the actor):
    their statements run outside a transaction block (autocommit), which spares the BEGIN
    and ROLLBACK round trips psycopg2 wraps around them, on a connection that refuses
    writes (`read_only_twin`): a stray write fails with an error instead of committing on
    its own. The statements of one request see no common snapshot. unit_of_work() refuses
    to run inside such a view, so a view that writes anything (an audit row, a rate-limit
    hit) cannot be one. A session already in a transaction (the tests' shared one) is left
    as it is."""

    @functools.wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        s = session()
        bind = s.bind
        if not s.in_transaction() and isinstance(bind, sa.Engine):
            s.bind = read_only_twin(bind)
        s.info["read_only"] = True
        try:
            return view(*args, **kwargs)
        finally:
            s.info.pop("read_only", None)
            s.bind = bind  # its connection goes back to the twin's pool when the session ends

    return wrapper


class Prepared:
    """A hot statement PREPAREd once per database connection, then EXECUTEd by name.

    psycopg2 sends every statement as text, so PostgreSQL parses and plans it on every
    call: for the one-row lookups of every request (the actor, locate) planning cost more
    than running (0.35 ms vs 0.1-0.2 ms), and a vector tile's statement spends 1-2 ms in
    the planner. A prepared statement is planned for its first executions, then PostgreSQL
    keeps a generic plan when that is no worse. Which names a connection holds is kept in
    the pool's record of it (cleared when it reconnects); past MAX_PER_CONNECTION the least
    recently used is DEALLOCATEd, so that statements built per request shape (tiles) cannot
    grow a server process without bound.

    `settings`: SET LOCAL statements sent in the same round trip, before the EXECUTE; in
    autocommit (`read_only` views) the two form one implicit transaction, so the settings
    end with it.

    Parameters go to psycopg2 as they are, without SQLAlchemy's type processing: pass
    values psycopg2 adapts itself (a UUID as str). Rows hold psycopg2's values (no ORM
    entities, no SQLAlchemy type conversion: a UUID comes back as text). Not for servers
    behind a transaction-pooling proxy, which moves sessions between clients (PgBouncer's
    prepared statement support covers the protocol's, not SQL PREPARE).
    """

    MAX_PER_CONNECTION = 256
    _dialect = pg_psycopg2.dialect(paramstyle="numeric_dollar")

    def __init__(self, stmt: sa.Executable, settings: str = "") -> None:
        # Only bind parameters without a value ($1, $2… in order of appearance) are the
        # statement's parameters. Values written into it (a zoom, a list of states, an
        # extent) become literals, so that a generic plan still sees them: it can then use
        # a partial index whose predicate they match, and fold constant expressions.
        names: list[str] = []
        types: list[str] = []

        def parameter(element: Any) -> Any:
            if not (isinstance(element, sa.BindParameter) and element.required):
                return None
            if element.key not in names:
                names.append(element.key)
                types.append("unknown" if isinstance(element.type, sa.types.NullType)
                             else self._dialect.type_compiler_instance.process(element.type))
            return sa.literal_column(f"${names.index(element.key) + 1}", type_=element.type)

        stmt = sa.sql.visitors.replacement_traverse(stmt, {}, parameter)
        self.sql = str(stmt.compile(dialect=self._dialect,
                                    compile_kwargs={"literal_binds": True}))
        signature = f"({', '.join(types)})" if types else ""
        self.name = "p_" + hashlib.sha1(f"{signature}|{self.sql}".encode()).hexdigest()[:16]
        self.prepare_sql = f"PREPARE {self.name}{signature} AS {self.sql}"
        if "%" in settings:  # psycopg2 reads the EXECUTE string's % as placeholders
            raise ValueError("a % in a prepared statement's settings")
        arguments = f"({', '.join(f'%({k})s' for k in names)})" if names else ""
        self.execute_sql = ((settings.rstrip("; ") + "; " if settings else "")
                            + f"EXECUTE {self.name}{arguments}")

    def execute(self, conn: sa.Connection, params: dict[str, Any]) -> sa.CursorResult:
        held: dict[str, None] = conn.connection.info.setdefault("prepared", {})
        if self.name in held:
            held[self.name] = held.pop(self.name)  # most recently used last
        else:
            if len(held) >= self.MAX_PER_CONNECTION:
                oldest = next(iter(held))
                conn.exec_driver_sql(f"DEALLOCATE {oldest}")
                del held[oldest]
            # no_parameters: the statement's own % (LIKE 'x%') is not a placeholder
            conn.exec_driver_sql(self.prepare_sql, execution_options={"no_parameters": True})
            held[self.name] = None
        return conn.exec_driver_sql(self.execute_sql, params)


class PageParams:
    """The part of flask-smorest's PaginationParameters a service needs (for type hints)."""

    page: int
    page_size: int
    item_count: int | None


def paginate(s: Session, stmt: sa.Select, page: Any, count: sa.Select | None = None) -> list:
    """The one pager: count over a subquery, then fetch one page of `stmt`.

    `page` is flask-smorest's PaginationParameters; setting item_count makes
    @blp.paginate() emit the X-Pagination header. `count`: a statement giving the number
    of rows of `stmt` more cheaply than counting over it (a module that knows its indexes).
    """
    if count is None:
        count = sa.select(sa.func.count()).select_from(stmt.order_by(None).subquery())
    total = s.scalar(count)
    page.item_count = total
    offset = (page.page - 1) * page.page_size
    if offset >= total:
        return []  # past the end (and no OFFSET beyond bigint for absurd page numbers)
    result = s.execute(stmt.limit(page.page_size).offset(offset))
    # One entity (or one column) gives models (values); several give rows.
    return list(result.scalars()) if len(stmt.column_descriptions) == 1 else list(result)


def utcnow() -> datetime:
    from datetime import UTC

    return datetime.now(UTC)


class XID8(sa.types.UserDefinedType):
    """PostgreSQL's 64-bit transaction id: which transaction last wrote a row. Sync cursors
    compare it with a snapshot (pg_visible_in_snapshot) so that no commit is ever skipped."""

    cache_ok = True

    def get_col_spec(self, **kw: Any) -> str:
        return "xid8"


# Reflection (alembic's drift check) should know the type too.
pg_ischema_names["xid8"] = XID8


class TimestampMixin:
    created_at: Mapped[datetime] = mapped_column(
        sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
    )
    updated_at: Mapped[datetime] = mapped_column(
        sa.DateTime(timezone=True), server_default=sa.func.now(), onupdate=sa.func.now(),
        nullable=False,
    )


class VersionedMixin:
    """Optimistic concurrency: every UPDATE checks and bumps `version`.

    Services compare the client's version first (412 with the current record); the
    version_id_col guard catches two writers that both passed that check.
    """

    version: Mapped[int] = mapped_column(sa.Integer, nullable=False)

    @declared_attr.directive
    def __mapper_args__(cls) -> dict:
        return {"version_id_col": cls.__table__.c.version}


class GpsTaggedMixin:
    """Where and how a record was collected (ARCHITECTURE §3 "GPS").

    `location` is WGS-84 (EPSG:4326); the raw numbers and crs the phone sent, its accuracy,
    when and on which device are kept beside it. Set it from a geo.fields.GpsFix with
    `set_gps`, never column by column.
    """

    location = mapped_column(Geometry("POINT", srid=4326, spatial_index=True))
    gps_crs: Mapped[str | None] = mapped_column(sa.String(8))
    gps_raw_lon: Mapped[float | None] = mapped_column(sa.Float)
    gps_raw_lat: Mapped[float | None] = mapped_column(sa.Float)
    gps_accuracy_m: Mapped[float | None] = mapped_column(sa.Float)
    gps_captured_at: Mapped[datetime | None] = mapped_column(sa.DateTime(timezone=True))
    gps_device_id: Mapped[str | None] = mapped_column(sa.String(128))

    def set_gps(self, fix: Any) -> None:
        from geoalchemy2.shape import from_shape
        from shapely.geometry import Point

        self.location = from_shape(Point(fix.lon, fix.lat), srid=4326)  # never SRID -1
        self.gps_crs = fix.crs
        self.gps_raw_lon, self.gps_raw_lat = fix.raw_lon, fix.raw_lat
        self.gps_accuracy_m = fix.accuracy_m
        self.gps_captured_at = fix.captured_at
        self.gps_device_id = fix.device_id

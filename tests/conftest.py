"""Test fixtures: a real PostgreSQL + PostGIS (started by `make test`), migrated once;
each test runs inside a transaction that is rolled back, with the app's own session
joined to it through savepoints (so services may commit)."""

from __future__ import annotations

import os
import threading
import uuid
from collections.abc import Iterator
from datetime import date
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa
from werkzeug.serving import make_server

from notifications.models import Notification
from server import clock, db
from server.app import create_app
from server.auth import service as auth_service
from server.auth.models import User
from tests import pii_scan

# Fixtures shared by the test packages (one place; packages do not import each other's conftest).
pytest_plugins = ["tests.fixtures.areas", "tests.fixtures.http", "tests.fixtures.cases",
                  "tests.fixtures.browser"]

TEST_PASSWORD = "Grid-test-2026"
SHANGHAI = ZoneInfo("Asia/Shanghai")


def today_local() -> date:
    """Today where the server counts dates (DEFAULT_TIMEZONE, Asia/Shanghai), not in UTC:
    the server's own clock.local_today(), so that a test pinning clock.now pins it too."""
    return clock.local_today()


def inbox(db_session, user, kind: str | None = None) -> list[Notification]:
    """A user's notifications (of one kind, if given), oldest first."""
    stmt = sa.select(Notification).where(Notification.user_id == user.id)
    if kind:
        stmt = stmt.where(Notification.kind == kind)
    return list(db_session.scalars(stmt.order_by(Notification.id)))


def _urls() -> dict[str, str]:
    try:
        return {k: os.environ[k] for k in
                ("DATABASE_URL", "MIGRATION_DATABASE_URL", "ADMIN_DATABASE_URL")}
    except KeyError as exc:  # pragma: no cover - guidance for running pytest by hand
        raise pytest.UsageError(
            f"{exc} is not set: run `make test`, or start a cluster with "
            "`python -m scripts.localdb start --dir var/test-postgres --port 54329 "
            "--db grid_test --fresh --fast` and export the three URLs it prints."
        ) from None


TEST_CONFIG = {
    # Cheap hashing: argon2id at production cost would make the suite crawl.
    "ARGON2_TIME_COST": 1,
    "ARGON2_MEMORY_KIB": 1024,
    "ARGON2_PARALLELISM": 1,
    "LOG_LEVEL": "WARNING",
    # The suite's transactions are rolled back, so no change would ever notify the actor
    # cache: it is tested on committed rows in tests/server/test_actor_cache.py.
    "ACTOR_CACHE_SECONDS": 0,
    "STORAGE_DIR": None,  # set per session below
}


@pytest.fixture(scope="session")
def urls() -> dict[str, str]:
    return _urls()


@pytest.fixture(scope="session")
def app(urls, tmp_path_factory):
    from server.cli import bootstrap_db

    config = {**TEST_CONFIG, **urls, "STORAGE_DIR": str(tmp_path_factory.mktemp("storage"))}
    application = create_app(config)
    pii_scan.install(application)  # the personal-data scan (tests/pii_scan.py)
    with application.app_context():
        bootstrap_db(application)
    return application


@pytest.fixture(autouse=True)
def personal_data_scan(app) -> Iterator[pii_scan.Scan]:
    """Fails the test if a response to an actor without person:read_pii carried an ID
    number or a phone in clear, or a mask that narrows one to fewer than 10,000 candidates
    (tests/pii_scan.py), naming the endpoint."""
    scan = pii_scan.SCAN
    before = len(scan.violations)
    yield scan
    leaks = scan.violations[before:]
    del scan.violations[before:]
    assert not leaks, "personal data leaked:\n" + "\n".join(leaks)


def pytest_terminal_summary(terminalreporter) -> None:
    scan = pii_scan.SCAN
    if scan.seen:
        terminalreporter.write_line(
            f"personal-data scan: {scan.seen} responses ({scan.exports} exports) to actors "
            "without person:read_pii scanned")


@pytest.fixture(autouse=True)
def db_session(app) -> Iterator[sa.orm.Session]:
    """Bind the app's session to a connection whose outer transaction is rolled back."""
    engine = app.extensions["db_engine"]
    connection = engine.connect()
    outer = connection.begin()
    db.SessionFactory.configure(bind=connection, join_transaction_mode="create_savepoint")
    from grid.calendar.service import clear_cache

    clear_cache()  # calendars of a rolled-back test must not be remembered
    ctx = app.app_context()
    ctx.push()
    try:
        yield db.session()
    finally:
        db.session.remove()
        ctx.pop()
        outer.rollback()
        connection.close()
        db.SessionFactory.configure(bind=engine, join_transaction_mode="conservative_savepoint")


@pytest.fixture
def engine(urls) -> Iterator[sa.Engine]:
    """Connections of their own, outside the test's rolled-back transaction: for tests of
    real concurrency over committed rows (which clean up after themselves)."""
    engine = sa.create_engine(urls["DATABASE_URL"], poolclass=sa.pool.NullPool)
    yield engine
    engine.dispose()


@pytest.fixture
def own_session(app, urls):
    """The app's session on an engine of its own with one pooled connection (outside the
    test's shared transaction, as in production): sees only committed rows."""
    engine = sa.create_engine(urls["DATABASE_URL"], pool_size=1, max_overflow=0)
    before = dict(db.SessionFactory.kw)  # the test's shared connection (db_session)
    db.session.remove()
    db.SessionFactory.configure(bind=engine)
    try:
        yield engine
    finally:
        db.session.remove()
        db.SessionFactory.configure(**before)
        db.dispose_twin(engine)
        engine.dispose()


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def make_user(db_session):
    """Create an account with roles: make_user("grid_worker", username="w1")."""

    def _make(*roles: str, username: str | None = None, phone: str | None = None,
              password: str = TEST_PASSWORD, display_name: str = "测试用户") -> User:
        if username is None and phone is None:
            username = f"u{uuid.uuid4().hex[:10]}"
        user = auth_service._new_user(db_session, username, display_name, phone, password,
                                      list(roles))
        # Releases the savepoint only: a later request that fails and rolls back its own
        # unit of work must not take the user with it.
        db_session.commit()
        return user

    return _make


@pytest.fixture
def login(client):
    """Log in through the API; returns the token response body."""

    def _login(login_name: str, password: str = TEST_PASSWORD) -> dict:
        response = client.post("/auth/login", json={"login": login_name, "password": password})
        assert response.status_code == 200, response.get_json()
        return response.get_json()

    return _login


@pytest.fixture
def auth_headers(make_user, login):
    """Headers of a freshly created, logged-in user with the given roles."""

    def _headers(*roles: str, user: User | None = None) -> dict:
        user = user or make_user(*roles)
        tokens = login(user.username or "")
        return {"Authorization": f"Bearer {tokens['access_token']}"}

    return _headers


def assert_error_shape(response, status: int) -> dict:
    """Every failure has the one error shape."""
    assert response.status_code == status, (response.status_code, response.get_data(True))
    assert response.mimetype == "application/json"
    body = response.get_json()
    assert body["code"] == status
    assert isinstance(body["status"], str) and body["status"]
    assert "message" in body
    return body


@pytest.fixture
def base_url(app) -> Iterator[str]:
    """The app on a real HTTP server (127.0.0.1, a free port) for clients that speak HTTP
    themselves (generated OpenAPI clients, PyPI GeoReport clients). One request at a time:
    the test waits for each answer, so the test's shared, rolled-back connection is used by
    one thread at a time."""
    server = make_server("127.0.0.1", 0, app, threaded=False)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(timeout=10)
        server.server_close()

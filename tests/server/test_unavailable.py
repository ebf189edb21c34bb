"""While PostgreSQL cannot be reached, requests answer 503 with Retry-After in the one error
shape (and /readyz 503), then recover by themselves. The database really goes away: the app
talks to it through a TCP relay this test closes (connections cut, then refused)."""

from __future__ import annotations

import contextlib
import socket
import threading
import uuid
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from flask_jwt_extended import create_access_token

from server import db
from tests.conftest import TEST_CONFIG, assert_error_shape


class Relay:
    """127.0.0.1:<port> → the test database. `cut()` drops every open connection and stops
    listening (new connections are refused); `restore()` listens on the same port again."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self.sockets: list[socket.socket] = []
        self.lock = threading.Lock()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self._serve(self.listener)

    def _serve(self, listener: socket.socket) -> None:
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # closed by cut()
            server = socket.create_connection(self.upstream)
            with self.lock:
                self.sockets += [client, server]
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        for sock in (source, sink):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def cut(self) -> None:
        # shutdown first: close() alone leaves a thread blocked in accept() listening
        with contextlib.suppress(OSError):
            self.listener.shutdown(socket.SHUT_RDWR)
        self.listener.close()
        with self.lock:
            for sock in self.sockets:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()
            self.sockets.clear()

    def restore(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", self.port))
        self._serve(self.listener)


@pytest.fixture
def relayed_app(urls, db_session, tmp_path) -> Iterator[tuple]:
    """An app whose DATABASE_URL goes through a Relay (its own pool, as in production)."""
    from server.app import create_app

    real = sa.engine.make_url(urls["DATABASE_URL"])
    relay = Relay((real.host or "127.0.0.1", real.port or 5432))
    url = real.set(port=relay.port).render_as_string(hide_password=False)
    bind = db_session.get_bind()
    application = create_app({**TEST_CONFIG, **urls, "DATABASE_URL": url,
                              "STORAGE_DIR": str(tmp_path), "LOG_LEVEL": "CRITICAL"})
    try:
        yield application, relay
    finally:
        db.session.remove()
        db.SessionFactory.configure(bind=bind, join_transaction_mode="create_savepoint")
        engine = db._engines.pop(url)
        db.dispose_twin(engine)
        engine.dispose()
        relay.cut()


def test_database_down_is_a_503_with_retry_after_then_recovers(relayed_app):
    application, relay = relayed_app
    client = application.test_client()
    with application.test_request_context():
        token = create_access_token(identity="1", additional_claims={"sid": str(uuid.uuid4())})
    me = {"Authorization": f"Bearer {token}"}

    def assert_up() -> None:
        assert client.get("/readyz").status_code == 200
        assert client.get("/tiles/areas/0/0/0.mvt").status_code == 200
        assert_error_shape(client.get("/me", headers=me), 401)  # no such session: a real answer

    def assert_down() -> None:
        for response in (client.get("/tiles/areas/0/0/0.mvt"), client.get("/me", headers=me),
                         client.post("/auth/login", json={"login": "x", "password": "y"})):
            body = assert_error_shape(response, 503)
            assert int(response.headers["Retry-After"]) > 0
            assert body["request_id"] == response.headers["X-Request-ID"]
            assert "psycopg2" not in response.get_data(as_text=True)
        ready = client.get("/readyz")
        assert ready.status_code == 503 and ready.get_json()["status"] == "unavailable"

    assert_up()
    relay.cut()  # pooled connections die under the app, then new ones are refused
    assert_down()
    assert_down()
    relay.restore()
    assert_up()  # nobody restarted anything

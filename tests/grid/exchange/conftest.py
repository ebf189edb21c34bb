"""Fixtures of the exchange tests: a `system` API client that signs its feed batches, a real
local HTTP receiver (a thread with http.server) that records what it is sent and answers
with the statuses it is told, system and hotline API clients, and a subscription helper."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from grid.exchange import delivery
from notifications.worker import DeliverySettings
from server import clock
from server.apiclients import sign
from tests.fixtures.users import make_user  # noqa: F401 - fixture


def verify(secret: str, headers: dict, body: bytes) -> bool:
    """The README's verification snippet, as a receiver runs it."""
    timestamp = headers["Webhook-Timestamp"]
    expected = hmac.new(secret.encode(), f"{timestamp}.".encode() + body,
                        hashlib.sha256).hexdigest()
    given = headers["Webhook-Signature"].removeprefix("v1=")
    return hmac.compare_digest(expected, given)


@dataclass
class Received:
    path: str
    headers: dict
    body: bytes

    @property
    def event(self) -> dict:
        return json.loads(self.body)


@dataclass
class Receiver:
    """What the receiver got, and what it answers next: (status, headers) per request,
    200 once the script is empty."""

    url: str
    received: list[Received] = field(default_factory=list)
    script: deque = field(default_factory=deque)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def answer(self, *statuses: int | tuple[int, dict]) -> None:
        for status in statuses:
            self.script.append(status if isinstance(status, tuple) else (status, {}))

    def types(self) -> list[str]:
        return [r.event["type"] for r in self.received]


@pytest.fixture
def receiver():
    state: dict = {}

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 - http.server's name
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            rec = state["receiver"]
            with rec.lock:
                rec.received.append(Received(self.path, dict(self.headers), body))
                status, headers = rec.script.popleft() if rec.script else (200, {})
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    rec = Receiver(f"http://127.0.0.1:{server.server_address[1]}/hook")
    state["receiver"] = rec
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield rec
    server.shutdown()
    server.server_close()


@pytest.fixture
def allow_local(app, monkeypatch):
    monkeypatch.setitem(app.config, "WEBHOOK_ALLOWED_HOSTS", "127.0.0.1")


SETTINGS = DeliverySettings(batch_size=50, lease_s=60, max_attempts=3, backoff_base_s=10,
                            backoff_max_s=60, budget_s=5)


@pytest.fixture
def sender():
    sender = delivery.HttpSender(concurrency=4, timeout_s=5)
    yield sender
    sender.close()


@pytest.fixture
def run_worker(db_session, sender):
    """Run the delivery worker once; `later` minutes ahead (past any backoff)."""
    def _run(later: float = 0, settings: DeliverySettings = SETTINGS) -> dict:
        return delivery.deliver(db_session, sender, settings,
                                clock.now() + timedelta(minutes=later))
    return _run


@pytest.fixture
def admin(api):
    return api("admin")


@pytest.fixture
def new_client(admin):
    def _new(kind: str = "system", name: str = "城管局业务系统") -> dict:
        return admin.ok(admin.post("/api-clients", {"name": name, "kind": kind}), 201)
    return _new


@pytest.fixture
def subscribe(admin, new_client, receiver, allow_local):
    """subscribe(["case.reported"], area_id=…) → the new subscription (with its secret)."""
    def _subscribe(types: list[str], client: dict | None = None, status: int = 201,
                   **fields) -> dict:
        client = client or new_client()
        body = {"client_id": client["id"], "url": receiver.url, "event_types": types,
                **fields}
        return admin.ok(admin.post("/webhooks/subscriptions", body), status)
    return _subscribe


class System:
    """Another government system (1+N) calling us with its key."""

    def __init__(self, client, key: dict) -> None:
        self.client, self.key_id, self.secret = client, key["key_id"], key["secret"]
        self.id, self.name = key["id"], key["name"]

    def send(self, kind: str, rows: list[dict], *, secret: str | None = None):
        body = json.dumps({"kind": kind, "rows": rows}, ensure_ascii=False).encode()
        ts = int(time.time())
        headers = {"X-Api-Key": self.key_id, "X-Timestamp": str(ts),
                   "X-Signature": sign(secret or self.secret, ts, body),
                   "Content-Type": "application/json"}
        return self.client.post("/feeds/batches", data=body, headers=headers)

    def ok(self, kind: str, rows: list[dict]) -> dict:
        response = self.send(kind, rows)
        assert response.status_code == 200, response.get_json()
        return response.get_json()


@pytest.fixture
def new_system(api, client):
    admin = api("admin")

    def _new(name: str = "市公安人口库") -> System:
        body = admin.ok(admin.post("/api-clients", {"name": name, "kind": "system"}), 201)
        return System(client, body)
    return _new


@pytest.fixture
def system(new_system) -> System:
    return new_system()

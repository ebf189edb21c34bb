"""Exchange fixtures (feeds part): a `system` API client that signs its batches. The area
tree, members and the Api client come from tests/fixtures."""

from __future__ import annotations

import json
import time

import pytest

from server.apiclients import sign
from tests.fixtures.users import make_user  # noqa: F401 - fixture


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

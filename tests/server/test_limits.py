"""The server's own limits answer in the one error shape: JSON nested too deeply (400, on
every JSON operation), URLs too long (414), headers too large (431) — from the app, and
from gunicorn in front of it."""

from __future__ import annotations

import http.client
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from server.limits import MAX_JSON_DEPTH, MAX_URL_BYTES, json_too_deep
from tests.conftest import assert_error_shape

ROOT = Path(__file__).resolve().parents[2]


def _nested(depth: int, kind: str = "list") -> str:
    if kind == "list":
        return "[" * depth + "1" + "]" * depth
    return '{"a":' * depth + "1" + "}" * depth


@pytest.mark.parametrize("kind", ["list", "dict"])
@pytest.mark.parametrize("depth", [MAX_JSON_DEPTH + 1, 100_000])
def test_deeply_nested_json_is_a_400_not_a_500(client, auth_headers, kind, depth):
    headers = {**auth_headers("admin"), "Content-Type": "application/json"}
    for path, method in (("/auth/login", "post"), ("/cases", "post"), ("/sync/push", "post"),
                         ("/users/1", "patch")):
        response = getattr(client, method)(path, data=_nested(depth, kind), headers=headers)
        body = assert_error_shape(response, 400)
        assert body["message"] == f"JSON nested too deeply (more than {MAX_JSON_DEPTH} levels)"
    # As a value inside an otherwise fine body too.
    inner = json.dumps({"login": "x", "password": "y"})[:-1] + ', "extra": ' + _nested(
        depth, kind) + "}"
    assert_error_shape(client.post("/auth/login", data=inner,
                                   content_type="application/json"), 400)


def test_every_json_operation_bounds_the_depth(app, client, auth_headers):
    """Not endpoint by endpoint: every route that takes a body answers 400 before its
    view runs (so a route added tomorrow is covered)."""
    headers = {**auth_headers("admin"), "Content-Type": "application/json"}
    body = _nested(5000)
    checked = 0
    for rule in app.url_map.iter_rules():
        for method in sorted(rule.methods & {"POST", "PUT", "PATCH"}):
            path = rule.rule
            for arg in rule.arguments:
                path = path.replace(f"<int:{arg}>", "1").replace(f"<{arg}>", "x").replace(
                    f"<path:{arg}>", "x")
            response = client.open(path, method=method, data=body, headers=headers)
            assert response.status_code == 400, (method, path, response.get_data(True))
            checked += 1
    assert checked > 30


def _depth(value) -> int:
    if isinstance(value, dict):
        return 1 + max(map(_depth, value.values()), default=0)
    if isinstance(value, list):
        return 1 + max(map(_depth, value), default=0)
    return 0


# Strings made of what could fool a scan: brackets, quotes, backslashes.
_tricky = st.text(alphabet='[]{}"\\ a', max_size=6)
_json = st.recursive(st.none() | st.integers() | _tricky,
                     lambda inner: st.lists(inner, max_size=3)
                     | st.dictionaries(_tricky, inner, max_size=3), max_leaves=40)


@given(_json, st.integers(min_value=0, max_value=6))
def test_json_depth_is_measured_outside_strings(value, limit):
    text = json.dumps(value).encode()
    assert json_too_deep(text, limit) is (_depth(value) > limit), text


def test_json_that_is_deep_but_within_the_limit_still_reaches_the_view(client):
    # Strings full of brackets do not count; a body at the limit is judged by its schema.
    body = {"login": "[[[[{{{{" * 50, "password": "]]]]" * 50, "extra": json.loads(
        _nested(MAX_JSON_DEPTH - 1))}
    response = client.post("/auth/login", json=body)
    errors = assert_error_shape(response, 422)["errors"]
    assert "extra" in errors["json"]


def test_a_url_over_the_limit_is_a_json_414(client):
    response = client.get("/cases?area_id=" + "1," * 4500)
    body = assert_error_shape(response, 414)
    assert str(MAX_URL_BYTES) in body["message"]
    assert body["request_id"] == response.headers["X-Request-ID"]
    assert client.get("/healthz?x=" + "a" * (MAX_URL_BYTES - 20)).status_code == 200


def test_headers_over_the_limit_are_a_json_431(client):
    assert_error_shape(client.get("/healthz", headers={"X-Big": "a" * 9000}), 431)
    many = {f"X-Many-{i}": "1" for i in range(120)}
    assert_error_shape(client.get("/healthz", headers=many), 431)
    assert client.get("/healthz", headers={"X-Big": "a" * 4000}).status_code == 200


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def gunicorn_server(urls, tmp_path):
    """The app under gunicorn with the configuration `make run` uses."""
    port = _free_port()
    env = {**os.environ, **urls, "STORAGE_DIR": str(tmp_path), "LOG_LEVEL": "WARNING",
           "MAX_CONTENT_LENGTH": "4096"}
    process = subprocess.Popen(
        [str(Path(sys.executable).parent / "gunicorn"), "-c", "server/gunicorn_conf.py",
         "-w", "1", "-b", f"127.0.0.1:{port}", "wsgi:app"],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(300):
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
            except OSError:
                if process.poll() is not None:
                    raise AssertionError("gunicorn exited at start") from None
                time.sleep(0.1)
        yield port
    finally:
        process.terminate()
        process.wait(timeout=30)


def _get(port: int, path: str, method: str = "GET", body: bytes | None = None,
         headers: dict | None = None) -> tuple[int, str, dict]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        return response.status, response.getheader("Content-Type"), json.loads(response.read())
    finally:
        conn.close()


def test_long_urls_under_gunicorn_are_json(gunicorn_server):
    status, ctype, body = _get(gunicorn_server, "/healthz")
    assert status == 200 and body == {"status": "ok"}
    # Past the app's limit, within gunicorn's: the app's 414.
    status, ctype, body = _get(gunicorn_server, "/healthz?x=" + "a" * 8100)
    assert (status, ctype, body["code"]) == (414, "application/json", 414)
    assert body["request_id"]
    # Past gunicorn's own request-line limit: gunicorn answers, in the same shape.
    status, ctype, body = _get(gunicorn_server, "/healthz?x=" + "a" * 20000)
    assert (status, ctype) == (414, "application/json")
    assert body["code"] == 414 and body["status"] == "Request URI Too Long" and body["message"]
    # A header line over gunicorn's field limit: gunicorn's 431, as JSON.
    status, ctype, body = _get(gunicorn_server, "/healthz", headers={"X-Big": "a" * 9000})
    assert (status, ctype, body["code"]) == (431, "application/json", 431)
    # A body over MAX_CONTENT_LENGTH: the app's 413.
    status, ctype, body = _get(gunicorn_server, "/auth/login", "POST", b"{}" * 3000,
                               {"Content-Type": "application/json"})
    assert (status, ctype, body["code"]) == (413, "application/json", 413)

"""One JSON error shape for every failure, with the headers a client needs to recover."""

from __future__ import annotations

import logging
import time
import uuid
from datetime import timedelta
from types import SimpleNamespace

import pytest
from flask_jwt_extended import create_access_token

from server import db, ratelimit
from tests.conftest import TEST_CONFIG, TEST_PASSWORD, assert_error_shape


def assert_no_internals(response) -> None:
    text = response.get_data(as_text=True)
    for leak in ("Traceback", "RuntimeError", 'File "', "<html", "<!doctype", "sqlalchemy"):
        assert leak.lower() not in text.lower(), text


def test_401_without_a_token_says_how_to_authenticate(client):
    response = client.get("/me")
    body = assert_error_shape(response, 401)
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert body["request_id"] == response.headers["X-Request-ID"]
    assert "msg" not in body  # flask-jwt-extended's own shape does not leak through


@pytest.mark.parametrize("header", [
    "Bearer not-a-jwt",
    "Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl",  # bad signature
    "Basic dXNlcjpwYXNz",
    "Bearer",
])
def test_401_for_malformed_tokens(client, header):
    response = client.get("/me", headers={"Authorization": header})
    assert_error_shape(response, 401)
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert_no_internals(response)


def test_401_for_an_expired_token(app, client, make_user):
    user = make_user("resident")
    with app.test_request_context():
        token = create_access_token(identity=str(user.id), expires_delta=timedelta(seconds=-5),
                                    additional_claims={"sid": str(uuid.uuid4())})
    response = client.get("/me", headers={"Authorization": f"Bearer {token}"})
    body = assert_error_shape(response, 401)
    assert "expired" in body["message"]
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_401_for_a_token_of_an_ended_session_and_a_failed_login(client, make_user, login):
    make_user("resident", username="ended")
    tokens = login("ended")
    headers = {"Authorization": f"Bearer {tokens['access_token']}"}
    assert client.post("/auth/logout", headers=headers).status_code == 204
    response = client.get("/me", headers=headers)
    assert_error_shape(response, 401)
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    failed = client.post("/auth/login", json={"login": "ended", "password": "Wrong-pass-1"})
    assert_error_shape(failed, 401)
    assert failed.headers["WWW-Authenticate"].startswith("Bearer")


def test_a_token_for_a_session_that_never_existed_is_401(app, client, make_user):
    user = make_user("admin")
    with app.test_request_context():
        forged_sid = create_access_token(identity=str(user.id),
                                         additional_claims={"sid": str(uuid.uuid4())})
        no_sid = create_access_token(identity=str(user.id))
        bad_sid = create_access_token(identity=str(user.id), additional_claims={"sid": "x"})
        bad_sub = create_access_token(identity="admin", additional_claims={"sid": "x"})
    for token in (forged_sid, no_sid, bad_sid, bad_sub):
        response = client.get("/users", headers={"Authorization": f"Bearer {token}"})
        assert_error_shape(response, 401)


def test_403_names_the_missing_permission(client, auth_headers):
    response = client.get("/users", headers=auth_headers("grid_worker"))
    body = assert_error_shape(response, 403)
    assert body["required"] == "user:manage"


def test_404_for_an_unknown_url_is_json_not_html(client):
    response = client.get("/no/such/thing", headers={"Accept": "text/html"})
    body = assert_error_shape(response, 404)
    assert body["status"] == "Not Found"
    assert_no_internals(response)
    assert_error_shape(client.get("/users/not-a-number"), 404)


def test_405_carries_allow(client):
    response = client.delete("/auth/login")
    assert_error_shape(response, 405)
    allowed = {m.strip() for m in response.headers["Allow"].split(",")}
    assert "POST" in allowed and "DELETE" not in allowed
    assert_no_internals(response)


def test_413_for_a_body_that_is_too_big(app, client, monkeypatch):
    monkeypatch.setitem(app.config, "MAX_CONTENT_LENGTH", 1024)
    response = client.post("/auth/login", json={"login": "x" * 5000, "password": "y"})
    assert_error_shape(response, 413)
    assert_no_internals(response)


def test_400_for_a_body_that_is_not_json(client):
    response = client.post("/auth/login", data="{not json", content_type="application/json")
    assert_error_shape(response, 400)
    assert_no_internals(response)


def test_422_names_the_fields(client):
    response = client.post("/auth/login", json={"login": "", "extra": 1})
    body = assert_error_shape(response, 422)
    fields = body["errors"]["json"]
    assert set(fields) == {"login", "password", "extra"}
    assert all(isinstance(messages, list) and messages for messages in fields.values())
    wrong_type = client.post("/auth/login", json=["login", "password"])
    assert_error_shape(wrong_type, 422)


def test_429_carries_a_numeric_retry_after(app, client, make_user, monkeypatch):
    monkeypatch.setitem(app.config, "LOGIN_LIMIT_PER_IP", 1)
    make_user("resident", username="hasty")
    client.post("/auth/login", json={"login": "hasty", "password": TEST_PASSWORD})
    response = client.post("/auth/login", json={"login": "hasty", "password": TEST_PASSWORD})
    assert_error_shape(response, 429)
    assert response.headers["Retry-After"] == str(app.config["LOGIN_LIMIT_WINDOW_S"] - 100)


@pytest.fixture(autouse=True)
def steady_clock(monkeypatch):
    """Rate limits count in fixed windows: pin their clock 100 s into an hour, so that a
    test's requests never straddle a window boundary (and Retry-After is predictable)."""
    now = (int(time.time()) // 3600) * 3600 + 100
    monkeypatch.setattr(ratelimit, "time", SimpleNamespace(time=lambda: now))
    return now


@pytest.fixture
def crashing_app(urls, db_session, tmp_path):
    """A second app on the same database whose extra route raises."""
    from server.app import create_app

    bind = db_session.get_bind()
    application = create_app({**TEST_CONFIG, **urls, "STORAGE_DIR": str(tmp_path)})

    @application.route("/boom")
    def boom():
        raise RuntimeError("secret internals: password=hunter2")

    # create_app rebinds the global session factory to the engine: put the test's
    # rolled-back connection back, so nothing this test does escapes.
    db.SessionFactory.configure(bind=bind, join_transaction_mode="create_savepoint")
    return application


def test_500_has_the_shape_and_no_stack_trace(crashing_app, caplog):
    with caplog.at_level(logging.ERROR, logger="server.api"):
        response = crashing_app.test_client().get("/boom")
    body = assert_error_shape(response, 500)
    assert body["request_id"] == response.headers["X-Request-ID"]
    assert body["message"] == "Internal server error"
    assert_no_internals(response)
    assert "hunter2" not in response.get_data(as_text=True)
    # …but the log has what an engineer needs, under the same request id.
    [record] = [r for r in caplog.records if r.name == "server.api"]
    assert record.exc_info and record.exc_info[0] is RuntimeError
    assert record.request_id == body["request_id"]

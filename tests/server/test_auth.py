"""Accounts and tokens through the HTTP API: login, refresh rotation and reuse detection,
logout, lockout, rate limits, disabling, password change, self-registration, role checks,
versions and masking."""

from __future__ import annotations

import json
import logging
import time
from datetime import timedelta
from types import SimpleNamespace

import pytest

from server import ratelimit
from tests.conftest import TEST_PASSWORD, assert_error_shape

NEW_PASSWORD = "Another-pass-2027"


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def post_login(client, login_name: str, password: str = TEST_PASSWORD, ip: str | None = None):
    environ = {"REMOTE_ADDR": ip} if ip else {}
    return client.post("/auth/login", json={"login": login_name, "password": password},
                       environ_base=environ)


def assert_retry_after(response) -> int:
    value = response.headers.get("Retry-After")
    assert value is not None and value.isdigit(), response.headers
    assert int(value) >= 1
    return int(value)


@pytest.fixture(autouse=True)
def steady_clock(monkeypatch):
    """Rate limits count in fixed windows: pin their clock 100 s into an hour, so that a
    test's requests never straddle a window boundary (and Retry-After is predictable)."""
    now = (int(time.time()) // 3600) * 3600 + 100
    monkeypatch.setattr(ratelimit, "time", SimpleNamespace(time=lambda: now))
    return now


@pytest.fixture
def make_user(make_user, db_session):
    """conftest's make_user only flushes, so a later request whose unit of work rolls back
    would take the new account with it (tests share the app's session). Committing here
    releases just the test's savepoint: the outer transaction is still rolled back."""

    def _make(*roles, **kwargs):
        user = make_user(*roles, **kwargs)
        db_session.commit()
        return user

    return _make


@pytest.fixture
def admin_headers(auth_headers):
    return auth_headers("admin")


def user_version(client, headers, user_id: int) -> int:
    response = client.get(f"/users/{user_id}", headers=headers)
    assert response.status_code == 200, response.get_json()
    return response.get_json()["version"]


# --- login --------------------------------------------------------------------------------


def test_login_by_username_returns_a_working_token_pair(client, make_user):
    user = make_user("grid_worker", username="worker01")
    response = post_login(client, "worker01")
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 15 * 60
    assert body["refresh_token"] and body["access_token"]
    assert body["user"]["id"] == user.id
    assert body["user"]["roles"] == ["grid_worker"]
    assert "password" not in body["user"]
    me = client.get("/me", headers=bearer(body["access_token"]))
    assert me.status_code == 200
    assert me.get_json()["username"] == "worker01"


def test_login_name_is_case_insensitive_and_trimmed(client, make_user):
    make_user("resident", username="mixed.case")
    assert post_login(client, "  Mixed.Case ").status_code == 200


def test_login_by_phone_number(client, make_user):
    user = make_user("resident", phone="13812345678")
    response = post_login(client, "13812345678")
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["user"]["id"] == user.id
    assert response.get_json()["user"]["phone"] == "138****5678"


def test_wrong_password_and_unknown_account_get_the_same_401(client, make_user):
    make_user("resident", username="someone")
    wrong = assert_error_shape(post_login(client, "someone", "Wrong-pass-123"), 401)
    unknown = assert_error_shape(post_login(client, "nobody-here"), 401)
    assert wrong["message"] == unknown["message"]
    assert "access_token" not in wrong


def test_login_with_a_missing_field_is_422_naming_it(client):
    body = assert_error_shape(client.post("/auth/login", json={"login": "x"}), 422)
    assert "password" in body["errors"]["json"]


# --- refresh rotation and reuse detection --------------------------------------------------


def test_refresh_rotates_and_reuse_revokes_the_whole_session(client, make_user, login):
    make_user("grid_worker", username="rotator")
    first = login("rotator")

    rotated = client.post("/auth/refresh", json={"refresh_token": first["refresh_token"]})
    assert rotated.status_code == 200, rotated.get_json()
    second = rotated.get_json()
    assert second["refresh_token"] != first["refresh_token"]
    assert client.get("/me", headers=bearer(second["access_token"])).status_code == 200

    # The new refresh token works once too.
    third = client.post("/auth/refresh", json={"refresh_token": second["refresh_token"]})
    assert third.status_code == 200
    newest = third.get_json()

    # The first refresh token comes back: it leaked. The whole family dies.
    reused = client.post("/auth/refresh", json={"refresh_token": first["refresh_token"]})
    assert_error_shape(reused, 401)
    assert_error_shape(client.get("/me", headers=bearer(newest["access_token"])), 401)
    assert_error_shape(
        client.post("/auth/refresh", json={"refresh_token": newest["refresh_token"]}), 401
    )


def test_reuse_revokes_only_that_session(client, make_user, login):
    make_user("grid_worker", username="twophones")
    phone_a, phone_b = login("twophones"), login("twophones")
    client.post("/auth/refresh", json={"refresh_token": phone_a["refresh_token"]})
    client.post("/auth/refresh", json={"refresh_token": phone_a["refresh_token"]})
    assert client.get("/me", headers=bearer(phone_b["access_token"])).status_code == 200


@pytest.fixture
def pinned_clock(monkeypatch):
    """server.clock.now() pinned (a minute ago, so that no token is ever dated in the
    future); `pinned_clock.advance(seconds)` moves it on."""
    from datetime import UTC, datetime

    from server import clock

    state = SimpleNamespace(now=datetime.now(UTC) - timedelta(minutes=1))
    state.advance = lambda seconds: setattr(state, "now", state.now + timedelta(seconds=seconds))
    monkeypatch.setattr(clock, "now", lambda: state.now)
    return state


def test_a_retried_refresh_within_the_grace_window_keeps_the_phone_logged_in(
        app, client, make_user, login, pinned_clock):
    assert app.config["REFRESH_REUSE_GRACE_S"] == 30
    make_user("grid_worker", username="flaky")
    first = login("flaky")
    answer = client.post("/auth/refresh", json={"refresh_token": first["refresh_token"]})
    assert answer.status_code == 200  # …and the answer is lost on the way to the phone

    pinned_clock.advance(29)
    retried = client.post("/auth/refresh", json={"refresh_token": first["refresh_token"]})
    assert retried.status_code == 200, retried.get_json()
    retry = retried.get_json()
    # The same successor, not a second live branch of the family.
    assert retry["refresh_token"] == answer.get_json()["refresh_token"]
    assert client.get("/me", headers=bearer(retry["access_token"])).status_code == 200
    assert client.get("/me", headers=bearer(answer.get_json()["access_token"])).status_code == 200

    # The successor rotates once, as every refresh token does.
    onwards = client.post("/auth/refresh", json={"refresh_token": retry["refresh_token"]})
    assert onwards.status_code == 200
    newest = onwards.get_json()
    # Once its successor was used, the first token coming back is reuse, even in the window.
    assert_error_shape(client.post("/auth/refresh",
                                   json={"refresh_token": first["refresh_token"]}), 401)
    assert_error_shape(client.get("/me", headers=bearer(newest["access_token"])), 401)


def test_reuse_after_the_grace_window_still_revokes_the_whole_family(
        client, make_user, login, pinned_clock):
    make_user("grid_worker", username="lateretry")
    first = login("lateretry")
    answer = client.post("/auth/refresh", json={"refresh_token": first["refresh_token"]})
    assert answer.status_code == 200
    successor = answer.get_json()

    pinned_clock.advance(31)
    body = assert_error_shape(client.post("/auth/refresh",
                                          json={"refresh_token": first["refresh_token"]}), 401)
    assert "reused" in body["message"]
    # …including the pair just issued.
    assert_error_shape(client.get("/me", headers=bearer(successor["access_token"])), 401)
    assert_error_shape(client.post(
        "/auth/refresh", json={"refresh_token": successor["refresh_token"]}), 401)


def test_the_grace_window_is_configurable(app, client, make_user, login, pinned_clock,
                                          monkeypatch):
    monkeypatch.setitem(app.config, "REFRESH_REUSE_GRACE_S", 0)  # 0: no grace at all
    make_user("grid_worker", username="strict")
    first = login("strict")
    assert client.post("/auth/refresh",
                       json={"refresh_token": first["refresh_token"]}).status_code == 200
    assert_error_shape(client.post("/auth/refresh",
                                   json={"refresh_token": first["refresh_token"]}), 401)


def test_an_access_token_is_not_a_refresh_token(client, make_user, login):
    make_user("resident", username="confused")
    tokens = login("confused")
    assert_error_shape(
        client.post("/auth/refresh", json={"refresh_token": tokens["access_token"]}), 401
    )
    assert_error_shape(client.post("/auth/refresh", json={"refresh_token": "garbage"}), 401)
    # …nor a refresh token an access token.
    assert_error_shape(client.get("/me", headers=bearer(tokens["refresh_token"])), 401)


# --- logout -------------------------------------------------------------------------------


def test_logout_ends_the_access_and_the_refresh_token(client, make_user, login):
    make_user("grid_worker", username="leaver")
    tokens = login("leaver")
    other_device = login("leaver")
    # used once before: a token already verified (and remembered) must end just the same
    assert client.get("/me", headers=bearer(tokens["access_token"])).status_code == 200
    response = client.post("/auth/logout", headers=bearer(tokens["access_token"]))
    assert response.status_code == 204
    assert_error_shape(client.get("/me", headers=bearer(tokens["access_token"])), 401)
    assert_error_shape(
        client.post("/auth/refresh", json={"refresh_token": tokens["refresh_token"]}), 401
    )
    # Logging out on one phone does not log out the other.
    assert client.get("/me", headers=bearer(other_device["access_token"])).status_code == 200


def test_a_token_used_before_still_expires_on_time(app, client, make_user, login,
                                                   monkeypatch):
    make_user("grid_worker", username="brief")
    monkeypatch.setitem(app.config, "JWT_ACCESS_TOKEN_EXPIRES", timedelta(seconds=1))
    token = login("brief")["access_token"]
    assert client.get("/me", headers=bearer(token)).status_code == 200
    time.sleep(1.1)
    body = assert_error_shape(client.get("/me", headers=bearer(token)), 401)
    assert "expired" in body["message"]


def test_a_token_with_a_changed_signature_is_refused_after_the_real_one_was_used(
        client, make_user, login):
    make_user("grid_worker", username="forged")
    token = login("forged")["access_token"]
    assert client.get("/me", headers=bearer(token)).status_code == 200
    head, payload, signature = token.split(".")
    other = "A" if signature[0] != "A" else "B"
    assert_error_shape(client.get("/me", headers=bearer(f"{head}.{payload}.{other}"
                                                         f"{signature[1:]}")), 401)


# --- lockout and rate limits --------------------------------------------------------------


def test_repeated_failures_lock_the_account_until_an_admin_unlocks_it(
    app, client, make_user, admin_headers
):
    user = make_user("grid_worker", username="forgetful")
    failures = app.config["LOCKOUT_AFTER_FAILURES"]
    assert failures < app.config["LOGIN_LIMIT_PER_ACCOUNT"]  # the lock, not the rate limit
    for _ in range(failures):
        assert_error_shape(post_login(client, "forgetful", "Wrong-pass-123"), 401)

    locked = post_login(client, "forgetful")  # even the right password
    assert_error_shape(locked, 429)
    retry = assert_retry_after(locked)
    assert retry <= app.config["LOCKOUT_MINUTES"] * 60 + 1

    version = user_version(client, admin_headers, user.id)
    listed = client.get(f"/users/{user.id}", headers=admin_headers).get_json()
    assert listed["locked_until"] is not None
    unlock = client.patch(f"/users/{user.id}", json={"unlock": True, "version": version},
                          headers=admin_headers)
    assert unlock.status_code == 200, unlock.get_json()
    assert unlock.get_json()["locked_until"] is None
    assert post_login(client, "forgetful").status_code == 200


def test_a_success_resets_the_failure_count(app, client, make_user):
    make_user("grid_worker", username="sometimes")
    failures = app.config["LOCKOUT_AFTER_FAILURES"]
    for _ in range(failures - 1):
        post_login(client, "sometimes", "Wrong-pass-123")
    assert post_login(client, "sometimes").status_code == 200
    for _ in range(failures - 1):
        post_login(client, "sometimes", "Wrong-pass-123")
    assert post_login(client, "sometimes").status_code == 200


def test_login_is_rate_limited_per_ip(app, client, make_user, monkeypatch):
    monkeypatch.setitem(app.config, "LOGIN_LIMIT_PER_IP", 3)
    names = [make_user("resident").username for _ in range(4)]
    for name in names[:3]:
        assert post_login(client, name, ip="10.1.1.1").status_code == 200
    limited = post_login(client, names[3], ip="10.1.1.1")
    assert_error_shape(limited, 429)
    # The window is 300 s and the pinned clock is 100 s into it.
    assert app.config["LOGIN_LIMIT_WINDOW_S"] == 300
    assert assert_retry_after(limited) == 200
    # Another address is not affected.
    assert post_login(client, names[3], ip="10.2.2.2").status_code == 200


def test_login_is_rate_limited_per_account_across_addresses(app, client, make_user,
                                                            monkeypatch):
    monkeypatch.setitem(app.config, "LOGIN_LIMIT_PER_ACCOUNT", 3)
    make_user("resident", username="popular", phone="13511112222")
    other = make_user("resident", username="bystander")
    for i in range(3):
        assert post_login(client, "popular", ip=f"10.0.0.{i + 1}").status_code == 200
    limited = post_login(client, "popular", ip="10.0.0.99")
    assert_error_shape(limited, 429)
    assert_retry_after(limited)
    # The account's phone number is the same account, not a fresh budget.
    assert_error_shape(post_login(client, "13511112222", ip="10.0.0.98"), 429)
    # Guessing an unknown account is limited the same way (no account enumeration).
    for _ in range(3):
        post_login(client, "ghost", ip="10.0.1.1")
    assert_error_shape(post_login(client, "ghost", ip="10.0.1.2"), 429)
    assert post_login(client, other.username, ip="10.0.0.99").status_code == 200


# --- disabling ------------------------------------------------------------------------------


def test_disabling_a_user_kills_their_tokens_at_once(client, make_user, login, admin_headers):
    user = make_user("grid_worker", username="departing")
    tokens = login("departing")
    assert client.get("/me", headers=bearer(tokens["access_token"])).status_code == 200

    version = user_version(client, admin_headers, user.id)
    response = client.patch(f"/users/{user.id}", json={"is_active": False, "version": version},
                            headers=admin_headers)
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["is_active"] is False

    assert_error_shape(client.get("/me", headers=bearer(tokens["access_token"])), 401)
    assert_error_shape(
        client.post("/auth/refresh", json={"refresh_token": tokens["refresh_token"]}), 401
    )
    assert_error_shape(post_login(client, "departing"), 401)

    # Re-enabling lets them log in again, but the old tokens stay dead.
    version = response.get_json()["version"]
    client.patch(f"/users/{user.id}", json={"is_active": True, "version": version},
                 headers=admin_headers)
    assert post_login(client, "departing").status_code == 200
    assert_error_shape(client.get("/me", headers=bearer(tokens["access_token"])), 401)


# --- change password ------------------------------------------------------------------------


def test_change_password(client, make_user, login):
    make_user("grid_worker", username="rotating")
    this_phone, other_phone = login("rotating"), login("rotating")
    headers = bearer(this_phone["access_token"])

    wrong = client.post("/auth/password", headers=headers,
                        json={"current_password": "Not-it-12345", "new_password": NEW_PASSWORD})
    assert "current_password" in assert_error_shape(wrong, 422)["errors"]["json"]

    for weak in ("short1", "onlyletterslong", "rotating-2026x", "aaaaaaaaaa1"):
        response = client.post("/auth/password", headers=headers,
                               json={"current_password": TEST_PASSWORD, "new_password": weak})
        body = assert_error_shape(response, 422)
        assert "new_password" in body["errors"]["json"], weak

    # Nothing changed so far: both phones still work.
    assert client.get("/me", headers=bearer(other_phone["access_token"])).status_code == 200

    done = client.post("/auth/password", headers=headers,
                       json={"current_password": TEST_PASSWORD, "new_password": NEW_PASSWORD})
    assert done.status_code == 204, done.get_json()

    assert_error_shape(post_login(client, "rotating"), 401)
    assert post_login(client, "rotating", NEW_PASSWORD).status_code == 200
    # Other sessions end; this one goes on.
    assert_error_shape(client.get("/me", headers=bearer(other_phone["access_token"])), 401)
    assert_error_shape(
        client.post("/auth/refresh", json={"refresh_token": other_phone["refresh_token"]}), 401
    )
    assert client.get("/me", headers=headers).status_code == 200
    again = client.post("/auth/refresh", json={"refresh_token": this_phone["refresh_token"]})
    assert again.status_code == 200


def test_guessing_the_current_password_is_rate_limited(app, client, make_user, login,
                                                      monkeypatch):
    """A stolen access token must not become an unlimited password oracle."""
    monkeypatch.setitem(app.config, "LOGIN_LIMIT_PER_ACCOUNT", 3)
    make_user("grid_worker", username="stolen")
    headers = bearer(login("stolen")["access_token"])
    statuses = [
        client.post("/auth/password", headers=headers,
                    json={"current_password": f"Guess-{i}-12345", "new_password": NEW_PASSWORD}
                    ).status_code
        for i in range(4)
    ]
    assert statuses[:3] == [422, 422, 422]
    limited = client.post("/auth/password", headers=headers,
                          json={"current_password": TEST_PASSWORD, "new_password": NEW_PASSWORD})
    assert_error_shape(limited, 429)
    assert_retry_after(limited)


# --- self-registration ----------------------------------------------------------------------


def request_code(client, caplog, phone: str) -> str:
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="server.auth"):
        response = client.post("/auth/verification-codes", json={"phone": phone})
    assert response.status_code == 202, response.get_json()
    codes = [r.verification_code for r in caplog.records if hasattr(r, "verification_code")]
    assert len(codes) == 1
    # The phone itself is not written to the log in full.
    assert phone not in caplog.text
    return codes[0]


def test_resident_self_registration(client, caplog):
    phone = "13912345678"
    code = request_code(client, caplog, phone)
    wrong = f"{(int(code) + 1) % 10**6:06d}"
    form = {"phone": phone, "password": "Resident-pass-1", "display_name": "张三"}

    rejected = client.post("/auth/register", json={**form, "code": wrong})
    assert "code" in assert_error_shape(rejected, 422)["errors"]["json"]

    created = client.post("/auth/register", json={**form, "code": code})
    assert created.status_code == 201, created.get_json()
    body = created.get_json()
    assert body["user"]["roles"] == ["resident"]
    me = client.get("/me", headers=bearer(body["access_token"]))
    assert me.get_json()["phone"] == phone
    assert post_login(client, phone, "Resident-pass-1").status_code == 200

    # A code works once.
    assert_error_shape(client.post("/auth/register", json={**form, "code": code}), 422)
    # The same phone again, with a fresh code: 409.
    code = request_code(client, caplog, phone)
    assert_error_shape(client.post("/auth/register", json={**form, "code": code}), 409)


def test_registration_codes_give_up_after_repeated_wrong_guesses(client, caplog):
    phone = "13912340000"
    code = request_code(client, caplog, phone)
    form = {"phone": phone, "password": "Resident-pass-1", "display_name": "李四"}
    wrong = f"{(int(code) + 1) % 10**6:06d}"
    for _ in range(5):
        assert client.post("/auth/register", json={**form, "code": wrong}).status_code == 422
    # The right code no longer helps once the guesses are used up.
    assert_error_shape(client.post("/auth/register", json={**form, "code": code}), 422)


def test_registration_rejects_a_weak_password_and_a_bad_phone(client, caplog):
    phone = "13912349999"
    code = request_code(client, caplog, phone)
    weak = client.post("/auth/register", json={"phone": phone, "code": code,
                                              "password": "123", "display_name": "王五"})
    assert "password" in assert_error_shape(weak, 422)["errors"]["json"]
    bad = client.post("/auth/verification-codes", json={"phone": "12345"})
    assert "phone" in assert_error_shape(bad, 422)["errors"]["json"]


def test_verification_codes_are_rate_limited_per_phone(app, client, monkeypatch):
    monkeypatch.setitem(app.config, "VERIFICATION_CODE_LIMIT_PER_PHONE", 2)
    for _ in range(2):
        assert client.post("/auth/verification-codes",
                           json={"phone": "13700001111"}).status_code == 202
    limited = client.post("/auth/verification-codes", json={"phone": "13700001111"})
    assert_error_shape(limited, 429)
    assert_retry_after(limited)


# --- role checks and administration ---------------------------------------------------------


def test_a_resident_cannot_use_admin_or_audit_endpoints(client, auth_headers, make_user):
    headers = auth_headers("resident")
    other = make_user("grid_worker")
    assert_error_shape(client.get("/users", headers=headers), 403)
    assert_error_shape(client.get("/audit", headers=headers), 403)
    created = client.post("/users", headers=headers, json={
        "username": "sneaky", "display_name": "x", "password": "Sneaky-pass-1",
        "roles": ["admin"]})
    assert_error_shape(created, 403)
    assert_error_shape(client.get(f"/users/{other.id}", headers=headers), 403)
    patched = client.patch(f"/users/{other.id}", headers=headers,
                           json={"is_active": False, "version": other.version})
    assert_error_shape(patched, 403)


def test_an_admin_creates_users_and_duplicates_are_409(client, admin_headers):
    form = {"username": "newworker", "phone": "13600001234", "display_name": "新网格员",
            "password": "Worker-pass-1", "roles": ["grid_worker", "grid_chief"]}
    created = client.post("/users", headers=admin_headers, json=form)
    assert created.status_code == 201, created.get_json()
    body = created.get_json()
    assert body["roles"] == ["grid_chief", "grid_worker"]
    assert body["phone"] == "136****1234"
    assert "password" not in body
    assert post_login(client, "newworker", "Worker-pass-1").status_code == 200
    assert post_login(client, "13600001234", "Worker-pass-1").status_code == 200

    again = client.post("/users", headers=admin_headers, json={**form, "phone": "13600004321"})
    assert "username" in assert_error_shape(again, 409)["errors"]["json"]
    upper = client.post("/users", headers=admin_headers,
                        json={**form, "username": "NewWorker", "phone": "13600004321"})
    assert upper.status_code in (409, 422)
    same_phone = client.post("/users", headers=admin_headers,
                             json={**form, "username": "otherworker"})
    assert "phone" in assert_error_shape(same_phone, 409)["errors"]["json"]


def test_user_creation_validates_its_input(client, admin_headers):
    base = {"display_name": "x", "password": "Worker-pass-1", "roles": ["grid_worker"]}
    for extra, field in (
        ({"username": "ok-name", "roles": ["emperor"]}, "roles"),
        ({"username": "ok-name", "password": "weak"}, "password"),
        ({"username": "ok-name", "unexpected": 1}, "unexpected"),
        ({"username": "A"}, "username"),
        ({"phone": "123"}, "phone"),
        # A username shaped like a phone number could never log in by name (the login
        # field treats it as a phone) and would shadow someone's phone.
        ({"username": "13812345678"}, "username"),
    ):
        response = client.post("/users", headers=admin_headers, json={**base, **extra})
        body = assert_error_shape(response, 422)
        assert field in body["errors"]["json"], (extra, body)
    neither = client.post("/users", headers=admin_headers, json=base)
    assert_error_shape(neither, 422)


def test_versions_guard_updates(client, make_user, admin_headers):
    user = make_user("grid_worker", username="edited")
    read = client.get(f"/users/{user.id}", headers=admin_headers)
    assert read.status_code == 200
    version = read.get_json()["version"]
    assert read.headers["ETag"] == f'"{version}"'

    missing = client.patch(f"/users/{user.id}", json={"display_name": "改名"},
                           headers=admin_headers)
    assert_error_shape(missing, 428)

    renamed = client.patch(f"/users/{user.id}", json={"display_name": "改名", "version": version},
                           headers=admin_headers)
    assert renamed.status_code == 200, renamed.get_json()
    assert renamed.get_json()["display_name"] == "改名"
    new_version = renamed.get_json()["version"]
    assert new_version > version
    assert renamed.headers["ETag"] == f'"{new_version}"'

    stale = client.patch(f"/users/{user.id}", json={"display_name": "又改", "version": version},
                         headers=admin_headers)
    body = assert_error_shape(stale, 412)
    assert body["current"]["version"] == new_version
    assert body["current"]["display_name"] == "改名"

    # If-Match works as well as the body field, and stale If-Match is refused too.
    stale_header = client.patch(f"/users/{user.id}", json={"display_name": "又改"},
                                headers={**admin_headers, "If-Match": f'"{version}"'})
    assert_error_shape(stale_header, 412)
    by_header = client.patch(f"/users/{user.id}", json={"display_name": "又改"},
                             headers={**admin_headers, "If-Match": f'"{new_version}"'})
    assert by_header.status_code == 200, by_header.get_json()
    assert by_header.get_json()["display_name"] == "又改"
    weak_tag = client.patch(f"/users/{user.id}", json={"display_name": "再改"},
                            headers={**admin_headers,
                                     "If-Match": by_header.headers["ETag"].join(["W/", ""])})
    assert weak_tag.status_code == 200, weak_tag.get_json()


def test_an_unknown_user_is_404(client, admin_headers):
    assert_error_shape(client.get("/users/987654321", headers=admin_headers), 404)
    patched = client.patch("/users/987654321", json={"display_name": "x", "version": 1},
                           headers=admin_headers)
    assert_error_shape(patched, 404)


def test_role_changes_take_effect_on_the_next_request(client, make_user, login, admin_headers):
    user = make_user("resident", username="promoted")
    headers = bearer(login("promoted")["access_token"])
    assert_error_shape(client.get("/audit", headers=headers), 403)
    version = user_version(client, admin_headers, user.id)
    response = client.patch(f"/users/{user.id}", json={"roles": ["auditor", "resident"],
                                                       "version": version},
                            headers=admin_headers)
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["roles"] == ["auditor", "resident"]
    assert response.get_json()["version"] > version
    assert client.get("/audit", headers=headers).status_code == 200
    me = client.get("/me", headers=headers).get_json()
    assert "audit:read" in me["permissions"]


def test_me_shows_own_phone_and_permissions_while_admins_see_it_masked(
    client, make_user, login, admin_headers
):
    user = make_user("grid_worker", phone="13812345678", display_name="王网格")
    me = client.get("/me", headers=bearer(login("13812345678")["access_token"]))
    assert me.status_code == 200
    body = me.get_json()
    assert body["phone"] == "13812345678"
    assert body["roles"] == ["grid_worker"]
    assert "case:handle" in body["permissions"] and "user:manage" not in body["permissions"]

    listed = client.get("/users", headers=admin_headers, query_string={"q": "王网格"})
    assert listed.status_code == 200
    rows = listed.get_json()
    assert [r["id"] for r in rows] == [user.id]
    assert rows[0]["phone"] == "138****5678"
    assert "13812345678" not in listed.get_data(as_text=True)
    single = client.get(f"/users/{user.id}", headers=admin_headers).get_json()
    assert single["phone"] == "138****5678"
    # Searching for "_" finds underscores, not every account.
    make_user("resident", username="has_underscore")
    underscored = client.get("/users", headers=admin_headers, query_string={"q": "_"})
    assert [r["username"] for r in underscored.get_json()] == ["has_underscore"]
    # Finding an account by its full phone number works without showing it.
    by_phone = client.get("/users", headers=admin_headers, query_string={"q": "13812345678"})
    assert [r["id"] for r in by_phone.get_json()] == [user.id]


def test_user_list_filters_and_pages(client, make_user, admin_headers):
    for i in range(3):
        make_user("grid_worker", username=f"pager{i}")
    make_user("auditor", username="pagerx")
    response = client.get("/users", headers=admin_headers,
                          query_string={"role": "grid_worker", "q": "pager", "page_size": 2})
    assert response.status_code == 200
    assert len(response.get_json()) == 2
    pagination = json.loads(response.headers["X-Pagination"])
    assert pagination["total"] == 3 and pagination["total_pages"] == 2
    assert_error_shape(client.get("/users", headers=admin_headers,
                                  query_string={"role": "emperor"}), 422)

"""The console's login (指挥中心工作台): the refresh token travels only in an httpOnly,
SameSite=Strict cookie scoped to /auth/console; the access token only in the body. The
cookie's token is the phones' refresh token: it rotates, a reused one ends the session,
logout revokes it. A request without the console's header is refused (CSRF)."""

from __future__ import annotations

from tests.conftest import TEST_PASSWORD, assert_error_shape

CONSOLE = {"X-Requested-With": "grid-console"}
COOKIE = "grid_console_refresh"


def _console_login(client, user, headers=CONSOLE):
    return client.post("/auth/console/login", json={"login": user.username,
                                                    "password": TEST_PASSWORD}, headers=headers)


def test_login_sets_an_httponly_strict_cookie_and_no_refresh_token_in_the_body(client,
                                                                              make_user):
    user = make_user("street_dispatcher")
    response = _console_login(client, user)
    assert response.status_code == 200
    body = response.get_json()
    assert body["access_token"] and "refresh_token" not in body
    assert body["user"]["username"] == user.username
    cookie = response.headers["Set-Cookie"]
    assert cookie.startswith(f"{COOKIE}=")
    attributes = {part.strip().split("=")[0].lower() for part in cookie.split(";")[1:]}
    assert {"httponly", "path", "samesite", "max-age"} <= attributes
    assert "Path=/auth/console" in cookie and "SameSite=Strict" in cookie
    assert "Secure" not in cookie  # plain http here; https requests get Secure
    assert response.headers["Cache-Control"] == "no-store"
    # the access token works on the API
    me = client.get("/me", headers={"Authorization": f"Bearer {body['access_token']}"})
    assert me.status_code == 200 and me.get_json()["username"] == user.username


def test_https_requests_get_a_secure_cookie(client, make_user):
    user = make_user("street_dispatcher")
    response = client.post("/auth/console/login", base_url="https://localhost",
                           json={"login": user.username, "password": TEST_PASSWORD},
                           headers=CONSOLE)
    assert response.status_code == 200 and "Secure" in response.headers["Set-Cookie"]


def test_refresh_from_the_cookie_rotates_and_a_reused_token_ends_the_session(client,
                                                                            make_user):
    user = make_user("street_dispatcher")
    _console_login(client, user)
    first = client.get_cookie(COOKIE, path="/auth/console").value
    response = client.post("/auth/console/refresh", headers=CONSOLE)
    assert response.status_code == 200
    access = response.get_json()["access_token"]
    second = client.get_cookie(COOKIE, path="/auth/console").value
    assert second != first  # rotated
    assert client.get("/me", headers={"Authorization": f"Bearer {access}"}).status_code == 200
    # the old token presented again (outside the retry grace, its successor used): revoked
    assert client.post("/auth/console/refresh", headers=CONSOLE).status_code == 200
    client.set_cookie(COOKIE, first, path="/auth/console")
    assert_error_shape(client.post("/auth/console/refresh", headers=CONSOLE), 401)
    assert_error_shape(client.get("/me", headers={"Authorization": f"Bearer {access}"}), 401)


def test_without_the_console_header_nothing_happens(client, make_user):
    user = make_user("street_dispatcher")
    body = assert_error_shape(_console_login(client, user, headers={}), 403)
    assert "X-Requested-With" in body["message"]
    assert client.get_cookie(COOKIE, path="/auth/console") is None
    _console_login(client, user)
    before = client.get_cookie(COOKIE, path="/auth/console").value
    assert_error_shape(client.post("/auth/console/refresh"), 403)  # a cross-site form post
    assert client.get_cookie(COOKIE, path="/auth/console").value == before  # not rotated


def test_refresh_without_a_cookie_is_a_401(client):
    assert_error_shape(client.post("/auth/console/refresh", headers=CONSOLE), 401)


def test_wrong_password_is_a_401_without_cookie(client, make_user):
    user = make_user("street_dispatcher")
    response = client.post("/auth/console/login", headers=CONSOLE,
                           json={"login": user.username, "password": "wrong-password"})
    assert_error_shape(response, 401)
    assert "Set-Cookie" not in response.headers


def test_logout_ends_the_session_and_clears_the_cookie(client, make_user):
    user = make_user("street_dispatcher")
    access = _console_login(client, user).get_json()["access_token"]
    auth = {"Authorization": f"Bearer {access}"}
    assert_error_shape(client.post("/auth/console/logout", headers=auth), 403)
    response = client.post("/auth/console/logout", headers={**auth, **CONSOLE})
    assert response.status_code == 204
    assert f"{COOKIE}=;" in response.headers["Set-Cookie"]
    assert client.get_cookie(COOKIE, path="/auth/console") is None
    assert_error_shape(client.get("/me", headers=auth), 401)


def test_the_endpoints_are_documented(client):
    paths = client.get("/api/openapi.json").get_json()["paths"]
    for path in ("/auth/console/login", "/auth/console/refresh", "/auth/console/logout"):
        operation = paths[path]["post"]
        assert "403" in operation["responses"], path
        assert any(p["name"] == "X-Requested-With" for p in operation["parameters"]), path
    login = paths["/auth/console/login"]["post"]["responses"]["200"]
    schema = login["content"]["application/json"]["schema"]
    assert "refresh_token" not in str(schema) or "ConsoleToken" in str(schema)


def test_the_console_page_has_a_csp_without_inline_script(client):
    response = client.get("/console")
    assert response.status_code == 200 and response.mimetype == "text/html"
    policy = response.headers["Content-Security-Policy"]
    script = next(p for p in policy.split(";") if p.strip().startswith("script-src"))
    assert script.strip() == "script-src 'self'"
    page = response.get_data(as_text=True)
    assert "<script>" not in page and "onload=" not in page
    asset = page.split('src="')[1].split('"')[0]
    assert asset.startswith("/console/assets/")
    served = client.get(asset)
    assert served.status_code == 200 and "javascript" in served.mimetype
    assert "max-age=31536000" in served.headers["Cache-Control"]


def test_assets_go_gzipped_to_browsers_that_take_it(client):
    page = client.get("/console").get_data(as_text=True)
    asset = page.split('src="')[1].split('"')[0]
    plain = client.get(asset)
    packed = client.get(asset, headers={"Accept-Encoding": "gzip, deflate"})
    assert packed.headers["Content-Encoding"] == "gzip" and "javascript" in packed.mimetype
    assert "Accept-Encoding" in packed.headers["Vary"] and "Content-Encoding" not in plain.headers
    import gzip

    assert gzip.decompress(packed.data) == plain.data
    assert len(packed.data) < len(plain.data) / 2

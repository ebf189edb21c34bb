"""What responses tell browsers: security headers on every answer, a Content-Security-Policy
without inline script on pages, no-store on personal data in clear, CORS, and absolute URLs
that come from configuration, never from the Host header."""

from __future__ import annotations

import re

import pytest

from server.security import PAGE_POLICY
from tests.conftest import assert_error_shape

ORIGIN = "https://console.example.gov.cn"
ELSEWHERE = "https://evil.example.com"


def _assert_secure(response) -> None:
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["Referrer-Policy"] == "no-referrer"
    assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"]


@pytest.mark.parametrize("path", ["/map", "/api/docs"])
def test_pages_have_a_policy_without_inline_script(client, path):
    page = client.get(path)
    assert page.status_code == 200 and page.mimetype == "text/html"
    _assert_secure(page)
    policy = page.headers["Content-Security-Policy"]
    assert policy == PAGE_POLICY
    scripts = re.search(r"script-src ([^;]*)", policy).group(1)
    assert "'unsafe-inline'" not in scripts and "'unsafe-eval'" not in scripts
    html = page.get_data(as_text=True)
    # every <script> loads a file of ours; none carries code
    tags = re.findall(r"<script([^>]*)>(.*?)</script>", html, re.S)
    assert tags and all('src="/' in attrs and not body.strip() for attrs, body in tags)
    assert not re.search(r"\son[a-z]+\s*=", html)  # no onload=, onclick=… attributes
    for attrs, _ in tags:
        src = re.search(r'src="([^"]+)"', attrs).group(1)
        script = client.get(src)
        assert script.status_code == 200, src
        assert "javascript" in script.mimetype


@pytest.mark.parametrize("path", ["/healthz", "/api/openapi.json", "/nowhere", "/me"])
def test_every_answer_has_the_security_headers(client, path):
    response = client.get(path)
    _assert_secure(response)
    assert response.headers["Content-Security-Policy"].startswith("default-src 'none'")


def test_personal_data_in_clear_is_never_stored(client, auth_headers):
    """@no_store on the route: every answer of it, whichever decorator gives it."""
    admin = auth_headers("admin")
    for method, path, kwargs in (
            ("get", "/persons/999999999/pii", {"query_string": {"purpose": "核实身份信息"}}),
            ("post", "/cases/999999999/contact", {"json": {"purpose": "回访联系报告人"}}),
            ("get", "/persons/999999999/profile", {"query_string": {
                "reveal": "true", "purpose": "核实身份信息"}}),
            ("get", "/ledgers/export", {"query_string": {"kind": "persons"}})):
        for headers in (admin, {}):
            response = getattr(client, method)(path, headers=headers, **kwargs)
            assert response.headers.get("Cache-Control") == "no-store", (
                path, response.status_code, response.get_data(True))
    # …and only there.
    assert "no-store" not in client.get("/me", headers=admin).headers.get("Cache-Control", "")


# --- CORS ------------------------------------------------------------------------------------


def test_public_reads_answer_any_origin(client):
    for path in ("/tiles/areas.json", "/open311/v2/services.json", "/healthz"):
        response = client.get(path, headers={"Origin": ELSEWHERE})
        assert response.status_code == 200, path
        assert response.headers["Access-Control-Allow-Origin"] == "*"
        assert "Origin" in response.headers["Vary"]
        assert "X-Request-ID" in response.headers["Access-Control-Expose-Headers"]
    # A simple preflight for a read without credentials (a custom header) is allowed too.
    preflight = client.options("/open311/v2/requests.json", headers={
        "Origin": ELSEWHERE, "Access-Control-Request-Method": "GET",
        "Access-Control-Request-Headers": "X-Requested-With"})
    assert preflight.status_code == 204
    assert preflight.headers["Access-Control-Allow-Origin"] == "*"
    assert preflight.headers["Access-Control-Allow-Methods"] == "GET, HEAD"
    assert preflight.headers["Access-Control-Allow-Headers"] == "X-Requested-With"


def test_the_rest_of_the_api_answers_configured_origins_only(app, client, auth_headers,
                                                            monkeypatch):
    headers = auth_headers("admin")
    # Not configured (the default): no CORS for a token or a write, nor their preflights.
    answer = client.get("/me", headers={**headers, "Origin": ORIGIN})
    assert answer.status_code == 200 and "Access-Control-Allow-Origin" not in answer.headers
    preflight = {"Origin": ORIGIN, "Access-Control-Request-Method": "POST",
                 "Access-Control-Request-Headers": "Authorization, Content-Type"}
    refused = client.options("/cases", headers=preflight)
    assert "Access-Control-Allow-Origin" not in refused.headers
    for method in ("GET", "DELETE"):
        refused = client.options("/me", headers={**preflight,
                                                 "Access-Control-Request-Method": method})
        assert "Access-Control-Allow-Origin" not in refused.headers

    # Configured (CORS_ORIGINS): that origin, and only it.
    monkeypatch.setitem(app.config, "CORS_ORIGINS", (ORIGIN,))
    c = client
    ok = c.options("/cases", headers=preflight)
    assert ok.status_code == 204
    assert ok.headers["Access-Control-Allow-Origin"] == ORIGIN
    assert "POST" in ok.headers["Access-Control-Allow-Methods"]
    assert ok.headers["Access-Control-Allow-Headers"] == "Authorization, Content-Type"
    assert int(ok.headers["Access-Control-Max-Age"]) > 0
    answer = c.get("/me", headers={**headers, "Origin": ORIGIN})
    assert answer.status_code == 200
    assert answer.headers["Access-Control-Allow-Origin"] == ORIGIN
    error = c.post("/cases", json={}, headers={**headers, "Origin": ORIGIN})
    assert error.status_code == 422 and error.headers["Access-Control-Allow-Origin"] == ORIGIN
    other = c.get("/me", headers={**headers, "Origin": ELSEWHERE})
    assert "Access-Control-Allow-Origin" not in other.headers
    assert "Access-Control-Allow-Origin" not in c.options("/cases", headers={
        **preflight, "Origin": ELSEWHERE}).headers


# --- URLs from configuration, not from the Host header ------------------------------------------


def test_tilejson_urls_do_not_come_from_the_host_header(app, client, monkeypatch):
    poisoned = client.get("/tiles/areas.json", headers={"Host": "evil.example.com"})
    assert poisoned.status_code == 200
    assert "evil" not in poisoned.get_data(as_text=True)
    assert poisoned.get_json()["tiles"] == ["/tiles/areas/{z}/{x}/{y}.mvt"]

    monkeypatch.setitem(app.config, "PUBLIC_BASE_URL", "https://grid.example.gov.cn")
    body = client.get("/tiles/areas.json", headers={"Host": "evil.example.com"}).get_json()
    assert body["tiles"] == ["https://grid.example.gov.cn/tiles/areas/{z}/{x}/{y}.mvt"]


def test_trusted_hosts_refuse_other_host_headers(app, client, monkeypatch):
    monkeypatch.setitem(app.config, "TRUSTED_HOSTS", ["grid.example.gov.cn"])
    assert_error_shape(client.get("/healthz", headers={"Host": "evil.example.com"}), 400)
    assert client.get("/healthz", headers={"Host": "grid.example.gov.cn"}).status_code == 200


def test_the_docs_page_works_under_its_policy(app, tmp_path):
    """Swagger UI in headless Chromium: it renders the operations, and the browser reports
    no error (a refused inline script or eval would be one)."""
    import threading

    from werkzeug.serving import make_server

    from tests.fixtures.browser import CHROMIUM, Page

    if CHROMIUM is None:
        pytest.skip("needs Chromium")
    server = make_server("127.0.0.1", 0, app, threaded=False)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    page = Page(tmp_path)
    try:
        page.send("Page.navigate", url=f"http://127.0.0.1:{server.server_port}/api/docs")
        page.wait("document.querySelectorAll('.opblock').length > 20")
        assert "Grid governance" in page.text(".info .title")
        assert page.console_errors == []
    finally:
        page.close()
        server.shutdown()

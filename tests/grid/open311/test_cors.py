"""Browser-based 311 apps: Open311's own answers (its views, its XML, its error format)
carry the platform's CORS headers (server/security.py): reads from any origin, posts from
the configured origins only. Skipped until that module is there (the platform branch)."""

from __future__ import annotations

import pytest

from tests.grid.open311.conftest import spec_errors, where

pytest.importorskip("server.security")

APP = "https://311.example.org"


@pytest.mark.parametrize("fmt", ["json", "xml"])
def test_reads_and_their_errors_answer_any_origin(app311, anonymous, fmt):
    code = app311.report()
    origin = {"Origin": APP}
    for path, status, errors in [
            (f"/open311/discovery.{fmt}", 200, None),
            (f"/open311/v2/services/T01.{fmt}", 200, None),
            (f"/open311/v2/requests.{fmt}?status=open&status=closed", 200, None),
            (f"/open311/v2/requests/{code}.{fmt}", 200, None),
            (f"/open311/v2/requests/nope.{fmt}", 404, fmt),
            (f"/open311/v2/requests.{fmt}?page=1&page=2", 400, fmt),
            (f"/open311/v2/services.{fmt}?api_key=nope.nope", 403, fmt),
            ("/open311/v2/nothing-here", 404, "json")]:
        response = anonymous.client.get(path, headers=origin)
        if errors:
            spec_errors(response, status, errors)
        assert response.status_code == status, (path, response.get_data(True))
        assert response.headers["Access-Control-Allow-Origin"] == "*", path


def test_a_preflight_for_a_read_is_answered(anonymous):
    response = anonymous.client.options("/open311/v2/requests.xml", headers={
        "Origin": APP, "Access-Control-Request-Method": "GET"})
    assert response.status_code == 204
    assert response.headers["Access-Control-Allow-Origin"] == "*"


def test_posts_answer_configured_origins_only(app, app311, monkeypatch):
    form = {"service_code": "T01", **where(), "attribute[size]": "small"}
    elsewhere = app311.client.post("/open311/v2/requests.json", headers={"Origin": APP},
                                   data={"api_key": app311.api_key, **form})
    assert "Access-Control-Allow-Origin" not in elsewhere.headers
    monkeypatch.setitem(app.config, "CORS_ORIGINS", (APP,))
    configured = app311.client.post("/open311/v2/requests.json", headers={"Origin": APP},
                                    data={"api_key": app311.api_key, **form})
    assert configured.status_code == 201, configured.get_data(True)
    assert configured.headers["Access-Control-Allow-Origin"] == APP
    refused = app311.client.post("/open311/v2/requests.json", headers={"Origin": APP},
                                 data={"api_key": "nope.nope", **form})
    spec_errors(refused, 403)
    assert refused.headers["Access-Control-Allow-Origin"] == APP

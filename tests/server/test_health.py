"""Health, readiness, request ids and the offline API docs."""

from server.health import migration_head


def test_healthz_is_alive(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.get_json() == {"status": "ok"}


def test_readyz_reports_postgis_and_migration_head(client):
    response = client.get("/readyz")
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert body["status"] == "ok"
    assert body["postgis"].startswith("3.")
    assert body["migration"] == body["head"] == migration_head()


def test_readyz_is_503_with_a_reason_when_the_database_is_unreachable(app):
    from server.app import create_app

    broken = create_app({**{k: app.config[k] for k in ("ARGON2_TIME_COST", "ARGON2_MEMORY_KIB",
                                                       "ARGON2_PARALLELISM")},
                         "DATABASE_URL": "postgresql+psycopg2://nobody@127.0.0.1:9/none",
                         "LOG_LEVEL": "CRITICAL"})
    response = broken.test_client().get("/readyz")
    assert response.status_code == 503
    body = response.get_json()
    assert body["status"] == "unavailable"
    assert body["reason"]


def test_request_id_is_returned_and_an_incoming_one_is_kept(client):
    fresh = client.get("/healthz")
    assert len(fresh.headers["X-Request-ID"]) == 32
    kept = client.get("/healthz", headers={"X-Request-ID": "lb-trace-12345678"})
    assert kept.headers["X-Request-ID"] == "lb-trace-12345678"
    # Junk is not echoed back into logs and headers.
    junk = client.get("/healthz", headers={"X-Request-ID": "bad id; DROP"})
    assert junk.headers["X-Request-ID"] != "bad id; DROP"


def test_openapi_document_and_offline_docs(client):
    spec = client.get("/api/openapi.json")
    assert spec.status_code == 200
    doc = spec.get_json()
    assert doc["openapi"].startswith("3.")
    assert "/auth/login" in doc["paths"]
    page = client.get("/api/docs")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert "/api/docs/assets/swagger-ui-bundle.js" in html
    assert "//cdn" not in html and "unpkg" not in html
    asset = client.get("/api/docs/assets/swagger-ui-bundle.js")
    assert asset.status_code == 200
    assert len(asset.get_data()) > 100_000

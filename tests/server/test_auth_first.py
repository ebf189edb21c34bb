"""Authentication before validation (issue 15): every operation the OpenAPI document marks as
needing credentials answers 401 (one error shape, `WWW-Authenticate`) to a caller without
them, whatever the body and the query, before anything is validated. Operations join the
check by being in the document; nobody has to remember to add them here."""

from __future__ import annotations

import pytest

from tests.conftest import assert_error_shape

METHODS = ("get", "post", "put", "patch", "delete")
BODIES = (
    {"json": {}},
    {"json": {"garbage": [1, {"x": None}], "version": "no"}},
    {"data": b"{not json", "content_type": "application/json"},
)
QUERY = {"page": "-1", "page_size": "many", "crs": "mars", "bbox": "x", "garbage": "1"}


def _protected(document: dict) -> list[tuple[str, str, list[dict]]]:
    """(method, path, parameters) of every operation whose security cannot be met without
    credentials (a `{}` alternative means anonymous callers are served too)."""
    found = []
    for path, item in document["paths"].items():
        for method in METHODS:
            operation = item.get(method)
            if operation is None:
                continue
            security = operation.get("security", document.get("security", []))
            if security and {} not in security:
                found.append((method, path, item.get("parameters", [])
                              + operation.get("parameters", [])))
    return found


def _url(path: str, parameters: list[dict]) -> str:
    """The path with a well-formed value for each parameter (so the route matches)."""
    for parameter in parameters:
        if parameter["in"] == "path":
            kind = parameter.get("schema", {}).get("type")
            path = path.replace("{" + parameter["name"] + "}",
                                "1" if kind == "integer" else "x")
    return path


@pytest.fixture(scope="module")
def protected(app) -> list[tuple[str, str, list[dict]]]:
    document = app.test_client().get("/api/openapi.json").get_json()
    return _protected(document)


def test_the_document_marks_most_operations_as_needing_credentials(protected):
    labels = {f"{m.upper()} {p}" for m, p, _ in protected}
    assert len(labels) > 100
    for expected in ("POST /cases", "PATCH /users/{user_id}", "GET /geo/locate",
                     "POST /cases/hotline", "POST /memberships"):
        assert expected in labels


def test_without_credentials_every_protected_operation_answers_401_before_validating(
        client, protected):
    wrong = []
    for method, path, parameters in protected:
        url = _url(path, parameters)
        assert "{" not in url, url
        bodies = BODIES if method in ("post", "put", "patch") else ({},)
        for headers in ({}, {"Authorization": "Bearer not-a-token"}):
            for body in bodies:
                response = getattr(client, method)(url, query_string=QUERY, headers=headers,
                                                   **body)
                if (response.status_code != 401
                        or "WWW-Authenticate" not in response.headers):
                    wrong.append(f"{method.upper()} {path} {headers} {body}: "
                                 f"{response.status_code} {response.get_data(True)[:120]}")
                    continue
                assert_error_shape(response, 401)
    assert not wrong, "\n".join(wrong)


def test_an_empty_case_report_without_a_token_is_401_not_the_field_list(client):
    body = assert_error_shape(client.post("/cases", json={}), 401)
    assert "errors" not in body


def test_public_operations_still_validate(client):
    """Login needs no token: its bad body is still a 422 naming the fields."""
    body = assert_error_shape(client.post("/auth/login", json={}), 422)
    assert "login" in body["errors"]["json"]

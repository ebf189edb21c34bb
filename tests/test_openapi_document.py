"""The OpenAPI document says what the server does (issue 15), item by item; each test pairs
what the document declares with what the server answers, through the HTTP API."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta

import pytest

from tests.conftest import assert_error_shape
from tests.fixtures.cases import report
from tests.fixtures.http import at
from tests.fixtures.users import make_user  # noqa: F401 - fixture (tree, people…: tests/fixtures)

G111 = "330183001001001"
METHODS = ("get", "post", "put", "patch", "delete")


@pytest.fixture(scope="module")
def document(app) -> dict:
    return app.test_client().get("/api/openapi.json").get_json()


def operations(document: dict):
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if method in METHODS:
                yield path, method, operation


def _walk(node, found: list, trail: str = "") -> list:
    if isinstance(node, dict):
        for key, value in node.items():
            _walk(value, found, f"{trail}/{key}")
            if key == "location" and isinstance(value, dict) and "/properties" in trail[-11:] \
                    and value.get("type") != "array":  # Open311's [lon, lat] is not a Point
                found.append((trail, value))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            _walk(value, found, f"{trail}/{i}")
    return found


def _resolve(document: dict, schema: dict) -> dict:
    while "$ref" in schema:
        schema = document["components"]["schemas"][schema["$ref"].rsplit("/", 1)[-1]]
    return schema


# --- the shared Point ------------------------------------------------------------------


def test_every_location_is_the_one_point_component(document):
    point = document["components"]["schemas"]["Point"]
    assert point["required"] == ["lon", "lat"]
    props = point["properties"]
    assert props["lon"] == {**props["lon"], "type": "number", "minimum": -180, "maximum": 180}
    assert props["lat"] == {**props["lat"], "type": "number", "minimum": -90, "maximum": 90}
    assert props["crs"]["enum"] == ["wgs84", "gcj02", "bd09"]
    assert props["accuracy_m"]["type"] == "number" and props["accuracy_m"]["minimum"] == 0
    assert props["captured_at"]["format"] == "date-time"
    assert props["device_id"]["maxLength"] == 128
    assert point["example"]["lon"] and point["additionalProperties"] is False
    locations = _walk(document["components"]["schemas"], [])
    assert len(locations) >= 10
    for trail, schema in locations:
        assert schema.get("allOf") == [{"$ref": "#/components/schemas/Point"}], (trail, schema)


def test_a_capture_time_beyond_the_clock_skew_is_refused(people, category):
    body = {"category_id": category.id, "description": "路边有暴露垃圾",
            "attributes": {"size": "small"}}
    far = {**at(G111), "captured_at": "2426-03-01T09:30:00+08:00"}
    response = people.worker.post("/cases", {**body, "location": far})
    error = assert_error_shape(response, 422)
    assert "captured_at" in json.dumps(error["errors"]["json"]["location"])
    # A phone whose clock is a few minutes ahead is fine.
    soon = (datetime.now(UTC) + timedelta(minutes=5)).isoformat()
    assert people.worker.post("/cases", {**body, "location": {**at(G111), "captured_at": soon}}
                              ).status_code == 201


# --- bbox and near ---------------------------------------------------------------------


@pytest.mark.parametrize("name", ["bbox", "near"])
def test_bbox_and_near_are_one_patterned_string(document, name, people, category):
    parameter = next(p for p in document["paths"]["/cases"]["get"]["parameters"]
                     if p["name"] == name)
    schema = parameter["schema"]
    assert schema["type"] == "string" and "explode" not in parameter
    assert re.fullmatch(schema["pattern"], schema["example"])
    # The documented example works, and so does what the pattern allows; anything else is
    # refused by the parser too.
    ok = people.dispatcher.get(f"/cases?{name}={schema['example']}")
    assert ok.status_code == 200, ok.get_json()
    for bad in ("1,2", "1e2,30,120,31", "200,30,201,31,5", "a,b,c"):
        assert not re.fullmatch(schema["pattern"], bad)
        assert_error_shape(people.dispatcher.get(f"/cases?{name}={bad}"), 422)


def test_bbox_finds_cases_inside_it(people, category):
    case = report(people.worker, category)
    inside = people.dispatcher.ok(people.dispatcher.get("/cases?bbox=119.90,30.01,119.91,30.02"))
    outside = people.dispatcher.ok(people.dispatcher.get("/cases?bbox=119.92,30.0,119.94,30.02"))
    assert case["id"] in [c["id"] for c in inside]
    assert case["id"] not in [c["id"] for c in outside]


# --- versions ----------------------------------------------------------------------------


def test_versioned_operations_document_if_match_412_and_428(document):
    versioned = [(path, method) for path, method, op in operations(document)
                 if any(p["name"] == "If-Match" for p in op.get("parameters", []))]
    for path, method in [("/cases/{case_id}/actions/{action}", "post"),
                         ("/buildings/{building_id}", "patch"), ("/users/{user_id}", "patch"),
                         ("/bookings/{booking_id}/actions/{action}", "post"),
                         ("/areas/{area_id}", "patch")]:
        assert (path, method) in versioned
    for path, method in versioned:
        operation = document["paths"][path][method]
        assert {"412", "428"} <= set(operation["responses"]), (path, method)
        assert "428" in operation["description"]


def test_without_if_match_or_version_an_action_is_428(people, category):
    case = report(people.worker, category)
    assert_error_shape(people.dispatcher.post(f"/cases/{case['id']}/actions/accept", {}), 428)
    accepted = people.dispatcher.post(f"/cases/{case['id']}/actions/accept", {},
                                      headers={"If-Match": f'"{case["version"]}"'})
    assert accepted.status_code == 200


# --- bodies ------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/cases/{case_id}/follow", "/me/notifications/read-all"])
def test_optional_bodies_are_documented_as_optional(document, path):
    assert document["paths"][path]["post"]["requestBody"]["required"] is False


def test_follow_and_read_all_work_without_a_body(client, people, category):
    case = report(people.worker, category)
    headers = people.dispatcher.headers
    assert client.post(f"/cases/{case['id']}/follow", headers=headers).status_code == 204
    assert client.post("/me/notifications/read-all", headers=headers).status_code == 200


def test_put_preferences_needs_the_whole_body(document, people):
    who = people.resident
    body = {"muted_kinds": [], "quiet_hours": {"start": "22:00", "end": "07:00"},
            "timezone": "Asia/Shanghai"}
    assert who.put("/me/notification-preferences", body).status_code == 200
    for partial in ({}, {"muted_kinds": ["broadcast.info"]}, {"timezone": "Asia/Urumqi"}):
        error = assert_error_shape(who.put("/me/notification-preferences", partial), 422)
        assert error["errors"]["json"]
    # Quiet hours were not silently reset by the refused partial bodies.
    assert who.ok(who.get("/me/notification-preferences"))["quiet_hours"] == body["quiet_hours"]
    schema = _resolve(document, document["paths"]["/me/notification-preferences"]["put"]
                      ["requestBody"]["content"]["application/json"]["schema"])
    assert set(schema["required"]) == {"muted_kinds", "quiet_hours", "timezone"}


# --- formats -----------------------------------------------------------------------------


def test_month_and_date_rules_are_in_the_schema(document):
    month = next(p for p in document["paths"]["/organisations/{org_id}/indicators/{month}"]
                 ["put"]["parameters"] if p["name"] == "month")
    assert re.fullmatch(month["schema"]["pattern"], "1900-01")
    assert not re.fullmatch(month["schema"]["pattern"], "1899-12")
    assert not re.fullmatch(month["schema"]["pattern"], "2026-13")
    day = next(p for p in document["paths"]["/services/{service_id}/slots"]["get"]
               ["parameters"] if p["name"] == "from")["schema"]
    assert re.fullmatch(day["pattern"], "2026-03-01") and not re.fullmatch(day["pattern"],
                                                                           "1999-12-31")
    user = document["components"]["schemas"]["UserCreate"]["properties"]
    assert re.fullmatch(user["phone"]["pattern"], "13800138000")
    assert not re.fullmatch(user["username"]["pattern"], "A")


# --- declarations ------------------------------------------------------------------------


def test_no_operation_has_a_catch_all_default(document):
    for path, method, operation in operations(document):
        assert "default" not in operation["responses"], (method, path)
        codes = set(operation["responses"])
        if operation.get("security") and {} not in operation["security"]:
            assert {"401", "403"} <= codes, (method, path)
        if "{" in path:
            assert "404" in codes, (method, path)


def test_every_security_scheme_used_is_declared(document):
    declared = set(document["components"]["securitySchemes"])
    for path, method, operation in operations(document):
        for requirement in operation.get("security", []):
            assert set(requirement) <= declared, (method, path, requirement)
    hotline = document["paths"]["/cases/hotline"]["post"]["security"]
    assert hotline == [{"apiKey": [], "apiTimestamp": [], "apiSignature": []}]


def test_x_pagination_is_a_json_string_header(document, people):
    lists = [(path, method, op) for path, method, op in operations(document)
             if "X-Pagination" in op["responses"].get("200", {}).get("headers", {})]
    assert len(lists) >= 12
    for _, _, operation in lists:
        header = operation["responses"]["200"]["headers"]["X-Pagination"]
        assert header["schema"]["type"] == "string" and "JSON" in header["description"]
    response = people.dispatcher.get("/cases")
    assert json.loads(response.headers["X-Pagination"])["total"] == 0


def test_tile_layers_are_a_pattern_of_known_names(document):
    parameter = next(p for p in document["paths"]["/tiles/{layer}.json"]["get"]["parameters"]
                     if p["name"] == "layer")
    pattern = parameter["schema"]["pattern"]
    assert re.fullmatch(pattern, "buildings,cases") and not re.fullmatch(pattern, "roads")


def test_a_department_made_without_a_kind_reads_back_as_the_document_says(document, client,
                                                                         auth_headers, tree):
    headers = auth_headers("admin", "district_admin")
    made = client.post("/departments", json={"code": "T-MZ", "name": "民政办",
                                             "service_area_id": tree["330183"]},
                       headers=headers)
    assert made.status_code == 201, made.get_json()
    listed = client.get("/departments?page_size=100", headers=headers).get_json()
    kinds = [d["kind"] for d in listed if d["code"] == "T-MZ"]
    assert kinds == ["其他"]

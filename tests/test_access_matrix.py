"""The access matrix: every operation of the OpenAPI document that takes a path parameter,
called on records planted in grid A (tests/fixtures/planted.py) by actors who must not
reach them — a worker of grid B, the dispatcher of another street, a handler of another
department, a resident who did not report the case, the staff of another community, and
anonymous callers.

An operation fails the matrix (named with the actor, the status and what leaked) when
- a 2xx answer carries planted data (one of the planted records' markers: names, notes,
  codes, the photo's sha256, usernames — tests/fixtures/planted.py);
- a write (POST/PUT/PATCH/DELETE) answers 2xx, or changes a row whatever it answers;
- it answers anything but 401/403/404 and that answer differs from the one for an id that
  does not exist (a 409/412/422/428 for a record the actor may not see tells it exists: the
  engine's order is 404 out of scope → 403 → 428 → 412 → 409 → 422);
- it answers 5xx.

New operations join by themselves: the operations come from the document, path parameters
from PATH_VALUES (by name) and bodies from the request schema (BODY_FIELDS fills what an
example value cannot). A parameter without a value fails the test by name: plant one.

One planting for the whole matrix; each call runs in a savepoint that is rolled back.
"""

from __future__ import annotations

import json
import math
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlencode

import pytest
import sqlalchemy as sa

from grid.cases.workflow import TRANSITIONS
from grid.services.service import ACTIONS as BOOKING_ACTIONS
from server import db
from tests.fixtures.planted import Planted, plant
from tests.grid.areas.conftest import G111
from tests.grid.registry.conftest import at

WRITES = {"post", "put", "patch", "delete"}
MISSING_ID = 987654321

# Operations whose answers are public by design, with the reason: their 2xx answers are not
# leaks for any actor of the matrix (writes are still checked).
PUBLIC: dict[str, str] = {
    "GET /areas/by-code/{code}": "area names and boundaries are public (网格公示, area:read "
                                 "for every role; MAP_PUBLIC_AREAS)",
    "GET /areas/{area_id}": "the same area record as by code",
    "GET /areas/{area_id}/children": "the area tree is public",
    "GET /areas/{area_id}/export.geojson": "area boundaries are public (MAP_PUBLIC_AREAS)",
    "GET /tiles/{layer}.json": "TileJSON describes a layer, not records",
    "GET /case-categories/{category_id}": "case categories are reference data of the district",
}
# Planted data public to every logged-in actor: marker → reason (not a leak in a 2xx).
PUBLIC_MARKERS: dict[str, str] = {
    "service": "the service catalogue (办事指南) is public to every logged-in user "
               "(GET /services?everywhere=true; README, Resident services)",
}
# Records every logged-in actor may see, by path parameter: an answer about them other
# than 401/403/404 (a 409 "this service takes no requests") tells nothing new.
PUBLIC_RECORDS: dict[str, str] = {
    "service_id": PUBLIC_MARKERS["service"],
    "slot_id": "a public service's slots and places (GET /services/{id}/slots)",
    "area_id": "areas are public (area:read for every role)",
    "code": "areas are public (area:read for every role)",
    "category_id": "case categories are reference data",
}
# The platform administrator manages users, areas and the platform; it holds neither
# case:read nor registry:read nor service rights, so it is an outsider on these paths only.
ADMIN_OUTSIDE = ("/cases", "/persons", "/households", "/houses", "/buildings",
                 "/organisations", "/visits", "/bookings", "/services", "/slots",
                 "/broadcasts", "/me/", "/attachments")

# ======================================================================================
# KNOWN_LEAKS_BEING_FIXED: leaks this matrix finds on today's code that other branches are
# fixing in parallel. (operation, actor) → branch. The lead empties it after merging them;
# an entry that no longer leaks fails the test (so the list only ever shrinks).
# ======================================================================================
KNOWN_LEAKS_BEING_FIXED: dict[tuple[str, str], str] = {
    # "Me too" is a key to any open case (issue 14).
    ("POST /cases/{case_id}/join", "worker_of_grid_b"): "cases",
    ("POST /cases/{case_id}/join", "dispatcher_of_street_t"): "cases",
    ("POST /cases/{case_id}/join", "resident_not_reporter"): "cases",
    ("POST /cases/{case_id}/join", "staff_of_community_y"): "cases",
    # Admin reads every case although the role table gives it no case:read.
    ("GET /cases/{case_id}", "platform_admin"): "cases",
    ("GET /cases/{case_id}/timeline", "platform_admin"): "cases",
    ("POST /cases/{case_id}/follow", "platform_admin"): "cases",
    ("POST /cases/{case_id}/actions/{action}", "platform_admin"): "cases",
    # The attachment link leak: an own photo linked to a record the actor cannot see.
    ("POST /attachments/{attachment_id}/link", "platform_admin"): "platform",
    # A district admin grants anything to anyone (any district's users).
    ("PATCH /users/{user_id}", "district_admin_elsewhere"): "auth",
    # Not owned by any branch this session (see the report): user reads are not scoped to
    # the district admin's district; case categories and API clients are platform-wide
    # yet any district admin changes them.
    ("GET /users/{user_id}", "district_admin_elsewhere"): "unowned",
    ("PATCH /case-categories/{category_id}", "district_admin_elsewhere"): "unowned",
    ("POST /api-clients/{client_id}/disable", "district_admin_elsewhere"): "unowned",
}

# Path parameter name → the planted value(s), given the planted records and the path.
# A parameter not named here (nor in Planted.ids) fails the test: plant a record for it.
RECORD_IDS = {"buildings": "building_id", "houses": "house_id", "households": "household_id",
              "persons": "person_id", "organisations": "org_id"}


def _tile(z: int = 16) -> dict[str, int]:
    point = at(G111)
    n = 2 ** z
    lat = math.radians(point["lat"])
    return {"z": z, "x": int((point["lon"] + 180) / 360 * n),
            "y": int((1 - math.asinh(math.tan(lat)) / math.pi) / 2 * n)}


class Own:
    """A path value that is the calling actor's own record (their own unlinked photo)."""

    def __init__(self, kind: str) -> None:
        self.kind = kind

    def __repr__(self) -> str:
        return f"<own {self.kind}>"


PATH_VALUES: dict[str, Callable[[Planted, str], list]] = {
    "attachment_id": lambda p, path: [p.ids["attachment_id"]] + (
        [Own("own_photos")] if path.endswith("/link") else []),
    "record_id": lambda p, path: [p.ids[RECORD_IDS[path.split("/")[1]]]],
    "action": lambda p, path: ([t.action for t in TRANSITIONS] if path.startswith("/cases")
                               else list(BOOKING_ACTIONS)),
    "layer": lambda p, path: ["areas", "buildings", "cases", "organisations"],
    "z": lambda p, path: [_tile()["z"]],
    "x": lambda p, path: [_tile()["x"]],
    "y": lambda p, path: [_tile()["y"]],
}

# Request bodies: values an example cannot give (by property name), so that a write would
# succeed if the actor were allowed to make it.
BODY_FIELDS: dict[str, Callable[[Planted], object]] = {
    "location": lambda p: at(G111),
    "department_id": lambda p: p.ids["department_id"],
    "object_type": lambda p: "case",
    "object_id": lambda p: p.ids["case_id"],
    "household_id": lambda p: p.ids["household_id"],
    "person_id": lambda p: p.ids["person_id"],
    "user_id": lambda p: p.ids["user_id"],
    "area_id": lambda p: p.ids["area_id"],
    "parent_id": lambda p: p.extra["street_t"],
    "slot_id": lambda p: p.ids["slot_id"],
    "purpose": lambda p: "核实身份：回访上报人",
    "from": lambda p: "2026-01-01",
    "to": lambda p: "2026-12-31",
    "kind": lambda p: "persons",
    "reason": lambda p: "矩阵测试",
    "result": lambda p: "已处理",
    "note": lambda p: "矩阵测试",
    "rating": lambda p: 5,
    "roles": lambda p: ["admin"],
    "active": lambda p: False,
    "tag": lambda p: "disabled",
    "status": lambda p: "deceased",
    "interval_days": lambda p: 7,
    "following": lambda p: True,
    "extension_hours": lambda p: 24,
    "follow_up_done": lambda p: True,
    "employees": lambda p: 1,
    "windows": lambda p: [{"start": "09:00", "end": "17:00"}],
}
# Operations whose body names a record of several kinds: one call per kind.
LINKABLE = {"case": "case_id", "visit": "visit_id", "person": "person_id",
            "household": "household_id", "house": "house_id", "building": "building_id",
            "organisation": "org_id"}
BODY_VARIANTS: dict[str, Callable[[Planted], list[dict]]] = {
    "POST /attachments/{attachment_id}/link": lambda p: [
        {"object_type": kind, "object_id": p.ids[param]} for kind, param in LINKABLE.items()],
}
QUERY_VARIANTS: dict[str, Callable[[Planted], list[dict]]] = {
    "GET /attachments": BODY_VARIANTS["POST /attachments/{attachment_id}/link"],
}
# Tables whose rows change as a side effect of any call (sessions, rate limits, the audit
# trail of refusals): not evidence of a write.
UNWATCHED = {"audit_log", "rate_limit_buckets", "auth_sessions", "refresh_tokens"}
# The table of a resource's version, by the first segment of its path.
VERSIONED = {"cases": "cases", "bookings": "service_bookings", "visits": "visits",
             "persons": "persons", "houses": "houses", "households": "households",
             "organisations": "organisations", "buildings": "buildings",
             "services": "services", "areas": "areas", "users": "users",
             "case-categories": "case_categories"}


@dataclass(frozen=True)
class Call:
    operation: str  # "POST /cases/{case_id}/actions/{action}"
    method: str
    path_values: dict
    body: dict | None
    query: tuple = ()

    def url(self, planted: Planted, actor: str, missing: bool = False) -> str:
        """The URL as `actor` calls it; `missing`: every integer id one that does not
        exist."""
        url = self.operation.split(" ", 1)[1]
        for name, value in self.path_values.items():
            if isinstance(value, Own):
                value = planted.extra[value.kind].get(actor, planted.ids[name])
            if missing and isinstance(value, int) and name not in ("z", "x", "y"):
                value = MISSING_ID
            url = url.replace("{" + name + "}", str(value))
        if self.query:
            query = dict(self.query)
            if missing:
                query = {k: (MISSING_ID if k.endswith("_id") else v) for k, v in query.items()}
            url += "?" + urlencode(query)
        return url

    def concerns_public_records(self) -> bool:
        return all(name in PUBLIC_RECORDS or not isinstance(value, (int, Own))
                   for name, value in self.path_values.items())


def _resolve(doc: dict, schema: dict) -> dict:
    while "$ref" in schema:
        schema = doc["components"]["schemas"][schema["$ref"].split("/")[-1]]
    if "allOf" in schema:
        merged: dict = {"properties": {}, "required": []}
        for part in schema["allOf"]:
            part = _resolve(doc, part)
            merged["properties"].update(part.get("properties", {}))
            merged["required"] += part.get("required", [])
        return merged
    return schema


def example(doc: dict, schema: dict, planted: Planted, name: str = "", depth: int = 0):
    """A plausible value for a schema: BODY_FIELDS by name, else the documented example,
    else the first enum value, else one of the type."""
    if name in BODY_FIELDS:
        return BODY_FIELDS[name](planted)
    schema = _resolve(doc, schema)
    if "example" in schema:
        return schema["example"]
    if schema.get("enum"):
        return schema["enum"][0]
    kind = schema.get("type")
    kind = next((k for k in kind if k != "null"), None) if isinstance(kind, list) else kind
    if kind == "object" or "properties" in schema:
        if depth > 3:
            return {}
        return {key: example(doc, sub, planted, key, depth + 1)
                for key, sub in schema.get("properties", {}).items()
                if key in schema.get("required", []) and not sub.get("readOnly")}
    if kind == "array":
        items = example(doc, schema.get("items", {}), planted, "", depth + 1)
        return [items] * max(1, schema.get("minItems", 0))
    if kind == "integer":
        return max(1, schema.get("minimum", 1))
    if kind == "number":
        return max(1.0, schema.get("minimum", 1.0))
    if kind == "boolean":
        return True
    return {"date": "2026-03-01", "date-time": "2026-03-01T09:30:00+08:00",
            "uuid": str(uuid.uuid4()), "time": "09:00"}.get(schema.get("format"), "矩阵测试")


def _body(doc: dict, operation: dict, planted: Planted, version: int | None) -> dict | None:
    content = operation.get("requestBody", {}).get("content", {})
    if "application/json" not in content:
        return None
    schema = _resolve(doc, content["application/json"]["schema"])
    body = example(doc, schema, planted)
    if "version" in schema.get("properties", {}) and version is not None:
        body["version"] = version
    return body


def _version(s, path: str, values: dict) -> int | None:
    table = VERSIONED.get(path.split("/")[1])
    first = next(iter(values.values()), None)
    if table is None or not isinstance(first, int):
        return None
    return s.scalar(sa.text(f"SELECT version FROM {table} WHERE id = :id"), {"id": first})


def operations(doc: dict, with_path_parameters: bool = True
               ) -> list[tuple[str, str, dict, list[str]]]:
    """(method, path, operation, path parameter names) of every operation with a path
    parameter or a required query parameter naming a record (…_id); of every operation
    with `with_path_parameters=False`."""
    found = []
    for path, item in doc["paths"].items():
        for method, operation in item.items():
            if method not in WRITES | {"get"}:
                continue
            names = [p["name"] for p in operation.get("parameters", []) + item.get(
                "parameters", []) if p.get("in") == "path"]
            required = [p["name"] for p in operation.get("parameters", [])
                        if p.get("in") == "query" and p.get("required")]
            if names or any(name.endswith("_id") for name in required) \
                    or not with_path_parameters:
                found.append((method, path, operation, names))
    return found


def plan(doc: dict, planted: Planted, s) -> tuple[list[Call], list[str]]:
    """The calls of the matrix, and the path parameters nothing is planted for."""
    calls, missing = [], []
    for method, path, operation, names in operations(doc):
        choices = []
        for name in names:
            if name in PATH_VALUES:
                choices.append((name, PATH_VALUES[name](planted, path)))
            elif name in planted.ids:
                choices.append((name, [planted.ids[name]]))
            else:
                missing.append(f"{name} (in {method.upper()} {path})")
        if len(choices) != len(names):
            continue
        combos: list[dict] = [{}]
        for name, values in choices:
            combos = [{**c, name: v} for c in combos for v in values]
        label = f"{method.upper()} {path}"
        for values in combos:
            version = _version(s, path, values)
            bodies = BODY_VARIANTS[label](planted) if label in BODY_VARIANTS else \
                [_body(doc, operation, planted, version)]
            for query in _queries(doc, label, operation, planted):
                calls += [Call(label, method, values, body, query) for body in bodies]
    return calls, missing


def _queries(doc: dict, label: str, operation: dict, planted: Planted) -> list[tuple]:
    """The required query parameters, filled as bodies are (QUERY_VARIANTS first)."""
    if label in QUERY_VARIANTS:
        return [tuple(q.items()) for q in QUERY_VARIANTS[label](planted)]
    query = {p["name"]: example(doc, p.get("schema", {}), planted, p["name"])
             for p in operation.get("parameters", [])
             if p.get("in") == "query" and p.get("required")}
    return [tuple(query.items())]


def _fingerprint(connection) -> dict[str, str]:
    """A digest of every watched table's rows, as this transaction sees them."""
    parts = []
    for table in db.Base.metadata.sorted_tables:
        if table.name in UNWATCHED:
            continue
        parts.append(f"SELECT '{table.name}' AS t, md5(coalesce(string_agg(x::text, ',' "
                     f"ORDER BY x::text), '')) FROM {table.name} x")
    return dict(connection.execute(sa.text(" UNION ALL ".join(parts))).all())


def _send(client, call: Call, headers: dict, url: str):
    kwargs = {"headers": headers}
    if call.body is not None:
        kwargs["data"] = json.dumps(call.body)
        kwargs["content_type"] = "application/json"
    return getattr(client, call.method)(url, **kwargs)


def _leaked(response, markers: dict[str, str]) -> list[str]:
    data = response.get_data()
    return sorted(name for name, text in markers.items() if text and str(text).encode() in data)


def _applies(call: Call, actor: str) -> bool:
    path = call.operation.split(" ", 1)[1]
    return actor != "platform_admin" or path.startswith(ADMIN_OUTSIDE)


@pytest.mark.timeout(600)
def test_outsiders_get_nothing_of_a_planted_grid(app, client, db_session, make_user, login):
    doc = client.get("/api/openapi.json").get_json()
    planted = plant(db_session, client, make_user, login)
    db.session.remove()
    calls, missing = plan(doc, planted, db_session)
    assert not missing, ("path parameters without a planted value (plant a record for them "
                         f"in tests/fixtures/planted.py): {missing}")

    connection = db_session.get_bind()
    assert isinstance(connection, sa.Connection)
    unread = _unread_by_insiders(client, calls, planted)
    assert not unread, ("the planted value reaches nobody, so the matrix proves nothing for "
                        f"these reads (fix the planting or list them in UNREADABLE): {unread}")
    before = _fingerprint(connection)
    failures: dict[tuple[str, str], str] = {}
    for call in calls:
        for actor, api in planted.outsiders.items():
            if not _applies(call, actor):
                continue
            headers = {"Accept-Encoding": "identity", **(api.headers if api else {})}
            savepoint = connection.begin_nested()
            try:
                url = call.url(planted, actor)
                response = _send(client, call, headers, url)
                problem = _judge(call, actor, response, planted)
                if problem is None and call.method in WRITES:
                    changed = [t for t, digest in _fingerprint(connection).items()
                               if before[t] != digest]
                    if changed:
                        problem = f"{response.status_code}, changed rows of {changed}"
                if problem is None and response.status_code not in (401, 403, 404) \
                        and response.status_code < 500 \
                        and not 200 <= response.status_code < 300 \
                        and not (api is not None and call.concerns_public_records()):
                    db.session.remove()
                    again = _send(client, call, headers, call.url(planted, actor, missing=True))
                    if again.status_code != response.status_code:
                        problem = (f"{response.status_code} (a missing id answers "
                                   f"{again.status_code}): tells the record exists")
            finally:
                db.session.remove()
                if savepoint.is_active:
                    savepoint.rollback()
            if problem is not None:
                failures.setdefault((call.operation, actor), f"{url}: {problem}")

    unexpected = {key: why for key, why in failures.items()
                  if key not in KNOWN_LEAKS_BEING_FIXED}
    fixed = sorted(set(KNOWN_LEAKS_BEING_FIXED) - set(failures))
    report = "\n".join(f"  {op} as {actor}: {why}"
                       for (op, actor), why in sorted(unexpected.items()))
    assert not unexpected, f"{len(unexpected)} leaks:\n{report}"
    assert not fixed, f"no longer leaking, remove from KNOWN_LEAKS_BEING_FIXED: {fixed}"


# Reads no insider gets a 2xx for, with the reason (the control below).
UNREADABLE: dict[str, str] = {}


def _unread_by_insiders(client, calls: list[Call], planted: Planted) -> list[str]:
    """The control of the matrix: every read answers 2xx to at least one of the people who
    planted the records (else a 404 to outsiders would prove nothing)."""
    answered: dict[str, bool] = {}
    for call in calls:
        if call.method != "get" or answered.get(call.operation):
            continue
        answered.setdefault(call.operation, False)
        for api in planted.insiders.values():
            response = _send(client, call, {**api.headers}, call.url(planted, "insider"))
            db.session.remove()
            if 200 <= response.status_code < 300:
                answered[call.operation] = True
                break
    return sorted(op for op, ok in answered.items() if not ok and op not in UNREADABLE)


def _judge(call: Call, actor: str, response, planted: Planted) -> str | None:
    status = response.status_code
    if status >= 500:
        return f"{status} server error"
    if not 200 <= status < 300:
        return None
    if call.method in WRITES:
        return f"{status}: a write succeeded"
    if call.operation in PUBLIC:
        return None
    markers = planted.markers if actor == "anonymous" else {
        name: text for name, text in planted.markers.items() if name not in PUBLIC_MARKERS}
    leaked = _leaked(response, markers)
    return f"{status} carrying {leaked}" if leaked else None

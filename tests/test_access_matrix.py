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
example value cannot; both in tests/fixtures/openapi_calls.py). A parameter without a value
fails the test by name: plant one. A control proves the planted values are real: every read
answers 2xx to at least one of the people who planted the records.

One planting for the whole matrix; each call runs in a savepoint that is rolled back.
"""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from server import db
from tests.fixtures.openapi_calls import WRITES, Call, Own, fingerprint, plan, send
from tests.fixtures.planted import Planted, plant

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
    # Also public, yet carrying no planted marker so not listed: the 网格公示 card
    # (GET /areas/{area_id}/card, worker display names and masked phones) and the areas
    # tile layer. Open311 (/open311/v2) is not in the document: tests/grid/open311.
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
# KNOWN_LEAKS_BEING_FIXED: leaks found and not fixed yet, (operation, actor) → who fixes
# them. Empty since the hardening round (issue 14); an entry that no longer leaks fails the
# test, so the list can only shrink.
# ======================================================================================
KNOWN_LEAKS_BEING_FIXED: dict[tuple[str, str], str] = {}


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
    unread = _unread_by_insiders(client, calls, planted, connection)
    assert not unread, ("the planted value reaches nobody, so the matrix proves nothing for "
                        f"these reads (fix the planting or list them in UNREADABLE): {unread}")
    before = fingerprint(connection)
    failures: dict[tuple[str, str], str] = {}
    for call in calls:
        for actor, api in planted.outsiders.items():
            if not _applies(call, actor):
                continue
            headers = {"Accept-Encoding": "identity", **(api.headers if api else {})}
            savepoint = connection.begin_nested()
            try:
                url = call.url(planted, actor)
                response = send(client, call, headers, url)
                problem = _judge(call, actor, response, planted)
                if problem is None and call.method in WRITES:
                    changed = [t for t, digest in fingerprint(connection).items()
                               if before[t] != digest]
                    if changed:
                        problem = f"{response.status_code}, changed rows of {changed}"
                if problem is None and response.status_code not in (401, 403, 404) \
                        and response.status_code < 500 \
                        and not 200 <= response.status_code < 300 \
                        and not (api is not None and _about_public_records(call)):
                    db.session.remove()
                    again = send(client, call, headers, call.url(planted, actor, missing=True))
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
UNREADABLE: dict[str, str] = {
    "GET /cases/likely-duplicates": (
        "also needs a point (near=), which the matrix does not fill; it answers the resident "
        "view only, by design to anyone who may report (tests/grid/cases/test_resident_view.py)"),
    "GET /exchange/hotline/tickets/{ticket_no}": (
        "signed by a hotline key, not a token: every actor here is a 401 "
        "(tests/grid/exchange/test_hotline_results.py)"),
}


def _unread_by_insiders(client, calls: list[Call], planted: Planted,
                        connection: sa.Connection) -> list[str]:
    """The control of the matrix: every read answers 2xx to at least one of the people who
    planted the records (else a 404 to outsiders would prove nothing). In savepoints too:
    a reveal's audit row must not stay."""
    answered: dict[str, bool] = {}
    for call in calls:
        if call.method != "get" or answered.get(call.operation):
            continue
        answered.setdefault(call.operation, False)
        for api in planted.insiders.values():
            savepoint = connection.begin_nested()
            try:
                response = send(client, call, {**api.headers}, call.url(planted, "insider"))
            finally:
                db.session.remove()
                if savepoint.is_active:
                    savepoint.rollback()
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


def _about_public_records(call: Call) -> bool:
    return all(name in PUBLIC_RECORDS or not isinstance(value, (int, Own))
               for name, value in call.path_values.items())

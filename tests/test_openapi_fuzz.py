"""schemathesis over /api/openapi.json, in-process (WSGI), authenticated as an administrator.

Every operation of the document is fuzzed (schemathesis' examples, coverage and fuzzing
phases; positive and negative inputs; a bounded number of cases per operation, derandomized
from a fixed seed so that CI repeats the same cases) and every response is checked:

- no 5xx (`not_a_server_error`);
- the body matches the schema documented for its status, errors included: every operation
  documents `default` as the one error shape (`response_schema_conformance`);
- `status_code_conformance`, which alone proves little here (`default` documents every
  status), so `documented_outcome` below adds what it cannot: a success status must be
  documented explicitly, and an error's `code` is its HTTP status.

The whole run happens inside the per-test transaction of tests/conftest.py, and each case
also in a savepoint of its own that is rolled back after the case: a case never sees what an
earlier one wrote (a fuzzed logout would end the admin's session, fuzzed logins would use up
the per-IP login limit, a fuzzed PATCH could disable the admin). The last test checks, from a
connection of its own, that nothing the fuzzed requests wrote was committed.
"""

from __future__ import annotations

from collections import Counter, defaultdict

import pytest
import schemathesis
import sqlalchemy as sa
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    response_schema_conformance,
    status_code_conformance,
)

from server import db
from tests.conftest import assert_error_shape

SEED = 20261122
MAX_EXAMPLES = 20  # per operation in the fuzzing phase (the other phases are bounded by design)

CONFIG = schemathesis.Config.from_dict({
    "seed": SEED,
    "generation": {
        "max-examples": MAX_EXAMPLES,
        "deterministic": True,  # derandomized: the same cases on every run
        "database": "none",  # no example database: nothing carried over between runs
    },
})

# (method path, status) of every request sent, in order: the assertions that make the run
# meaningful read it.
_sent: list[tuple[str, int]] = []
_operations: set[str] = set()


def documented_outcome(ctx, response, case) -> None:
    """What `status_code_conformance` cannot see behind `default`."""
    status = response.status_code
    if status >= 400:
        body = response.json()
        assert body.get("code") == status, f"error body {body} does not carry code {status}"
    elif case.method.upper() == case.operation.method.upper():
        # (The coverage phase also tries undocumented methods: OPTIONS answers 200.)
        documented = {str(code) for code in case.operation.responses.status_codes}
        assert str(status) in documented, (
            f"{case.operation.label} answered {status}, documented: {sorted(documented)}"
        )


CHECKS = [not_a_server_error, response_schema_conformance, status_code_conformance,
          documented_outcome]


def _committed_counts(engine: sa.Engine) -> dict[str, int]:
    """Row counts of every table of ours as a connection of its own sees them: only what was
    really committed."""
    with engine.connect() as conn:
        return {table.name: conn.scalar(sa.select(sa.func.count()).select_from(table))
                for table in db.Base.metadata.sorted_tables}


@pytest.fixture(scope="module")
def counts_before(app) -> dict[str, int]:
    return _committed_counts(app.extensions["db_engine"])


@pytest.fixture
def api_schema(app, counts_before):
    return schemathesis.openapi.from_wsgi("/api/openapi.json", app, config=CONFIG)


@pytest.fixture
def target_user(make_user) -> int:
    """An account for /users/{user_id}: random ids would only ever find nobody (404)."""
    return make_user("grid_worker", username="fuzztarget").id


@pytest.fixture
def admin_headers(make_user, login, target_user) -> dict[str, str]:
    """An administrator logged in through the API. Its rows (and the target user's) are
    committed into the test's transaction (released savepoints) before any case opens its own
    savepoint, so rolling a case back keeps them and the admin's session."""
    # admin + district_admin: every permission, so register, visit and sync operations are
    # exercised past their permission checks too (an admin alone may not read personal data).
    admin = make_user("admin", "district_admin", username="fuzzadmin")
    tokens = login(admin.username)  # its unit of work commits the session: all released
    db.session.remove()
    # identity: schemathesis' WSGI transport reads bodies as sent, without undoing gzip
    # (tests/server/test_compress.py covers compression)
    return {"Authorization": f"Bearer {tokens['access_token']}", "Accept-Encoding": "identity"}


@pytest.fixture
def run_case(db_session, admin_headers, target_user):
    """Call one case as the admin in a savepoint of the test's connection, then roll it back."""
    connection = db_session.get_bind()
    assert isinstance(connection, sa.Connection)
    int_ids: Counter[str] = Counter()

    def run(case) -> None:
        path_parameters = case.path_parameters or {}
        if isinstance(path_parameters.get("user_id"), int):
            # Every other well-formed id (deterministically) names an account that exists.
            int_ids[case.operation.label] += 1
            if int_ids[case.operation.label] % 2:
                path_parameters["user_id"] = target_user
        savepoint = connection.begin_nested()
        try:
            response = case.call(headers=admin_headers)
            _operations.add(case.operation.label)
            _sent.append((f"{case.method.upper()} {case.operation.path}", response.status_code))
            case.validate_response(response, checks=CHECKS, headers=admin_headers)
        finally:
            db.session.remove()  # the app's session first: its savepoint is the inner one
            if savepoint.is_active:
                savepoint.rollback()

    return run


schema = schemathesis.pytest.from_fixture("api_schema")


# Every operation runs inside this one test item: ~2 min on a quiet machine, past the
# suite's 300 s timeout when other work shares the two cores.
@pytest.mark.timeout(900)
@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    derandomize=True,
    database=None,
    deadline=None,
    # Function-scoped fixtures are the point: every case runs in the test's transaction.
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                           HealthCheck.filter_too_much],
)
def test_api_conforms_to_its_openapi_document(case, run_case):
    run_case(case)


def test_the_fuzzing_was_authenticated_and_isolated():
    """The admin's token worked all along: operations that need it answered 2xx, including
    after a fuzzed POST /auth/logout had ended that very session (undone by the case's
    rollback)."""
    if not _sent:
        pytest.skip("the fuzzing test did not run (deselected)")
    seen: dict[str, Counter] = defaultdict(Counter)
    for request, status in _sent:
        seen[request][status] += 1
    for request in ("GET /me", "GET /users", "GET /users/{user_id}", "GET /audit"):
        assert seen[request][200], (request, dict(seen[request]))
    first_logout = _sent.index(("POST /auth/logout", 204))
    assert ("GET /me", 200) in _sent[first_logout:], "nothing authenticated after a logout"
    # Bounded, yet not trivially small: at least ten requests per operation on average.
    as_documented = sum(sum(seen[op].values()) for op in _operations)
    assert as_documented >= 10 * len(_operations), {op: dict(seen[op]) for op in _operations}


def test_fuzzing_left_no_committed_rows(app, counts_before):
    """Everything the fuzzed requests wrote was rolled back with the test's transaction."""
    assert _committed_counts(app.extensions["db_engine"]) == counts_before


# Inputs found by fuzzing (other seeds, or by hand around what it found) that the fixed seed
# above does not reach: each must be a 4xx in the one error shape, never a 500.
NUL_INPUTS = [
    # (method, url, request kwargs, errors location, field)
    ("post", "/auth/login", {"json": {"login": "a\x00b", "password": "x"}}, "json", "login"),
    ("post", "/users", {"json": {"username": "nul-user", "display_name": "a\x00",
                                 "password": "Nul-pass-12345", "roles": ["grid_worker"]}},
     "json", "display_name"),
    ("get", "/users?q=a%00b", {}, "query", "q"),
    ("get", "/audit?object_id=a%00b", {}, "query", "object_id"),
    ("get", "/api/docs/assets/a%00b", {}, "path", "filename"),
    ("post", "/auth/login", {"json": {"login": "a", "password": "x"},
                             "headers": {"User-Agent": "phone\x00"}}, "headers", "User-Agent"),
    ("post", "/auth/login", {"data": {"login": "a\x00b"}}, "form", "login"),
]


@pytest.mark.parametrize(("method", "url", "kwargs", "location", "field"), NUL_INPUTS)
def test_nul_characters_are_a_422_not_a_500(client, auth_headers, method, url, kwargs,
                                            location, field):
    """PostgreSQL text cannot hold NUL: psycopg2 raised ValueError, a 500, on each of these
    (but the docs asset, a 404) before server.app rejected NUL in any input."""
    extra = {k: v for k, v in kwargs.items() if k != "headers"}
    headers = {**auth_headers("admin"), **kwargs.get("headers", {})}
    response = getattr(client, method)(url, headers=headers, **extra)
    body = assert_error_shape(response, 422)
    assert field in body["errors"][location], body


def test_an_escaped_backslash_u0000_is_not_a_nul(client):
    """The six characters \\u0000 (JSON "\\\\u0000") are ordinary text."""
    response = client.post("/auth/login", json={"login": "\\u0000", "password": "x"})
    assert_error_shape(response, 401)


@pytest.mark.parametrize("url", ["/users", "/audit"])
def test_a_page_far_beyond_the_last_is_not_a_500(client, auth_headers, url):
    response = client.get(f"{url}?page=99999999999999999999", headers=auth_headers("admin"))
    assert response.status_code in (200, 422), response.get_data(as_text=True)


@pytest.mark.parametrize("bound", ["since", "until"])
def test_a_time_offset_postgresql_cannot_hold_is_not_a_500(client, auth_headers, bound):
    response = client.get(f"/audit?{bound}=1965-03-31T12:37:04-17:36",
                          headers=auth_headers("admin"))
    assert response.status_code in (200, 422), response.get_data(as_text=True)

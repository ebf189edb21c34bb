"""schemathesis over /api/openapi.json, in-process (WSGI): the document tells the truth.

Every operation of the document is fuzzed (schemathesis' examples, coverage and fuzzing
phases; positive and negative inputs; a bounded number of cases per operation, derandomized
from a fixed seed so that CI repeats the same cases) as three callers — anonymous, an
administrator (admin + district_admin) and a street dispatcher of one street — and every
response goes through ALL of schemathesis' checks (`ALL_CHECKS`: server errors, response
schema, headers and content-type conformance, documented status codes, positive data
accepted, negative data rejected, missing headers and missing auth rejected, unsupported
methods, Allow headers…) plus `documented_outcome` below. A stateful run then follows the
OpenAPI links the document declares (report a case → read it → act on it; register a
building → read → change it).

Zero failures: what the checks find that is not a lie of the document but a rule JSON Schema
cannot spell is listed ONCE, in `EXCEPTIONS`, with its reason; everything else fails the test
with a summary of every failure (not only the first).

The whole run happens inside the per-test transaction of tests/conftest.py, and each case
also in a savepoint of its own that is rolled back after the case: a case never sees what an
earlier one wrote (a fuzzed logout would end the caller's session, fuzzed logins would use up
the per-IP login limit, a fuzzed PATCH could disable the admin). The last test checks, from a
connection of its own, that nothing the fuzzed requests wrote was committed.

Time (2 cores shared with 7 other suites at the time of writing): see README "Tests".
"""

from __future__ import annotations

from collections import Counter, defaultdict

import pytest
import schemathesis
import sqlalchemy as sa
from hypothesis import HealthCheck, settings
from schemathesis.checks import CHECKS, load_all_checks

from server import db
from tests.conftest import assert_error_shape
from tests.grid.areas import conftest as areas_conftest
from tests.grid.areas.conftest import S1

# The area tree of tests/grid/areas, its members (committed make_user).
tree = areas_conftest.tree
member = areas_conftest.member
make_user = areas_conftest.make_user

SEED = 20261122
MAX_EXAMPLES = 8  # per operation in the fuzzing phase (the other phases are bounded by design)

CONFIG = schemathesis.Config.from_dict({
    "seed": SEED,
    "generation": {
        "max-examples": MAX_EXAMPLES,
        "deterministic": True,  # derandomized: the same cases on every run
        "database": "none",  # no example database: nothing carried over between runs
        "allow-x00": False,  # NUL is refused in every string (documented in info)
    },
})

load_all_checks()
ALL_CHECKS = [check for check in CHECKS.get_all() if callable(check)]

# (actor, method path, status) of every request sent, in order: the assertions that make
# the run meaningful read it; and every failure found, to report them all at once.
_sent: list[tuple[str, str, int]] = []
_operations: set[str] = set()
_failures: list[tuple[str, str, str, int, str]] = []

# What the checks report that is not a lie of the document, in ONE place:
# (failure kind, operation or "*", actor or "*") → reason.
EXCEPTIONS: dict[tuple[str, str, str], str] = {}


def documented_outcome(ctx, response, case) -> None:
    """An error's body carries its own status as `code` (the one error shape)."""
    status = response.status_code
    content_type = {k.lower(): v for k, v in response.headers.items()}.get("content-type", [""])
    if status >= 400 and content_type[0].startswith("application/json"):
        body = response.json()
        assert body.get("code") == status, f"error body {body} does not carry code {status}"


def _excused(kind: str, operation: str, actor: str) -> bool:
    return any(key in EXCEPTIONS for key in ((kind, operation, actor), (kind, operation, "*"),
                                            (kind, "*", actor), (kind, "*", "*")))


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


# identity: schemathesis' WSGI transport reads bodies as sent, without undoing gzip
# (tests/server/test_compress.py covers compression)
_PLAIN = {"Accept-Encoding": "identity"}


def _caller(name: str, make_user, login, member) -> dict[str, str]:
    """Headers of who sends the cases, logged in through the API. Its rows (and the target
    user's) are committed into the test's transaction (released savepoints) before any case
    opens its own savepoint, so rolling a case back keeps them and the caller's session."""
    if name == "anonymous":
        return dict(_PLAIN)
    if name == "admin":
        # admin + district_admin: every permission, so register, visit and sync operations
        # are exercised past their permission checks too.
        admin = make_user("admin", "district_admin", username="fuzzadmin")
        headers = {"Authorization": f"Bearer {login(admin.username)['access_token']}"}
    else:
        headers, _ = member("street_dispatcher", S1)
    db.session.remove()
    return {**headers, **_PLAIN}


@pytest.fixture
def run_as(db_session, make_user, login, member, target_user):
    """run_as(name)(case): call one case as that caller in a savepoint of the test's
    connection, run every check, record what failed, then roll the case back."""
    connection = db_session.get_bind()
    assert isinstance(connection, sa.Connection)
    int_ids: Counter[str] = Counter()
    callers: dict[str, dict[str, str]] = {}

    def run(name: str, case) -> None:
        if name not in callers:
            callers[name] = _caller(name, make_user, login, member)
        headers = callers[name]
        path_parameters = case.path_parameters or {}
        if isinstance(path_parameters.get("user_id"), int):
            # Every other well-formed id (deterministically) names an account that exists.
            int_ids[case.operation.label] += 1
            if int_ids[case.operation.label] % 2:
                path_parameters["user_id"] = target_user
        savepoint = connection.begin_nested()
        try:
            response = case.call(headers=headers)
            _operations.add(case.operation.label)
            _sent.append((name, case.operation.label, response.status_code))
            try:
                case.validate_response(response, checks=ALL_CHECKS,
                                       additional_checks=[documented_outcome], headers=headers)
            except AssertionError as exc:
                for failure in getattr(exc, "exceptions", None) or [exc]:
                    kind = type(failure).__name__
                    if not _excused(kind, case.operation.label, name):
                        message = str(failure).splitlines()
                        _failures.append((name, case.operation.label, kind,
                                          response.status_code, " ".join(message[:4])[:300]))
        finally:
            db.session.remove()  # the app's session first: its savepoint is the inner one
            if savepoint.is_active:
                savepoint.rollback()

    return run


schema = schemathesis.pytest.from_fixture("api_schema")
FUZZ_SETTINGS = settings(
    max_examples=MAX_EXAMPLES,
    derandomize=True,
    database=None,
    deadline=None,
    # Function-scoped fixtures are the point: every case runs in the test's transaction.
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                           HealthCheck.filter_too_much],
)


# Every operation runs inside one test item per caller.
@pytest.mark.timeout(900)
@schema.parametrize()
@FUZZ_SETTINGS
def test_the_document_holds_for_anonymous_callers(case, run_as):
    run_as("anonymous", case)


@pytest.mark.timeout(900)
@schema.parametrize()
@FUZZ_SETTINGS
def test_the_document_holds_for_an_administrator(case, run_as):
    run_as("admin", case)


@pytest.mark.timeout(900)
@schema.parametrize()
@FUZZ_SETTINGS
def test_the_document_holds_for_a_street_dispatcher(case, run_as):
    run_as("dispatcher", case)


def test_no_check_failed():
    """Every failure of every caller and operation, at once (none may be left)."""
    if not _sent:
        pytest.skip("the fuzzing test did not run (deselected)")
    summary: dict[tuple[str, str, str], list] = defaultdict(list)
    for name, operation, kind, status, message in _failures:
        summary[(kind, operation, name)].append((status, message))
    lines = [f"{kind} {operation} as {name}: {len(found)}× e.g. {found[0]}"
             for (kind, operation, name), found in sorted(summary.items())]
    assert not lines, "\n".join(lines)


def test_the_fuzzing_was_authenticated_and_isolated():
    """The callers' tokens worked all along: operations that need them answered 2xx,
    including after a fuzzed POST /auth/logout had ended that very session (undone by the
    case's rollback); anonymous callers got 401 where a token is needed."""
    if not _sent:
        pytest.skip("the fuzzing test did not run (deselected)")
    seen: dict[tuple[str, str], Counter] = defaultdict(Counter)
    for name, request, status in _sent:
        seen[(name, request)][status] += 1
    for request in ("GET /me", "GET /users", "GET /users/{user_id}", "GET /audit"):
        assert seen[("admin", request)][200], (request, dict(seen[("admin", request)]))
    for request in ("GET /me", "GET /cases", "GET /areas"):
        assert seen[("dispatcher", request)][200], (request, dict(seen[("dispatcher", request)]))
        assert seen[("anonymous", request)][401], (request, dict(seen[("anonymous", request)]))
    admin_sent = [(request, status) for name, request, status in _sent if name == "admin"]
    first_logout = admin_sent.index(("POST /auth/logout", 204))
    assert ("GET /me", 200) in admin_sent[first_logout:], "nothing authenticated after a logout"
    # Bounded, yet not trivially small: at least five requests per operation and caller.
    for name in ("anonymous", "admin", "dispatcher"):
        count = sum(1 for who, _, _ in _sent if who == name)
        assert count >= 5 * len(_operations), (name, count, len(_operations))


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

"""The audit trail: rows are written for account events, auditors can read and filter them,
and nobody can change or delete them."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
import sqlalchemy as sa

from server import clock, db
from server.audit import AuditEntry
from tests.conftest import TEST_PASSWORD, assert_error_shape


@pytest.fixture
def make_user(make_user, db_session):
    """conftest's make_user only flushes, so a later request whose unit of work rolls back
    would take the new account with it (tests share the app's session). Committing here
    releases just the test's savepoint: the outer transaction is still rolled back."""

    def _make(*roles, **kwargs):
        user = make_user(*roles, **kwargs)
        db_session.commit()
        return user

    return _make


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def audit_rows(db_session, **where) -> list[AuditEntry]:
    stmt = sa.select(AuditEntry).filter_by(**where).order_by(AuditEntry.id)
    return list(db_session.scalars(stmt))


def test_account_events_are_audited_with_actor_ip_and_request_id(client, make_user, login,
                                                                 db_session):
    admin = make_user("admin", username="chief-admin")
    headers = bearer(login("chief-admin")["access_token"])

    created = client.post("/users", headers=headers, environ_base={"REMOTE_ADDR": "10.9.8.7"},
                          json={"username": "audited", "display_name": "被审计",
                                "password": "Secret-pass-77", "roles": ["grid_worker"]})
    assert created.status_code == 201, created.get_json()
    user_id = created.get_json()["id"]
    [row] = audit_rows(db_session, action="user_created", object_id=str(user_id))
    assert row.object_type == "user"
    assert row.actor_id == admin.id
    assert row.ip == "10.9.8.7"
    assert row.request_id == created.headers["X-Request-ID"]
    assert row.changes == {"username": "audited", "roles": ["grid_worker"]}
    assert row.at is not None

    failed = client.post("/auth/login", json={"login": "audited", "password": "Wrong-pass-1"})
    assert failed.status_code == 401
    # The failure is recorded even though the request failed (and rolled back the rest).
    [row] = audit_rows(db_session, action="login_failed", object_id=str(user_id))
    assert row.changes == {"failed_logins": 1}
    assert row.request_id == failed.headers["X-Request-ID"]

    ok = client.post("/auth/login", json={"login": "audited", "password": "Secret-pass-77"})
    assert ok.status_code == 200
    [row] = audit_rows(db_session, action="login", object_id=str(user_id))
    assert row.actor_id == user_id

    version = client.get(f"/users/{user_id}", headers=headers).get_json()["version"]
    changed = client.patch(f"/users/{user_id}", headers=headers,
                           json={"roles": ["grid_chief"], "version": version})
    assert changed.status_code == 200, changed.get_json()
    [row] = audit_rows(db_session, action="user_updated", object_id=str(user_id))
    assert row.actor_id == admin.id
    assert row.changes == {"roles": [["grid_worker"], ["grid_chief"]]}


def test_a_refused_change_writes_no_audit_row(client, make_user, login, db_session):
    make_user("admin", username="careful-admin")
    target = make_user("grid_worker", username="untouched")
    headers = bearer(login("careful-admin")["access_token"])
    stale = client.patch(f"/users/{target.id}", headers=headers,
                         json={"roles": ["admin"], "version": target.version + 5})
    assert stale.status_code == 412
    assert audit_rows(db_session, action="user_updated", object_id=str(target.id)) == []


def test_other_account_events_are_audited(app, client, make_user, login, db_session,
                                          monkeypatch):
    user = make_user("grid_worker", username="eventful")
    first = login("eventful")
    second = login("eventful")
    headers = bearer(first["access_token"])
    client.post("/auth/password", headers=headers,
                json={"current_password": TEST_PASSWORD, "new_password": "Brand-new-pass-9"})
    client.post("/auth/refresh", json={"refresh_token": second["refresh_token"]})
    client.post("/auth/refresh", json={"refresh_token": first["refresh_token"]})
    later = clock.now() + timedelta(seconds=app.config["REFRESH_REUSE_GRACE_S"] + 1)
    monkeypatch.setattr(clock, "now", lambda: later)  # past the retry grace window: reuse
    client.post("/auth/refresh", json={"refresh_token": first["refresh_token"]})
    client.post("/auth/logout", headers=headers)
    actions = [r.action for r in audit_rows(db_session, actor_id=user.id)]
    assert actions == ["login", "login", "password_changed", "refresh_token_reused"]
    # Logout of a session already ended by the reuse is a 401, not an audit row.
    assert audit_rows(db_session, action="logout", actor_id=user.id) == []


def test_auditors_read_filter_and_page_the_trail(client, make_user, login, auth_headers):
    for i in range(3):
        make_user("resident", username=f"trail{i}")
        client.post("/auth/login", json={"login": f"trail{i}", "password": TEST_PASSWORD})
        client.post("/auth/login", json={"login": f"trail{i}", "password": "Wrong-pass-1"})
    headers = auth_headers("auditor")

    response = client.get("/audit", headers=headers,
                          query_string={"action": "login_failed", "object_type": "user",
                                        "page_size": 2})
    assert response.status_code == 200, response.get_json()
    rows = response.get_json()
    assert len(rows) == 2
    assert {r["action"] for r in rows} == {"login_failed"}
    assert all(r["object_type"] == "user" for r in rows)
    assert rows[0]["id"] > rows[1]["id"]  # newest first
    pagination = json.loads(response.headers["X-Pagination"])
    assert pagination["total"] == 3
    assert pagination["total_pages"] == 2
    assert pagination["page"] == 1

    last = client.get("/audit", headers=headers,
                      query_string={"action": "login_failed", "page": 2, "page_size": 2})
    assert len(last.get_json()) == 1
    ids = {r["id"] for r in rows} | {r["id"] for r in last.get_json()}
    assert len(ids) == 3

    nothing = client.get("/audit", headers=headers,
                         query_string={"action": "login_failed", "object_type": "case"})
    assert nothing.get_json() == []
    assert json.loads(nothing.headers["X-Pagination"])["total"] == 0

    future = client.get("/audit", headers=headers,
                        query_string={"since": "2999-01-01T00:00:00+08:00"})
    assert future.get_json() == []
    naive = client.get("/audit", headers=headers, query_string={"since": "2026-01-01T00:00:00"})
    assert "since" in assert_error_shape(naive, 422)["errors"]["query"]


def test_only_auditors_and_admins_read_the_trail(client, auth_headers):
    assert client.get("/audit", headers=auth_headers("admin")).status_code == 200
    for role in ("resident", "grid_worker", "street_dispatcher", "district_admin"):
        assert_error_shape(client.get("/audit", headers=auth_headers(role)), 403)
    assert_error_shape(client.get("/audit"), 401)


def test_the_app_role_cannot_update_or_delete_audit_rows(client, make_user, db_session):
    user = make_user("resident", username="appendonly")
    client.post("/auth/login", json={"login": "appendonly", "password": "Wrong-pass-1"})
    [row] = audit_rows(db_session, action="login_failed", object_id=str(user.id))
    before = (row.id, row.action, row.actor_id, row.changes)

    for statement in (
        sa.update(AuditEntry).where(AuditEntry.id == row.id).values(action="nothing_here"),
        sa.delete(AuditEntry).where(AuditEntry.id == row.id),
        sa.text("TRUNCATE audit_log"),
    ):
        refused = (sa.exc.ProgrammingError, sa.exc.InternalError)
        with pytest.raises(refused) as caught, db_session.begin_nested():
            db_session.execute(statement)
        message = str(caught.value.orig)
        assert "permission denied" in message or "append-only" in message, message

    db_session.expire_all()
    [again] = audit_rows(db_session, action="login_failed", object_id=str(user.id))
    assert (again.id, again.action, again.actor_id, again.changes) == before

    # Not even granted (the trigger is the second line of defence).
    privileges = db_session.execute(sa.text(
        "SELECT has_table_privilege(current_user, 'audit_log', 'UPDATE'),"
        "       has_table_privilege(current_user, 'audit_log', 'DELETE'),"
        "       has_table_privilege(current_user, 'audit_log', 'TRUNCATE'),"
        "       has_table_privilege(current_user, 'audit_log', 'INSERT')"
    )).one()
    assert tuple(privileges) == (False, False, False, True)


def test_even_the_owner_role_cannot_rewrite_the_trail(urls):
    """The trigger refuses UPDATE and DELETE for every role, the table's owner included."""
    engine = db.engine_for(urls["MIGRATION_DATABASE_URL"])
    with engine.connect() as conn:
        outer = conn.begin()
        try:
            row_id = conn.execute(sa.text(
                "INSERT INTO audit_log (action, object_type) VALUES ('probe', 'test') "
                "RETURNING id")).scalar_one()
            for statement in (f"UPDATE audit_log SET action = 'x' WHERE id = {row_id}",
                              f"DELETE FROM audit_log WHERE id = {row_id}"):
                nested = conn.begin_nested()
                with pytest.raises(sa.exc.DBAPIError, match="append-only"):
                    conn.execute(sa.text(statement))
                nested.rollback()
        finally:
            outer.rollback()

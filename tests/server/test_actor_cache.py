"""The actor cache (server/auth/actor_cache.py) on committed rows: a second request with the
same token does not load the actor again, and every change that alters the actor — the
session revoked (in another process), the account disabled, a role taken, a membership
given — reaches the next requests as soon as it commits. A rolled-back change forgets
nothing; a lost LISTEN connection turns the cache off instead of serving stale actors.
"""

from __future__ import annotations

import time
import uuid

import pytest
import sqlalchemy as sa

from server import db
from server.auth import service as auth_service
from server.auth.actor import _actor_statement, actor_enrichers, actor_select
from server.auth.actor_cache import ActorCache
from tests.conftest import TEST_PASSWORD


@pytest.fixture
def cache(app, urls, own_session, monkeypatch):
    cache = ActorCache(urls["DATABASE_URL"], seconds=60)
    monkeypatch.setitem(app.extensions, "actor_cache", cache)
    yield cache
    cache.close()


@pytest.fixture
def account(own_session, engine, client):
    """A committed dispatcher, logged in; removed afterwards."""
    name = f"cache{uuid.uuid4().hex[:8]}"
    with db.unit_of_work() as s:
        user = auth_service._new_user(s, name, "缓存测试", None, TEST_PASSWORD,
                                      ["street_dispatcher", "grid_worker"])
        user_id = user.id
    db.session.remove()
    response = client.post("/auth/login", json={"login": name, "password": TEST_PASSWORD})
    assert response.status_code == 200, response.get_json()
    yield user_id, {"Authorization": f"Bearer {response.get_json()['access_token']}"}
    db.session.remove()
    with engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM area_memberships WHERE user_id = :u"), {"u": user_id})
        conn.execute(sa.text("UPDATE users SET is_active = false WHERE id = :u"), {"u": user_id})


@pytest.fixture
def actor_loads(own_session):
    """How many times the actor statement was executed (EXECUTE of its prepared name)."""
    name = _actor_statement(tuple(actor_enrichers)).name
    seen: list[str] = []

    def count(conn, cursor, statement, *args):
        if statement.startswith(f"EXECUTE {name}"):
            seen.append(statement)

    sa.event.listen(own_session, "before_cursor_execute", count)
    yield seen
    sa.event.remove(own_session, "before_cursor_execute", count)


def _me(client, headers):
    response = client.get("/me", headers=headers)
    db.session.remove()
    return response


def _soon(check, timeout_s: float = 5.0) -> float:
    """Seconds until `check()` holds. A NOTIFY reaches the listener when the change commits,
    in well under a millisecond on one host: the bound is generous for a loaded machine."""
    started = time.monotonic()
    while not check():
        assert time.monotonic() - started < timeout_s, "the change never reached the cache"
        time.sleep(0.001)
    return time.monotonic() - started


def _commit(engine, sql: str, **params) -> None:
    """A change made elsewhere (another app process, psql): committed on its own connection."""
    with engine.begin() as conn:
        conn.execute(sa.text(sql), params)


def test_the_second_request_with_a_token_does_not_load_the_actor_again(
        client, cache, account, actor_loads):
    _, headers = account
    assert _me(client, headers).status_code == 200
    assert _me(client, headers).status_code == 200
    assert _me(client, headers).status_code == 200
    assert len(actor_loads) == 1


def test_a_session_revoked_in_another_process_ends_at_the_next_request(
        client, cache, account, engine):
    user_id, headers = account
    assert _me(client, headers).status_code == 200  # cached now
    _commit(engine, "UPDATE auth_sessions SET revoked_at = now() WHERE user_id = :u", u=user_id)
    _soon(lambda: _me(client, headers).status_code == 401)


def test_logout_and_a_disabled_account_end_the_cached_session(client, cache, account, engine):
    user_id, headers = account
    assert _me(client, headers).status_code == 200
    assert client.post("/auth/logout", headers=headers).status_code == 204
    db.session.remove()
    _soon(lambda: _me(client, headers).status_code == 401)

    response = client.post("/auth/login", json={"login": _username(engine, user_id),
                                                "password": TEST_PASSWORD})
    headers = {"Authorization": f"Bearer {response.get_json()['access_token']}"}
    assert _me(client, headers).status_code == 200
    _commit(engine, "UPDATE users SET is_active = false WHERE id = :u", u=user_id)
    _soon(lambda: _me(client, headers).status_code == 401)


def _username(engine, user_id: int) -> str:
    with engine.connect() as conn:
        return conn.scalar(sa.text("SELECT username FROM users WHERE id = :u"), {"u": user_id})


def test_a_role_taken_away_takes_its_permissions_at_the_next_request(
        client, cache, account, engine):
    user_id, headers = account
    assert "case:dispatch" in _me(client, headers).get_json()["permissions"]
    _commit(engine, "DELETE FROM user_roles WHERE user_id = :u AND role = 'street_dispatcher'",
            u=user_id)
    _soon(lambda: "case:dispatch" not in _me(client, headers).get_json()["permissions"])


def test_a_membership_given_is_in_the_scope_of_the_next_request(
        client, cache, account, engine, actor_loads):
    user_id, headers = account
    assert _me(client, headers).status_code == 200
    with engine.begin() as conn:  # a committed area of its own (the suite's are rolled back)
        area_id = conn.scalar(sa.text(
            "INSERT INTO areas (code, name, level, path, version) "
            "SELECT :code, '缓存测试区', key, '', 1 "
            "FROM area_levels ORDER BY key LIMIT 1 RETURNING id"),
            {"code": f"99{uuid.uuid4().int % 10**10:010d}"})
        conn.execute(sa.text("UPDATE areas SET path = id || '.' WHERE id = :a"), {"a": area_id})
    try:
        _commit(engine, "INSERT INTO area_memberships (user_id, area_id, role) "
                        "VALUES (:u, :a, 'grid_worker')", u=user_id, a=area_id)
        session_id = _session_id(engine, user_id)

        def scoped() -> bool:
            assert _me(client, headers).status_code == 200
            actor, _ = cache.get(user_id, session_id)
            return actor is not None and actor.area_paths == (f"{area_id}.",)

        _soon(scoped)
        assert len(actor_loads) >= 2  # loaded again, with the new membership
    finally:
        _commit(engine, "DELETE FROM area_memberships WHERE area_id = :a", a=area_id)
        _commit(engine, "DELETE FROM areas WHERE id = :a", a=area_id)


def _session_id(engine, user_id: int) -> uuid.UUID:
    with engine.connect() as conn:
        return conn.scalar(sa.text("SELECT id FROM auth_sessions WHERE user_id = :u "
                                   "ORDER BY created_at DESC LIMIT 1"), {"u": user_id})


def test_a_rolled_back_change_forgets_nothing(client, cache, account, engine, actor_loads):
    user_id, headers = account
    assert _me(client, headers).status_code == 200
    with engine.connect() as conn:
        conn.execute(sa.text("UPDATE auth_sessions SET revoked_at = now() WHERE user_id = :u"),
                     {"u": user_id})
        conn.rollback()
    assert _me(client, headers).status_code == 200
    assert len(actor_loads) == 1


def test_without_its_listen_connection_the_cache_is_off_and_revocation_still_holds(
        client, cache, account, engine, actor_loads, monkeypatch):
    user_id, headers = account
    assert _me(client, headers).status_code == 200
    monkeypatch.setattr("server.auth.actor_cache.RETRY_S", 3600.0)  # stays lost
    with engine.connect() as conn:  # the server drops the listener (restart, failover)
        conn.execute(sa.text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                             "WHERE application_name = 'actor-cache'"))
    time.sleep(0.2)
    assert _me(client, headers).status_code == 200
    assert _me(client, headers).status_code == 200
    assert len(actor_loads) == 3  # asked the database each time
    _commit(engine, "UPDATE auth_sessions SET revoked_at = now() WHERE user_id = :u", u=user_id)
    assert _me(client, headers).status_code == 401  # no cache: the database answers


def test_every_table_the_actor_is_read_from_notifies_the_cache(db_session):
    """A table added to the actor statement (a new enricher) without its trigger would let a
    cached actor outlive a change to it: migration 0016 lists the triggers."""
    statement = actor_select(tuple(actor_enrichers))
    read = {t.name for t in sa.sql.util.find_tables(statement, check_columns=True,
                                                    include_aliases=True,
                                                    include_joins=True)
            if isinstance(t, sa.Table)}
    assert {"users", "auth_sessions", "user_roles", "area_memberships",
            "department_members", "areas"} <= read
    triggered = set(db_session.scalars(sa.text(
        "SELECT DISTINCT c.relname FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid "
        "JOIN pg_proc p ON p.oid = t.tgfoid WHERE p.proname = 'notify_actor_changed'")))
    assert read - triggered == set()

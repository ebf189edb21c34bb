"""Who may grant what (issue 14): roles and memberships stay inside the granter's own powers
(permissions.GRANTABLE_BY) and areas; a district admin manages only the people of its
district; no administrator locks themselves, or the platform, out."""

from __future__ import annotations

import threading
import uuid

import pytest
import sqlalchemy as sa
import sqlalchemy.orm

from grid.areas import boundaries
from grid.demo import SYSTEM
from server.auth import service as accounts
from server.auth.actor import Actor
from server.auth.models import User, UserRole
from server.auth.permissions import permissions_for
from server.errors import Conflict
from tests.conftest import assert_error_shape
from tests.fixtures.areas import G111, G211, D, collection, feature, rect

OTHER_DISTRICT, OTHER_STREET = "330184", "330184001"


@pytest.fixture
def other_street(db_session, tree) -> int:
    """A street of a neighbouring district that the district admin below does not manage."""
    boundaries.import_areas(db_session, SYSTEM, collection(
        feature(OTHER_DISTRICT, "邻区", "district", None, rect(119.94, 30.00, 119.96, 30.02)),
        feature(OTHER_STREET, "邻街道", "street", OTHER_DISTRICT,
                rect(119.94, 30.00, 119.96, 30.02)),
    ), dry_run=False, opts=boundaries.Options())
    db_session.commit()
    return db_session.scalar(sa.text("SELECT id FROM areas WHERE code = :c"),
                             {"c": OTHER_STREET})


@pytest.fixture
def district_admin(member) -> dict:
    headers, _ = member("district_admin", D)
    return headers


def _version(client, headers, user_id: int) -> int:
    response = client.get(f"/users/{user_id}", headers=headers)
    assert response.status_code == 200, response.get_json()
    return response.get_json()["version"]


def _patch(client, headers, user_id: int, version: int, **changes):
    return client.patch(f"/users/{user_id}", headers=headers,
                        json={**changes, "version": version})


def _roles(db_session, user_id: int) -> list[str]:
    db_session.expire_all()
    return sorted(db_session.scalars(sa.select(UserRole.role)
                                     .where(UserRole.user_id == user_id)))


# --- account roles -------------------------------------------------------------------------


def test_a_district_admin_cannot_make_anyone_an_admin_or_an_auditor(
        client, district_admin, member, db_session):
    worker_headers, worker = member("grid_worker", G211)
    version = _version(client, district_admin, worker.id)
    for roles in (["admin"], ["auditor"], ["grid_worker", "admin"], ["district_admin"]):
        body = assert_error_shape(_patch(client, district_admin, worker.id, version,
                                         roles=roles), 403)
        assert "roles" in body["errors"]["json"], body
    assert _roles(db_session, worker.id) == ["grid_worker"]
    # …so the worker still cannot read the audit trail the district admin may not read
    assert_error_shape(client.get("/audit", headers=worker_headers), 403)
    assert_error_shape(client.get("/audit", headers=district_admin), 403)

    # Roles below its own are the district admin's to hand out.
    granted = _patch(client, district_admin, worker.id, version,
                     roles=["grid_chief", "grid_worker"])
    assert granted.status_code == 200, granted.get_json()
    assert granted.get_json()["roles"] == ["grid_chief", "grid_worker"]


def test_a_district_admin_creates_accounts_only_with_roles_below_its_own(
        client, district_admin):
    form = {"display_name": "新人", "password": "Worker-pass-1"}
    for role in ("admin", "auditor", "district_admin"):
        assert_error_shape(client.post("/users", headers=district_admin,
                                       json={**form, "username": f"new-{role}",
                                             "roles": [role]}), 403)
    created = client.post("/users", headers=district_admin,
                          json={**form, "username": "new-worker", "roles": ["grid_worker"]})
    assert created.status_code == 201, created.get_json()


def test_a_district_admin_manages_only_the_people_of_its_district(
        client, district_admin, member, make_user, other_street, admin, db_session):
    _, inside = member("grid_worker", G111)
    elsewhere = make_user("street_dispatcher")
    assert client.post("/memberships", headers=admin, json={
        "user_id": elsewhere.id, "area_id": other_street,
        "role": "street_dispatcher"}).status_code == 201
    platform_admin = db_session.get(User, make_user("admin").id)

    listed = client.get("/users", headers=district_admin, query_string={"page_size": 100})
    ids = {u["id"] for u in listed.get_json()}
    assert inside.id in ids
    assert elsewhere.id not in ids and platform_admin.id not in ids
    for outsider in (elsewhere, platform_admin):
        assert_error_shape(client.get(f"/users/{outsider.id}", headers=district_admin), 404)
        # e.g. disabling the platform's administrator, or a neighbour's dispatcher
        assert_error_shape(_patch(client, district_admin, outsider.id, outsider.version,
                                  is_active=False), 404)
    db_session.expire_all()
    assert db_session.get(User, platform_admin.id).is_active
    assert db_session.get(User, elsewhere.id).is_active


# --- no lock-out ---------------------------------------------------------------------------


def test_an_admin_cannot_disable_or_demote_itself(client, make_user, login, db_session):
    me = make_user("admin")
    headers = {"Authorization": f"Bearer {login(me.username)['access_token']}"}
    version = _version(client, headers, me.id)
    assert_error_shape(_patch(client, headers, me.id, version, is_active=False), 403)
    assert_error_shape(_patch(client, headers, me.id, version, roles=["resident"]), 403)
    assert _roles(db_session, me.id) == ["admin"]
    assert client.get("/audit", headers=headers).status_code == 200

    # Another administrator may.
    other = make_user("admin")
    response = _patch(client, headers, other.id, _version(client, headers, other.id),
                      roles=["auditor"])
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["roles"] == ["auditor"]


def test_the_last_active_admin_is_never_disabled_or_demoted(db_session, make_user):
    # Whoever asks (here the system, as `flask` commands act): only this one admin is active.
    db_session.execute(sa.update(User).where(User.roles.any(UserRole.role == "admin"))
                       .values(is_active=False))
    last = make_user("admin")
    for changes in ({"is_active": False}, {"roles": ["auditor"]}):
        with pytest.raises(Conflict):
            accounts.update_user(db_session, SYSTEM, last.id, changes, last.version)
        db_session.rollback()
    second = make_user("admin")
    accounts.update_user(db_session, SYSTEM, last.id, {"is_active": False}, last.version)
    with pytest.raises(Conflict):
        accounts.update_user(db_session, SYSTEM, second.id, {"roles": ["resident"]},
                             second.version)


# --- memberships ---------------------------------------------------------------------------


def _member_post(client, headers, user_id: int, area_id: int, role: str):
    return client.post("/memberships", headers=headers,
                       json={"user_id": user_id, "area_id": area_id, "role": role})


def test_a_district_admin_grants_memberships_only_below_its_role_and_to_its_people(
        client, district_admin, make_user, tree, other_street, admin):
    # a peer: only an admin places district admins
    peer = make_user("district_admin")
    assert_error_shape(_member_post(client, district_admin, peer.id, tree[D],
                                    "district_admin"), 403)
    # a dispatcher of the neighbouring district cannot be pulled into this one
    neighbour = make_user("grid_worker", "street_dispatcher")
    assert _member_post(client, admin, neighbour.id, other_street,
                        "street_dispatcher").status_code == 201
    body = assert_error_shape(_member_post(client, district_admin, neighbour.id, tree[G111],
                                           "grid_worker"), 422)
    assert "user_id" in body["errors"]["json"]
    # someone placed nowhere yet, or only inside the district, can be placed
    newcomer = make_user("grid_worker")
    placed = _member_post(client, district_admin, newcomer.id, tree[G111], "grid_worker")
    assert placed.status_code == 201, placed.get_json()
    again = _member_post(client, district_admin, newcomer.id, tree[G211], "grid_worker")
    assert again.status_code == 201, again.get_json()


def test_a_district_admin_cannot_remove_a_peers_membership(client, district_admin, make_user,
                                                           tree, admin):
    peer = make_user("district_admin")
    membership = _member_post(client, admin, peer.id, tree[D], "district_admin").get_json()
    assert_error_shape(client.delete(f"/memberships/{membership['id']}",
                                     headers=district_admin), 403)
    assert client.get(f"/memberships?user_id={peer.id}", headers=admin).get_json()


def test_a_district_admin_adds_department_handlers_only_of_its_district(
        client, district_admin, make_user, tree, other_street, admin):
    def department(code: str, area_id: int) -> int:
        response = client.post("/departments", headers=admin, json={
            "code": code, "name": code, "service_area_id": area_id})
        assert response.status_code == 201, response.get_json()
        return response.get_json()["id"]

    ours, theirs = department("cg-ours", tree[D]), department("cg-theirs", other_street)
    handler = make_user("department_handler")
    assert client.post(f"/departments/{theirs}/members", headers=admin,
                       json={"user_id": handler.id, "is_head": False}).status_code == 200
    body = assert_error_shape(client.post(f"/departments/{ours}/members",
                                          headers=district_admin,
                                          json={"user_id": handler.id, "is_head": True}), 422)
    assert "user_id" in body["errors"]["json"]
    local = make_user("department_handler")
    added = client.post(f"/departments/{ours}/members", headers=district_admin,
                        json={"user_id": local.id, "is_head": True})
    assert added.status_code == 200, added.get_json()


def test_two_admins_disabling_each_other_at_once_leave_one_active(app, engine):
    """Real concurrent transactions on committed accounts (removed after): without the lock
    on the administrators' rows both would pass the check and lock the platform out."""
    with engine.connect() as conn:
        others = conn.scalar(sa.text(
            "SELECT count(*) FROM users u JOIN user_roles r ON r.user_id = u.id "
            "WHERE r.role = 'admin' AND u.is_active"))
    if others:
        pytest.skip("committed active admins exist: each of these two would not be the last")
    with app.app_context(), sa.orm.Session(engine) as s:
        ids = [accounts._new_user(s, f"rival-{i}-{uuid.uuid4().hex[:8]}", "对手", None,
                                  "Rival-pass-2026", ["admin"]).id for i in (1, 2)]
        s.commit()
    roles = frozenset({"admin"})
    barrier = threading.Barrier(2)
    outcomes: list[str] = []

    def disable(actor_id: int, target_id: int) -> None:
        actor = Actor(user_id=actor_id, roles=roles, permissions=permissions_for(roles))
        with app.app_context(), sa.orm.Session(engine) as s:
            version = s.get(User, target_id).version
            barrier.wait()
            try:
                accounts.update_user(s, actor, target_id, {"is_active": False}, version)
                s.commit()
                outcomes.append("ok")
            except Conflict:
                s.rollback()
                outcomes.append("409")

    try:
        threads = [threading.Thread(target=disable, args=pair)
                   for pair in ((ids[0], ids[1]), (ids[1], ids[0]))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=30)
        assert sorted(outcomes) == ["409", "ok"], outcomes
        with engine.connect() as conn:
            active = conn.scalar(sa.text("SELECT count(*) FROM users WHERE id = ANY(:ids) "
                                         "AND is_active"), {"ids": ids})
        assert active == 1
    finally:
        with engine.begin() as conn:
            conn.execute(sa.text("DELETE FROM users WHERE id = ANY(:ids)"), {"ids": ids})

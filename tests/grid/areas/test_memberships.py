"""Memberships (who works where) through the API, and that they are what scope is made of."""

from __future__ import annotations

from tests.conftest import assert_error_shape
from tests.fixtures.areas import C11, G111, G112, G211, S1, D
from tests.fixtures.http import total


def _post(client, headers, user_id, area_id, role):
    return client.post("/memberships", headers=headers,
                       json={"user_id": user_id, "area_id": area_id, "role": role})


def test_admin_adds_a_membership_and_it_becomes_the_users_scope(
        client, tree, admin, make_user, login):
    worker = make_user("grid_worker")
    headers = {"Authorization": f"Bearer {login(worker.username)['access_token']}"}
    assert_error_shape(client.get(f"/areas/{tree[G111]}", headers=headers), 404)

    response = _post(client, admin, worker.id, tree[G111], "grid_worker")
    assert response.status_code == 201, response.get_json()
    body = response.get_json()
    assert (body["user_id"], body["area_id"], body["role"]) == (worker.id, tree[G111],
                                                                "grid_worker")
    # scope is resolved per request: the same token now reaches the grid, and only it
    assert client.get(f"/areas/{tree[G111]}", headers=headers).status_code == 200
    assert_error_shape(client.get(f"/areas/{tree[G112]}", headers=headers), 404)

    listed = client.get(f"/memberships?user_id={worker.id}", headers=admin)
    assert listed.status_code == 200 and total(listed) == 1
    row = listed.get_json()[0]
    assert row["area_code"] == G111 and row["role"] == "grid_worker"


def test_a_role_the_user_does_not_hold_is_422(client, tree, admin, make_user):
    resident = make_user("resident")
    body = assert_error_shape(_post(client, admin, resident.id, tree[G111], "grid_worker"), 422)
    assert "role" in body["errors"]["json"]


def test_a_role_at_the_wrong_level_is_422(client, tree, admin, make_user):
    dispatcher = make_user("street_dispatcher")
    body = assert_error_shape(_post(client, admin, dispatcher.id, tree[G111],
                                    "street_dispatcher"), 422)
    assert "area_id" in body["errors"]["json"]
    worker = make_user("grid_worker")
    assert_error_shape(_post(client, admin, worker.id, tree[S1], "grid_worker"), 422)


def test_unknown_user_area_or_role_is_rejected(client, tree, admin, make_user):
    worker = make_user("grid_worker")
    assert_error_shape(_post(client, admin, 10**9, tree[G111], "grid_worker"), 422)
    assert_error_shape(_post(client, admin, worker.id, 10**9, "grid_worker"), 404)
    assert_error_shape(_post(client, admin, worker.id, tree[G111], "admin"), 422)


def test_the_same_membership_twice_is_one_membership(client, tree, admin, make_user):
    worker = make_user("grid_worker")
    first = _post(client, admin, worker.id, tree[G111], "grid_worker")
    second = _post(client, admin, worker.id, tree[G111], "grid_worker")
    assert first.status_code in (200, 201) and second.status_code in (200, 201)
    assert first.get_json()["id"] == second.get_json()["id"]
    assert total(client.get(f"/memberships?user_id={worker.id}", headers=admin)) == 1


def test_delete_a_membership_ends_the_scope(client, tree, admin, make_user, login):
    worker = make_user("grid_worker")
    headers = {"Authorization": f"Bearer {login(worker.username)['access_token']}"}
    membership = _post(client, admin, worker.id, tree[G111], "grid_worker").get_json()
    assert client.get(f"/areas/{tree[G111]}", headers=headers).status_code == 200

    response = client.delete(f"/memberships/{membership['id']}", headers=admin)
    assert response.status_code == 204
    assert_error_shape(client.get(f"/areas/{tree[G111]}", headers=headers), 404)
    assert total(client.get(f"/memberships?user_id={worker.id}", headers=admin)) == 0
    assert_error_shape(client.delete(f"/memberships/{membership['id']}", headers=admin), 404)


def test_district_admin_manages_memberships_only_inside_their_district(
        client, tree, admin, make_user, login, db_session):
    # a second district next to the test district, owned by nobody here
    from grid.areas import boundaries
    from grid.demo import SYSTEM
    from tests.fixtures.areas import collection, feature, rect

    boundaries.import_areas(db_session, SYSTEM, collection(
        feature("330184", "邻区", "district", None, rect(119.94, 30.00, 119.96, 30.02)),
        feature("330184001", "邻街道", "street", "330184", rect(119.94, 30.00, 119.96, 30.02)),
    ), dry_run=False, opts=boundaries.Options())
    db_session.commit()
    other_street = client.get("/areas/by-code/330184001", headers=admin).get_json()["id"]

    district_admin = make_user("district_admin")
    assert _post(client, admin, district_admin.id, tree[D], "district_admin").status_code == 201
    headers = {"Authorization": f"Bearer {login(district_admin.username)['access_token']}"}

    worker = make_user("grid_worker")
    inside = _post(client, headers, worker.id, tree[G211], "grid_worker")
    assert inside.status_code == 201, inside.get_json()
    dispatcher = make_user("street_dispatcher")
    assert_error_shape(_post(client, headers, dispatcher.id, other_street,
                             "street_dispatcher"), 404)

    # a membership outside the district is invisible and cannot be removed by them
    outside = _post(client, admin, dispatcher.id, other_street, "street_dispatcher").get_json()
    assert total(client.get(f"/memberships?user_id={dispatcher.id}", headers=headers)) == 0
    assert_error_shape(client.delete(f"/memberships/{outside['id']}", headers=headers), 404)
    assert total(client.get(f"/memberships?user_id={dispatcher.id}", headers=admin)) == 1
    # inside the district they can
    assert client.delete(f"/memberships/{inside.get_json()['id']}",
                         headers=headers).status_code == 204


def test_a_grid_worker_cannot_manage_memberships(client, tree, member, make_user):
    headers, _ = member("grid_worker", G111)
    other = make_user("grid_worker")
    assert_error_shape(_post(client, headers, other.id, tree[G111], "grid_worker"), 403)
    assert_error_shape(client.get("/memberships", headers=headers), 403)


def test_community_staff_membership_covers_the_community(client, tree, admin, make_user,
                                                         login):
    staff = make_user("community_staff")
    assert _post(client, admin, staff.id, tree[C11], "community_staff").status_code == 201
    headers = {"Authorization": f"Bearer {login(staff.username)['access_token']}"}
    grids = client.get("/areas?level=grid", headers=headers).get_json()
    assert {g["code"] for g in grids} == {G111, G112}

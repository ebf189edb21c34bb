"""Editing areas: versions (412/428), moving a subtree, re-coding."""

from __future__ import annotations

from tests.conftest import assert_error_shape
from tests.fixtures.areas import C11, C12, C21, G111, G121, G122, NAMES, S1, S2, D
from tests.fixtures.http import total


def _read(client, headers, area_id) -> dict:
    response = client.get(f"/areas/{area_id}", headers=headers)
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def test_rename_with_the_current_version(client, tree, admin):
    area = _read(client, admin, tree[C11])
    response = client.patch(f"/areas/{tree[C11]}", headers=admin,
                            json={"name": "新名字", "version": area["version"]})
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert body["name"] == "新名字" and body["version"] == area["version"] + 1
    assert response.headers["ETag"] == f'"{body["version"]}"'
    assert _read(client, admin, tree[C11])["name"] == "新名字"


def test_rename_with_if_match(client, tree, admin):
    etag = client.get(f"/areas/{tree[C11]}", headers=admin).headers["ETag"]
    response = client.patch(f"/areas/{tree[C11]}", headers={**admin, "If-Match": etag},
                            json={"name": "新名字"})
    assert response.status_code == 200, response.get_json()


def test_a_stale_version_is_412_with_the_current_record(client, tree, admin):
    area = _read(client, admin, tree[C11])
    first = client.patch(f"/areas/{tree[C11]}", headers=admin,
                         json={"name": "甲", "version": area["version"]})
    assert first.status_code == 200
    stale = client.patch(f"/areas/{tree[C11]}", headers=admin,
                         json={"name": "乙", "version": area["version"]})
    body = assert_error_shape(stale, 412)
    assert body["current"]["id"] == tree[C11]
    assert body["current"]["version"] == area["version"] + 1
    assert body["current"]["name"] == "甲"
    assert _read(client, admin, tree[C11])["name"] == "甲"  # not silently overwritten


def test_an_edit_without_a_version_is_428(client, tree, admin):
    body = assert_error_shape(client.patch(f"/areas/{tree[C11]}", headers=admin,
                                           json={"name": "乙"}), 428)
    assert "version" in body["message"]
    assert _read(client, admin, tree[C11])["name"] == NAMES[C11]


def test_a_district_admin_edits_inside_their_district_and_a_worker_cannot(
        client, tree, member):
    headers, _ = member("district_admin", D)
    area = _read(client, headers, tree[G111])
    ok = client.patch(f"/areas/{tree[G111]}", headers=headers,
                      json={"name": "改名网格", "version": area["version"]})
    assert ok.status_code == 200
    worker, _ = member("grid_worker", G111)
    assert_error_shape(client.patch(f"/areas/{tree[G111]}", headers=worker,
                                    json={"name": "x", "version": area["version"] + 1}), 403)


def test_moving_a_community_to_another_street_moves_its_grids_in_scope(
        client, tree, admin, member):
    old_street, _ = member("street_dispatcher", S1)
    new_street, _ = member("street_dispatcher", S2)
    assert total(client.get("/areas?level=grid", headers=old_street)) == 4
    assert total(client.get("/areas?level=grid", headers=new_street)) == 2

    community = _read(client, admin, tree[C12])
    response = client.post(f"/areas/{tree[C12]}/move", headers=admin,
                           json={"parent_id": tree[S2], "code": "330183002002",
                                 "version": community["version"]})
    assert response.status_code == 200, response.get_json()
    moved = response.get_json()
    assert moved["parent_id"] == tree[S2] and moved["code"] == "330183002002"
    assert moved["version"] == community["version"] + 1

    # the grids under it followed: the new street's dispatcher sees them, the old one not
    grids = client.get("/areas?level=grid", headers=new_street).get_json()
    assert {g["code"] for g in grids} == {"330183002001001", "330183002001002",
                                          "330183002002001", "330183002002002"}
    assert {g["id"] for g in grids} >= {tree[G121], tree[G122]}
    assert total(client.get("/areas?level=grid", headers=old_street)) == 2
    assert_error_shape(client.get(f"/areas/{tree[G121]}", headers=old_street), 404)
    assert client.get(f"/areas/{tree[G121]}/card", headers=new_street).status_code == 200
    # the tree shows it under its new parent
    nodes = client.get(f"/areas/tree?root_id={tree[S2]}", headers=admin).get_json()
    assert [c["code"] for c in nodes[0]["children"]] == [C21, "330183002002"]
    # and its old code is free
    assert_error_shape(client.get(f"/areas/by-code/{C12}", headers=admin), 404)


def test_a_move_whose_code_does_not_fit_the_new_parent_says_so(client, tree, admin):
    community = _read(client, admin, tree[C12])
    response = client.post(f"/areas/{tree[C12]}/move", headers=admin,
                           json={"parent_id": tree[S2], "version": community["version"]})
    body = assert_error_shape(response, 422)
    assert "code" in str(body["errors"])
    # a new code that still does not fit, or is already taken
    assert_error_shape(client.post(f"/areas/{tree[C12]}/move", headers=admin, json={
        "parent_id": tree[S2], "code": "330183001009", "version": community["version"]}), 422)
    assert_error_shape(client.post(f"/areas/{tree[C12]}/move", headers=admin, json={
        "parent_id": tree[S2], "code": C21, "version": community["version"]}), 409)
    assert _read(client, admin, tree[C12])["parent_id"] == tree[S1]


def test_moving_into_its_own_subtree_is_409(client, tree, admin):
    street = _read(client, admin, tree[S1])
    body = assert_error_shape(client.post(f"/areas/{tree[S1]}/move", headers=admin, json={
        "parent_id": tree[C11], "version": street["version"]}), 409)
    assert "subtree" in body["message"]
    assert_error_shape(client.post(f"/areas/{tree[S1]}/move", headers=admin, json={
        "parent_id": tree[S1], "version": street["version"]}), 409)
    assert _read(client, admin, tree[S1])["parent_id"] == tree[D]


def test_a_move_needs_the_version(client, tree, admin):
    assert_error_shape(client.post(f"/areas/{tree[C12]}/move", headers=admin, json={
        "parent_id": tree[S2], "code": "330183002002"}), 428)
    assert_error_shape(client.post(f"/areas/{tree[C12]}/move", headers=admin, json={
        "parent_id": tree[S2], "code": "330183002002", "version": 99}), 412)


def test_a_new_code_is_given_to_the_areas_below(client, tree, admin):
    community = _read(client, admin, tree[C11])
    response = client.patch(f"/areas/{tree[C11]}", headers=admin,
                            json={"code": "330183001009", "version": community["version"]})
    assert response.status_code == 200, response.get_json()
    assert _read(client, admin, tree[G111])["code"] == "330183001009001"
    taken = client.patch(f"/areas/{tree[C11]}", headers=admin,
                         json={"code": C12, "version": community["version"] + 1})
    assert_error_shape(taken, 409)
    wrong = client.patch(f"/areas/{tree[C11]}", headers=admin,
                         json={"code": "330183002009", "version": community["version"] + 1})
    assert_error_shape(wrong, 422)


def test_tree_depth(client, tree, admin):
    top = client.get("/areas/tree?depth=1", headers=admin).get_json()
    assert [n["code"] for n in top] == [D]
    assert [c["code"] for c in top[0]["children"]] == [S1, S2]
    assert all(c["children"] == [] for c in top[0]["children"])
    below = client.get(f"/areas/tree?root_id={tree[S1]}&depth=1", headers=admin).get_json()
    assert [n["code"] for n in below] == [S1]
    assert [c["code"] for c in below[0]["children"]] == [C11, C12]
    assert all(c["children"] == [] for c in below[0]["children"])
    everything = client.get("/areas/tree", headers=admin).get_json()
    assert len(everything[0]["children"][0]["children"][0]["children"]) == 2

"""Scope isolation through the HTTP API: outside one's areas a record does not exist."""

from __future__ import annotations

from tests.conftest import assert_error_shape
from tests.fixtures.areas import C11, C12, C21, G111, G112, G121, G122, G211, G212, NAMES, S1, S2, D
from tests.fixtures.http import total


def _codes(response) -> set[str]:
    assert response.status_code == 200, response.get_json()
    return {a["code"] for a in response.get_json()}


def _tree_codes(nodes: list[dict]) -> set[str]:
    out = set()
    for node in nodes:
        out.add(node["code"])
        out |= _tree_codes(node["children"])
    return out


def test_grid_worker_cannot_read_a_neighbouring_grid(app, client, tree, member):
    headers, _ = member("grid_worker", G111)
    other = tree[G112]  # same community, next grid
    for url in (f"/areas/{other}", f"/areas/{other}/card", f"/areas/by-code/{G112}",
                f"/areas/{other}?geometry=true", f"/areas/{other}/children",
                f"/areas/{other}/export.geojson"):
        if url.endswith("/card") and app.config["MAP_PUBLIC_AREAS"]:
            # 网格公示 is public (test_card.py): the notice without counts of people
            assert client.get(url, headers=headers).get_json()["counts"] == {}
            continue
        body = assert_error_shape(client.get(url, headers=headers), 404)
        assert NAMES[G112] not in str(body)
    # the same requests for their own grid work, so the 404s above are about scope
    assert client.get(f"/areas/{tree[G111]}", headers=headers).status_code == 200
    assert client.get(f"/areas/{tree[G111]}/card", headers=headers).status_code == 200
    assert client.get(f"/areas/by-code/{G111}", headers=headers).status_code == 200


def test_grid_worker_cannot_change_a_neighbouring_grid(client, tree, member, admin):
    headers, _ = member("grid_worker", G111)
    before = client.get(f"/areas/{tree[G112]}", headers=admin).get_json()
    response = client.patch(f"/areas/{tree[G112]}", headers=headers,
                            json={"name": "被改了", "version": before["version"]})
    assert response.status_code in (403, 404)
    assert_error_shape(response, response.status_code)
    response = client.post(f"/areas/{tree[G112]}/move", headers=headers,
                           json={"parent_id": tree[C12], "version": before["version"]})
    assert response.status_code in (403, 404)
    after = client.get(f"/areas/{tree[G112]}", headers=admin).get_json()
    assert after["name"] == before["name"] == NAMES[G112]
    assert after["version"] == before["version"]


def test_grid_worker_lists_own_grid_and_its_ancestors_only(client, tree, member):
    headers, _ = member("grid_worker", G111)
    listed = _codes(client.get("/areas?page_size=100", headers=headers))
    assert listed == {D, S1, C11, G111}
    assert _codes(client.get("/areas?level=grid", headers=headers)) == {G111}
    assert _codes(client.get(f"/areas?q={S2}", headers=headers)) == set()
    tree_response = client.get("/areas/tree", headers=headers)
    assert tree_response.status_code == 200
    assert _tree_codes(tree_response.get_json()) == {D, S1, C11, G111}
    # the chain above the grid is readable by name, not editable
    community = client.get(f"/areas/{tree[C11]}", headers=headers)
    assert community.status_code == 200 and community.get_json()["name"] == NAMES[C11]
    street = client.get(f"/areas/by-code/{S1}", headers=headers)
    assert street.status_code == 200 and street.get_json()["name"] == NAMES[S1]
    # …but not their siblings
    assert_error_shape(client.get(f"/areas/{tree[C12]}", headers=headers), 404)
    assert_error_shape(client.get(f"/areas/{tree[S2]}", headers=headers), 404)


def test_street_dispatcher_sees_all_grids_of_their_street_and_none_of_the_next(
        client, tree, member):
    headers, _ = member("street_dispatcher", S1)
    response = client.get("/areas?level=grid&page_size=1", headers=headers)
    assert response.status_code == 200
    assert total(response) == 4
    assert _codes(client.get("/areas?level=grid", headers=headers)) == {G111, G112, G121, G122}
    for code in (G111, G112, G121, G122):
        assert client.get(f"/areas/{tree[code]}", headers=headers).status_code == 200
    for code in (S2, C21, G211, G212):
        assert_error_shape(client.get(f"/areas/{tree[code]}", headers=headers), 404)
        assert_error_shape(client.get(f"/areas/by-code/{code}", headers=headers), 404)
    assert _tree_codes(client.get("/areas/tree", headers=headers).get_json()) == {
        D, S1, C11, C12, G111, G112, G121, G122}
    # within_id of the district lists only what is visible inside it
    within = client.get(f"/areas?within_id={tree[D]}&level=grid", headers=headers)
    assert total(within) == 4


def test_the_other_street_dispatcher_sees_the_other_street(client, tree, member):
    headers, _ = member("street_dispatcher", S2)
    assert _codes(client.get("/areas?level=grid", headers=headers)) == {G211, G212}
    assert_error_shape(client.get(f"/areas/{tree[G111]}", headers=headers), 404)


def test_a_worker_of_two_grids_sees_both(client, tree, member):
    headers, _ = member("grid_worker", G111, G211)
    assert _codes(client.get("/areas?level=grid", headers=headers)) == {G111, G211}
    assert _codes(client.get("/areas?level=street", headers=headers)) == {S1, S2}


def test_without_memberships_nothing_is_visible(client, tree, auth_headers):
    headers = auth_headers("grid_worker")
    response = client.get("/areas", headers=headers)
    assert response.status_code == 200 and response.get_json() == []
    assert client.get("/areas/tree", headers=headers).get_json() == []
    assert_error_shape(client.get(f"/areas/{tree[D]}", headers=headers), 404)


def test_anonymous_gets_401(client, tree):
    assert_error_shape(client.get(f"/areas/{tree[G111]}"), 401)
    assert_error_shape(client.get("/areas"), 401)

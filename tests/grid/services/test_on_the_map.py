"""Service points on the map: a public tile layer and a collection of the area map."""

from __future__ import annotations

from tests.fixtures.areas import C11, C21
from tests.fixtures.http import at
from tests.fixtures.maps import decode, tile_at
from tests.fixtures.services import make_service


def test_service_points_are_on_the_public_tiles_and_the_area_map(people, tree, db_session,
                                                                client):
    offered = make_service(people.staff, tree, db_session)
    response = client.get(f"/tiles/service_points/{tile_at(at(C11), 15)}.mvt")  # no login
    assert response.status_code == 200 and "public" in response.headers["Cache-Control"]
    features = decode(response.data)["service_points"]["features"]
    assert [f["properties"]["name"] for f in features] == [offered["name"]]
    elsewhere = client.get(f"/tiles/service_points/{tile_at(at(C21), 15)}.mvt")
    assert decode(elsewhere.data) == {}
    drawn = people.staff.ok(people.staff.get(f"/areas/{tree[C11]}/map"))
    names = [f["properties"]["name"] for f in drawn["service_points"]["features"]]
    assert names == [offered["name"]]

"""GET /geo/locate: the grid a point falls in, from the coordinates phones really send."""

from __future__ import annotations

import pytest

from geo import crs
from tests.conftest import assert_error_shape
from tests.fixtures.areas import BOXES, C11, G111, G112, G212, S1, S2, D


def _locate(client, headers, lon, lat, system=None):
    query = f"lon={lon}&lat={lat}" + (f"&crs={system}" if system else "")
    return client.get(f"/geo/locate?{query}", headers=headers)


def test_a_point_in_a_grid_gives_the_grid_and_its_chain_top_first(client, tree, auth_headers):
    headers = auth_headers("resident")
    response = _locate(client, headers, 119.905, 30.015)
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert body["grid"]["code"] == G111 and body["grid"]["id"] == tree[G111]
    assert [a["code"] for a in body["chain"]] == [D, S1, C11, G111]
    assert [a["level"] for a in body["chain"]] == ["district", "street", "community", "grid"]
    assert body["point"] == {"lon": 119.905, "lat": 30.015}
    assert _locate(client, headers, 119.935, 30.005).get_json()["chain"][1]["code"] == S2


def test_a_gcj02_point_is_converted_before_locating(client, tree, auth_headers):
    headers = auth_headers("resident")
    # 100 m west of the edge between grids 1 and 2 of 北社区 (119.91)
    lon, lat = 119.909, 30.015
    assert BOXES[G111][0] < lon < BOXES[G111][2]
    g_lon, g_lat = crs.wgs84_to_gcj02(lon, lat)
    # the GCJ-02 numbers lie ~450 m east: taken as WGS-84 they fall in the next grid
    assert BOXES[G112][0] < g_lon < BOXES[G112][2]
    as_wgs84 = _locate(client, headers, g_lon, g_lat)
    assert as_wgs84.get_json()["grid"]["code"] == G112

    response = _locate(client, headers, g_lon, g_lat, "gcj02")
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert body["grid"]["code"] == G111
    assert body["point"]["lon"] == pytest.approx(lon, abs=1e-7)
    assert body["point"]["lat"] == pytest.approx(lat, abs=1e-7)


def test_a_bd09_point_is_converted_before_locating(client, tree, auth_headers):
    lon, lat = 119.909, 30.015
    b_lon, b_lat = crs.wgs84_to_bd09(lon, lat)
    body = _locate(client, auth_headers("resident"), b_lon, b_lat, "bd09").get_json()
    assert body["grid"]["code"] == G111
    assert body["point"]["lon"] == pytest.approx(lon, abs=1e-7)


def test_a_point_on_the_shared_edge_belongs_to_one_grid(client, tree, auth_headers):
    body = _locate(client, auth_headers("resident"), 119.93, 30.01).get_json()
    assert body["grid"]["code"] in ("330183002001001", G212)


def test_a_point_outside_every_grid_is_404_with_a_clear_message(client, tree, auth_headers):
    body = assert_error_shape(_locate(client, auth_headers("resident"), 119.95, 30.01), 404)
    assert "outside every grid" in body["message"]
    assert "119.95" in body["message"]
    # far away, and in Paris (no offset abroad either)
    assert_error_shape(_locate(client, auth_headers("resident"), 2.35, 48.85, "gcj02"), 404)


@pytest.mark.parametrize("query", [
    "lon=119.905&lat=200", "lon=abc&lat=30.01", "lon=119.905", "lat=30.01",
    "lon=nan&lat=30.01", "lon=119.905&lat=inf", "lon=181&lat=30", "lon=119.905&lat=30.01&crs=x",
])
def test_bad_input_is_422(client, tree, auth_headers, query):
    assert_error_shape(client.get(f"/geo/locate?{query}", headers=auth_headers("resident")), 422)


def test_locate_needs_a_login(client, tree):
    assert_error_shape(client.get("/geo/locate?lon=119.905&lat=30.015"), 401)

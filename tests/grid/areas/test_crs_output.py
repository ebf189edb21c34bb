"""?crs= on responses that carry geometry: AMap wants GCJ-02, Baidu BD-09."""

from __future__ import annotations

import pytest

from geo import crs
from tests.conftest import assert_error_shape
from tests.fixtures.areas import BOXES, G111, S2


def test_boundary_in_wgs84_by_default(client, tree, admin):
    body = client.get(f"/areas/{tree[G111]}?geometry=true", headers=admin).get_json()
    assert body["boundary"]["type"] == "MultiPolygon"
    x0, y0, x1, y1 = BOXES[G111]
    ring = body["boundary"]["coordinates"][0][0]
    assert {tuple(p) for p in ring} == {(x0, y0), (x1, y0), (x1, y1), (x0, y1)}
    assert client.get(f"/areas/{tree[G111]}", headers=admin).get_json()["boundary"] is None


@pytest.mark.parametrize("system,forward", [("gcj02", crs.wgs84_to_gcj02),
                                            ("bd09", crs.wgs84_to_bd09)])
def test_boundary_in_the_crs_asked_for(client, tree, admin, system, forward):
    plain = client.get(f"/areas/{tree[G111]}?geometry=true", headers=admin).get_json()
    shifted = client.get(f"/areas/{tree[G111]}?geometry=true&crs={system}",
                         headers=admin).get_json()
    assert shifted["code"] == plain["code"]
    for p, q in zip(plain["boundary"]["coordinates"][0][0],
                    shifted["boundary"]["coordinates"][0][0], strict=True):
        expected = forward(*p)
        assert q == pytest.approx(list(expected), abs=2e-7)
        assert abs(q[0] - p[0]) > 0.003  # hundreds of metres, not rounding
    by_code = client.get(f"/areas/by-code/{plain['code']}?geometry=true&crs={system}",
                         headers=admin).get_json()
    assert by_code["boundary"] == shifted["boundary"]


def test_export_in_gcj02(client, tree, admin):
    plain = client.get(f"/areas/{tree[S2]}/export.geojson", headers=admin).get_json()
    shifted = client.get(f"/areas/{tree[S2]}/export.geojson?crs=gcj02",
                         headers=admin).get_json()
    p = plain["features"][0]["geometry"]["coordinates"][0][0][0]
    q = shifted["features"][0]["geometry"]["coordinates"][0][0][0]
    assert q == pytest.approx(list(crs.wgs84_to_gcj02(*p)), abs=2e-7)


def test_the_next_request_is_wgs84_again(client, tree, admin):
    client.get(f"/areas/{tree[G111]}?geometry=true&crs=gcj02", headers=admin)
    body = client.get(f"/areas/{tree[G111]}?geometry=true", headers=admin).get_json()
    assert body["boundary"]["coordinates"][0][0][0] == list(BOXES[G111][:2])


@pytest.mark.parametrize("value", ["bogus", "WGS84", "4326", ""])
def test_an_unknown_crs_is_422(client, tree, admin, value):
    response = client.get(f"/areas/{tree[G111]}?geometry=true&crs={value}", headers=admin)
    body = assert_error_shape(response, 422)
    assert "crs" in str(body["errors"])

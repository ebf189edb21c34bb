"""/areas/{id}/map (GeoJSON, RFC 7946, ?crs=) and /areas/{id}/map.svg."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest
import sqlalchemy as sa

from geo import crs as crs_mod
from grid.registry.models import Building
from tests.conftest import assert_error_shape
from tests.fixtures.areas import C11, G111, G112
from tests.fixtures.cases import report
from tests.fixtures.http import at

SVG_NS = "{http://www.w3.org/2000/svg}"


def _seed(people, category) -> dict:
    w = people.worker
    building = w.building(G111)
    hh = w.household(w.house(building))
    w.person(hh, relation_to_head="head", phone="13812345678")
    w.organisation(G111)
    case = report(w, category, G111)
    return {"building": building, "case": case}


def _rings(geometry: dict) -> list:
    if geometry["type"] == "Polygon":
        return geometry["coordinates"]
    if geometry["type"] == "MultiPolygon":
        return [ring for poly in geometry["coordinates"] for ring in poly]
    return []


def _assert_rfc7946(fc: dict) -> None:
    assert fc["type"] == "FeatureCollection"
    for feature in fc["features"]:
        assert feature["type"] == "Feature" and isinstance(feature["properties"], dict)
        geometry = feature["geometry"]
        assert geometry["type"] in ("Point", "Polygon", "MultiPolygon")
        if geometry["type"] == "Point":
            lon, lat = geometry["coordinates"]
            assert 119 < lon < 121 and 29 < lat < 31  # (lon, lat), not (lat, lon)
        for ring in _rings(geometry):
            assert ring[0] == ring[-1] and len(ring) >= 4


def test_the_grid_map_has_its_layers_and_card(people, category, tree):
    made = _seed(people, category)
    body = people.worker.ok(people.worker.get(f"/areas/{tree[G111]}/map"))
    assert body["crs"] == "wgs84" and body["area"]["code"] == G111
    assert body["area"]["bbox"] == pytest.approx([119.90, 30.01, 119.91, 30.02])
    for name in ("boundary", "buildings", "cases", "organisations", "service_points"):
        _assert_rfc7946(body[name])
    assert body["boundary"]["features"][0]["properties"]["code"] == G111
    building = body["buildings"]["features"][0]
    assert building["id"] == made["building"]["id"]
    assert building["properties"]["households"] == 1
    assert building["properties"]["persons"] == 1
    case = body["cases"]["features"][0]["properties"]
    assert case["id"] == made["case"]["id"] and case["light"] in ("green", "yellow", "red")
    assert len(body["organisations"]["features"]) == 1
    assert [w["user_id"] for w in body["card"]["workers"]] == [people.worker.user.id]
    assert body["card"]["counts"] == {"households": 1, "population": 1}
    assert body["truncated"] == [] and body["omitted"] == []


def test_each_building_counts_its_own_households(people, category, tree):
    w = people.worker
    _seed(people, category)
    other = w.building(G111, name="8幢", location=at(G111, dx=0.003))
    for room in ("101", "102"):
        w.person(w.household(w.house(other, room=room)), relation_to_head="head")
    body = w.ok(w.get(f"/areas/{tree[G111]}/map"))
    counts = {f["id"]: (f["properties"]["households"], f["properties"]["persons"])
              for f in body["buildings"]["features"]}
    assert sorted(counts.values()) == [(1, 1), (2, 2)] and counts[other["id"]] == (2, 2)


def test_gcj02_shifts_every_coordinate_by_hundreds_of_metres(people, category, tree):
    _seed(people, category)
    wgs = people.worker.ok(people.worker.get(f"/areas/{tree[G111]}/map"))
    gcj = people.worker.ok(people.worker.get(f"/areas/{tree[G111]}/map?crs=gcj02"))
    assert gcj["crs"] == "gcj02"
    p0 = wgs["cases"]["features"][0]["geometry"]["coordinates"]
    p1 = gcj["cases"]["features"][0]["geometry"]["coordinates"]
    assert p1 == pytest.approx(list(crs_mod.wgs84_to_gcj02(*p0)), abs=1e-6)
    assert 0.001 < abs(p1[0] - p0[0]) + abs(p1[1] - p0[1]) < 0.01  # 100-700 m, not degrees
    ring0 = wgs["boundary"]["features"][0]["geometry"]["coordinates"][0][0]
    ring1 = gcj["boundary"]["features"][0]["geometry"]["coordinates"][0][0]
    assert ring1[0] == ring1[-1]
    assert ring1[0][0] - ring0[0][0] == pytest.approx(p1[0] - p0[0], abs=2e-4)
    assert gcj["area"]["bbox"][0] != wgs["area"]["bbox"][0]
    bd = people.worker.ok(people.worker.get(f"/areas/{tree[G111]}/map?crs=bd09"))
    assert bd["crs"] == "bd09"


def test_a_community_map_shows_only_the_workers_grid(people, category, api, tree):
    _seed(people, category)
    other = api("grid_worker", G112)
    other.building(G112)
    report(other, category, G112)
    body = people.worker.ok(people.worker.get(f"/areas/{tree[C11]}/map"))
    assert len(body["buildings"]["features"]) == 1
    assert len(body["cases"]["features"]) == 1
    chief = api("grid_chief", C11)
    body = chief.ok(chief.get(f"/areas/{tree[C11]}/map"))
    assert len(body["buildings"]["features"]) == 2 and len(body["cases"]["features"]) == 2


def test_a_resident_sees_the_map_without_the_register(people, category, tree):
    _seed(people, category)
    mine = report(people.resident, category, G111, location=at(G111, dx=0.001))
    body = people.resident.ok(people.resident.get(f"/areas/{tree[C11]}/map"))
    assert body["omitted"] == ["buildings", "organisations"]
    assert body["buildings"]["features"] == []
    assert [f["id"] for f in body["cases"]["features"]] == [mine["id"]]  # their own only


def test_map_outside_scope_is_404_and_collections_are_capped(people, category, tree, app):
    assert_error_shape(people.worker.get(f"/areas/{tree['330183002001001']}/map"), 404)
    _seed(people, category)
    people.worker.building(G111, name="9幢")
    app.config["MAP_MAX_FEATURES"] = 1
    try:
        body = people.worker.ok(people.worker.get(f"/areas/{tree[G111]}/map"))
    finally:
        app.config["MAP_MAX_FEATURES"] = 5000
    assert len(body["buildings"]["features"]) == 1 and "buildings" in body["truncated"]


def _footprint(db_session, building_id: int) -> None:
    """The API collects entrance points; footprints come from imports: set one directly."""
    db_session.execute(sa.update(Building).where(Building.id == building_id).values(
        footprint=sa.func.ST_GeomFromText("MULTIPOLYGON(((119.904 30.014, 119.906 30.014, "
                                          "119.906 30.016, 119.904 30.016, 119.904 30.014)))",
                                          4326)))
    db_session.commit()


def test_footprints_are_closed_polygons(people, category, tree, db_session):
    made = _seed(people, category)
    _footprint(db_session, made["building"]["id"])
    body = people.worker.ok(people.worker.get(f"/areas/{tree[G111]}/map?crs=gcj02"))
    geometry = body["buildings"]["features"][0]["geometry"]
    assert geometry["type"] == "MultiPolygon"
    _assert_rfc7946(body["buildings"])


def test_the_print_map_is_svg_from_postgis(people, category, tree, db_session):
    made = _seed(people, category)
    people.worker.building(G111, name="7幢")
    _footprint(db_session, made["building"]["id"])
    response = people.worker.get(f"/areas/{tree[G111]}/map.svg")
    assert response.status_code == 200 and response.mimetype == "image/svg+xml"
    root = ET.fromstring(response.data)
    assert root.tag == f"{SVG_NS}svg" and len(root.get("viewBox").split()) == 4
    boundary = root.find(f"{SVG_NS}g[@id='boundary']/{SVG_NS}path")
    assert boundary is not None and boundary.get("d").startswith("M")
    circles = root.findall(f"{SVG_NS}g[@id='cases']/{SVG_NS}circle")
    assert [c.get("data-id") for c in circles] == [str(made["case"]["id"])]
    drawn = root.findall(f"{SVG_NS}g[@id='buildings']/*")
    assert sorted(e.tag.removeprefix(SVG_NS) for e in drawn) == ["path", "rect"]
    # the building without a footprint is a square centred on its entrance point
    square = root.find(f"{SVG_NS}g[@id='buildings']/{SVG_NS}rect")
    x, y = db_session.execute(sa.select(
        sa.func.ST_X(sa.func.ST_Transform(Building.location, 3857)),
        -sa.func.ST_Y(sa.func.ST_Transform(Building.location, 3857)))
        .where(Building.name == "7幢")).one()
    size = float(square.get("width"))
    assert size == float(square.get("height")) > 0
    assert float(square.get("x")) + size / 2 == pytest.approx(x, abs=0.2)
    assert float(square.get("y")) + size / 2 == pytest.approx(y, abs=0.2)
    assert_error_shape(people.worker.get(f"/areas/{tree['330183002001001']}/map.svg"), 404)

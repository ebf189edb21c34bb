"""Importing boundaries: one test per failure kind, each proving nothing was written."""

from __future__ import annotations

import json
import math

import pytest

from tests.conftest import assert_error_shape
from tests.fixtures.areas import C21, G211, S2, collection, feature, rect
from tests.grid.areas.conftest import area_count

# A fresh district east of the fixture tree: one street, one community, two grids.
DX, SX, CX = "330185", "330185001", "330185001001"
GW, GE = "330185001001001", "330185001001002"
BOX = (120.00, 30.00, 120.02, 30.01)


def base(grid_w: dict | None = None, grid_e: dict | None = None, **community) -> list[dict]:
    """District = street = community = BOX; grid W = west half, grid E = east half."""
    return [
        feature(DX, "新区", "district", None, rect(*BOX)),
        feature(SX, "新街道", "street", DX, rect(*BOX)),
        feature(CX, "新社区", "community", SX, community.get("geometry") or rect(*BOX)),
        feature(GW, "新社区第1网格", "grid", CX, grid_w or rect(120.00, 30.00, 120.01, 30.01)),
        feature(GE, "新社区第2网格", "grid", CX, grid_e or rect(120.01, 30.00, 120.02, 30.01)),
    ]


def post_import(client, headers, features_or_collection, **query):
    body = (features_or_collection if isinstance(features_or_collection, dict)
            else collection(*features_or_collection))
    params = "&".join(f"{k}={str(v).lower() if isinstance(v, bool) else v}"
                      for k, v in query.items())
    return client.post(f"/areas/import?{params}", headers=headers, json=body)


def rejected(response, db_session, before: int, kind: str, code: str) -> dict:
    """422 with the report; nothing written; the report names `kind` for `code`."""
    body = assert_error_shape(response, 422)
    assert area_count(db_session) == before
    report = body["report"]
    assert report["ok"] is False
    assert report["created"] == [] and report["updated"] == []
    matching = [p for p in report["errors"] if p["kind"] == kind and p.get("code") == code]
    assert matching, report["errors"]
    return matching[0]


def test_a_successful_import_creates_the_areas_with_their_area_in_m2(
        client, admin, db_session):
    before = area_count(db_session)
    response = post_import(client, admin, base())
    assert response.status_code == 201, response.get_json()
    report = response.get_json()
    assert report["ok"] is True and report["dry_run"] is False
    assert report["created"] == [DX, SX, CX, GW, GE]
    assert report["errors"] == [] and report["warnings"] == []
    assert area_count(db_session) == before + 5

    grid = client.get(f"/areas/by-code/{GW}", headers=admin).get_json()
    assert grid["level"] == "grid" and grid["name"] == "新社区第1网格"
    # 0.01° x 0.01° at 30.005° N on the WGS-84 ellipsoid, by hand: width along the parallel
    # (prime-vertical radius N cos φ) times height along the meridian (meridional radius M).
    a, e2, phi = 6378137.0, 0.00669437999014, math.radians(30.005)
    w = 1 - e2 * math.sin(phi) ** 2
    n, m = a / math.sqrt(w), a * (1 - e2) / w ** 1.5
    expected = math.radians(0.01) * n * math.cos(phi) * math.radians(0.01) * m
    assert grid["area_m2"] == pytest.approx(expected, rel=0.01)
    assert 1.0e6 < expected < 1.1e6  # ~ 964 m x 1109 m: the formula is not off by a factor
    street = client.get(f"/areas/by-code/{SX}", headers=admin).get_json()
    assert street["area_m2"] == pytest.approx(2 * expected, rel=0.01)
    assert grid["parent_id"] == client.get(f"/areas/by-code/{CX}",
                                           headers=admin).get_json()["id"]


def test_dry_run_reports_and_writes_nothing(client, admin, db_session):
    before = area_count(db_session)
    response = post_import(client, admin, base(), dry_run=True)
    assert response.status_code == 200, response.get_json()
    report = response.get_json()
    assert report["ok"] is True and report["dry_run"] is True and report["features"] == 5
    assert report["created"] == []
    assert area_count(db_session) == before
    assert_error_shape(client.get(f"/areas/by-code/{DX}", headers=admin), 404)


@pytest.mark.parametrize("geometry", [
    {"type": "Point", "coordinates": [120.005, 30.005]},
    {"type": "LineString", "coordinates": [[120.0, 30.0], [120.01, 30.01]]},
    {"type": "Feature", "geometry": rect(120.00, 30.00, 120.01, 30.01)},
    None,
], ids=["point", "line", "feature", "null"])
def test_a_geometry_that_is_not_a_polygon_is_rejected(client, admin, db_session, geometry):
    before = area_count(db_session)
    features = base()
    features[3]["geometry"] = geometry
    problem = rejected(post_import(client, admin, features), db_session, before,
                       "geometry", GW)
    assert problem["feature"] == 3
    if geometry is not None:
        assert "Polygon" in problem["message"]


def test_nan_coordinates_are_rejected(client, admin, db_session):
    """JSON has no NaN, but Python's parser (and so Flask's) accepts the bare token."""
    before = area_count(db_session)
    sentinel = 987.654321
    grid = rect(120.00, 30.00, 120.01, 30.01)
    grid["coordinates"][0][2] = [sentinel, 30.01]
    body = json.dumps(collection(*base(grid_w=grid))).replace(str(sentinel), "NaN")
    assert body.count("NaN") == 1
    response = client.post("/areas/import", headers=admin, data=body,
                           content_type="application/json")
    problem = rejected(response, db_session, before, "geometry", GW)
    assert "finite" in problem["message"]
    assert "coordinates[0][2]" in problem["message"]


def test_out_of_range_coordinates_are_rejected_with_where(client, admin, db_session):
    before = area_count(db_session)
    # lat 120.005: somebody wrote (lat, lon)
    swapped = {"type": "Polygon", "coordinates": [[[30.00, 120.00], [30.00, 120.01],
                                                   [30.01, 120.01], [30.01, 120.00],
                                                   [30.00, 120.00]]]}
    problem = rejected(post_import(client, admin, base(grid_e=swapped)), db_session, before,
                       "geometry", GE)
    assert "latitude out of range" in problem["message"]
    assert problem["location"] == [30.00, 120.00]
    assert problem["feature"] == 4


BOWTIE = {"type": "Polygon", "coordinates": [[[120.00, 30.00], [120.01, 30.01],
                                              [120.01, 30.00], [120.00, 30.01],
                                              [120.00, 30.00]]]}


def test_an_invalid_polygon_is_reported_with_its_location(client, admin, db_session):
    before = area_count(db_session)
    problem = rejected(post_import(client, admin, base(grid_w=BOWTIE)), db_session, before,
                       "invalid", GW)
    assert "Self-intersection" in problem["message"]
    assert "repair=true" in problem["message"]
    assert problem["location"] == pytest.approx([120.005, 30.005])


def test_an_invalid_polygon_is_repaired_when_asked(client, admin, db_session):
    # the repaired bowtie (two triangles) leaves a gap in the community: a warning only
    response = post_import(client, admin, base(grid_w=BOWTIE), repair=True)
    assert response.status_code == 201, response.get_json()
    report = response.get_json()
    repaired = [w for w in report["warnings"] if w["kind"] == "repaired"]
    assert len(repaired) == 1 and repaired[0]["code"] == GW
    assert repaired[0]["location"] == pytest.approx([120.005, 30.005])
    assert GW in report["created"]
    grid = client.get(f"/areas/by-code/{GW}?geometry=true", headers=admin).get_json()
    assert grid["boundary"]["type"] == "MultiPolygon"
    assert len(grid["boundary"]["coordinates"]) == 2  # two triangles
    full = client.get(f"/areas/by-code/{GE}", headers=admin).get_json()["area_m2"]
    assert grid["area_m2"] == pytest.approx(full / 2, rel=0.01)


@pytest.mark.parametrize("code", ["33018500100100", "3301850010010011", "33018500100100x"],
                         ids=["too-short", "too-long", "not-digits"])
def test_a_code_of_the_wrong_length_is_rejected(client, admin, db_session, code):
    before = area_count(db_session)
    features = base()
    features[3]["properties"]["code"] = code
    problem = rejected(post_import(client, admin, features), db_session, before, "code", code)
    assert "15 digits" in problem["message"]


def test_a_code_not_starting_with_the_parent_code_is_rejected(client, admin, db_session):
    before = area_count(db_session)
    features = base()
    features[3]["properties"]["code"] = "330185001009001"  # parent is 330185001001
    problem = rejected(post_import(client, admin, features), db_session, before, "code",
                       "330185001009001")
    assert CX in problem["message"]


def test_a_code_not_fitting_a_parent_in_the_database_is_rejected(
        client, admin, db_session, tree):
    before = area_count(db_session)
    bad = feature("330183001001003", "错编码网格", "grid", C21,
                  rect(119.92, 30.00, 119.93, 30.01))
    problem = rejected(post_import(client, admin, [bad]), db_session, before, "code",
                       "330183001001003")
    assert C21 in problem["message"]


def test_an_unknown_parent_is_rejected(client, admin, db_session):
    before = area_count(db_session)
    features = base()
    features[4]["properties"]["parent_code"] = "330185001002"
    features[4]["properties"]["code"] = "330185001002001"
    problem = rejected(post_import(client, admin, features), db_session, before, "parent",
                       "330185001002001")
    assert "330185001002" in problem["message"]


def test_an_unknown_level_is_rejected(client, admin, db_session):
    before = area_count(db_session)
    features = base()
    features[4]["properties"]["level"] = "block"
    rejected(post_import(client, admin, features), db_session, before, "level", GE)


def test_a_duplicate_code_in_the_file_is_rejected(client, admin, db_session):
    before = area_count(db_session)
    features = base()
    features[4]["properties"]["code"] = GW
    problem = rejected(post_import(client, admin, features), db_session, before,
                       "duplicate", GW)
    assert problem["feature"] == 4
    assert "feature 3" in problem["message"]


def test_a_child_sticking_out_of_its_parent_is_rejected(client, admin, db_session):
    before = area_count(db_session)
    # 0.0001° (~9.6 m) beyond the community's east edge, the default tolerance is 1 m
    features = base(grid_e=rect(120.01, 30.00, 120.0201, 30.01))
    problem = rejected(post_import(client, admin, features), db_session, before,
                       "outside_parent", GE)
    # the strip is 9.6 m x 1109 m; what lies beyond the 1 m tolerance is reported:
    # 8.6 m x 1109 m ≈ 9,600 m²
    width_m = math.radians(0.0001) * 6_383_000 * math.cos(math.radians(30.005))
    assert problem["area_m2"] == pytest.approx((width_m - 1.0) * 1109, rel=0.02)
    lon, lat = problem["location"]
    assert 120.02 <= lon <= 120.0201 and 30.00 <= lat <= 30.01
    # a larger tolerance lets the same file through
    response = post_import(client, admin, features, tolerance_m=15, dry_run=True)
    assert response.status_code == 200, response.get_json()


def test_a_child_within_the_tolerance_passes(client, admin, db_session):
    # 0.000005° ≈ 0.5 m out: coordinate noise, below the default 1 m
    features = base(grid_e=rect(120.01, 30.00, 120.020005, 30.01))
    response = post_import(client, admin, features)
    assert response.status_code == 201, response.get_json()
    assert not [p for p in response.get_json()["warnings"] if p["kind"] == "outside_parent"]


def test_overlapping_siblings_are_rejected_with_area_and_location(client, admin, db_session):
    before = area_count(db_session)
    # the west grid reaches 0.001° (~96 m) into the east grid
    features = base(grid_w=rect(120.00, 30.00, 120.011, 30.01))
    response = post_import(client, admin, features)
    problem = rejected(response, db_session, before, "overlap", GW)
    assert problem["other_code"] == GE
    assert problem["area_m2"] == pytest.approx(0.001 / 0.01 * 1.07e6, rel=0.05)
    lon, lat = problem["location"]
    assert 120.01 <= lon <= 120.011 and 30.00 <= lat <= 30.01
    assert problem["feature"] == 3


def test_overlap_with_a_sibling_already_in_the_database(client, admin, db_session, tree):
    before = area_count(db_session)
    # a third grid in 东社区 drawn over half of its first grid
    intruder = feature("330183002001003", "东社区第3网格", "grid", C21,
                       rect(119.92, 30.00, 119.925, 30.02))
    problem = rejected(post_import(client, admin, [intruder]), db_session, before, "overlap",
                       "330183002001003")
    assert problem["other_code"] == G211


def test_a_gap_inside_the_parent_is_only_a_warning(client, admin, db_session):
    before = area_count(db_session)
    # the east grid stops 0.002° (~190 m) short of the community's east edge
    response = post_import(client, admin, base(grid_e=rect(120.01, 30.00, 120.018, 30.01)))
    assert response.status_code == 201, response.get_json()
    report = response.get_json()
    assert report["errors"] == []
    gaps = [w for w in report["warnings"] if w["kind"] == "gap"]
    assert len(gaps) == 1 and gaps[0]["code"] == CX
    assert gaps[0]["area_m2"] == pytest.approx(0.002 / 0.01 * 1.07e6, rel=0.05)
    lon, lat = gaps[0]["location"]
    assert 120.018 <= lon <= 120.02
    assert area_count(db_session) == before + 5


def test_one_bad_feature_among_good_ones_writes_nothing(client, admin, db_session, tree):
    before = area_count(db_session)
    good = base()
    bad = feature("330183002001003", "坏网格", "grid", C21,
                  {"type": "Point", "coordinates": [119.93, 30.01]})
    response = post_import(client, admin, [*good, bad])
    problem = rejected(response, db_session, before, "geometry", "330183002001003")
    assert problem["feature"] == 5
    assert len(response.get_json()["report"]["errors"]) == 1  # the good ones passed
    assert_error_shape(client.get(f"/areas/by-code/{DX}", headers=admin), 404)


def test_an_export_re_imports_as_a_dry_run(client, admin, tree):
    exported = client.get(f"/areas/{tree[S2]}/export.geojson", headers=admin)
    assert exported.status_code == 200
    data = exported.get_json()
    assert data["type"] == "FeatureCollection"
    codes = [f["properties"]["code"] for f in data["features"]]
    assert codes[0] == S2 and set(codes) == {S2, C21, G211, "330183002001002"}
    response = post_import(client, admin, data, dry_run=True)
    assert response.status_code == 200, response.get_json()
    report = response.get_json()
    assert report["ok"] is True and report["errors"] == [] and report["warnings"] == []
    assert report["features"] == 4


def test_import_needs_area_manage(client, auth_headers, db_session):
    before = area_count(db_session)
    assert_error_shape(post_import(client, auth_headers("street_dispatcher"), base()), 403)
    assert area_count(db_session) == before


def test_a_district_admin_cannot_import_outside_their_district(
        client, tree, member, db_session):
    headers, _ = member("district_admin", "330183")
    before = area_count(db_session)
    # a top-level district is for the system administrator
    rejected(post_import(client, headers, base()), db_session, before, "parent", DX)
    # inside their own district they can add a grid
    ok = post_import(client, headers, [feature("330183002001003", "东社区第3网格", "grid",
                                               C21, rect(119.935, 30.00, 119.94, 30.005))],
                     dry_run=True)
    # overlaps 东社区第2网格: the point is that the answer is about geometry, not scope
    problem = ok.get_json()["report"]["errors"][0]
    assert problem["kind"] == "overlap"


def test_not_a_feature_collection_is_422(client, admin):
    assert_error_shape(client.post("/areas/import", headers=admin,
                                   json={"type": "Feature"}), 422)
    assert_error_shape(client.post("/areas/import", headers=admin,
                                   json={"type": "FeatureCollection", "features": []}), 422)


def test_a_district_admin_re_imports_their_own_export(client, tree, member):
    """The district's parent (the city, or none) is outside their areas, but it does not
    change: re-importing their own district must not be refused for it."""
    headers, _ = member("district_admin", "330183")
    data = client.get(f"/areas/{tree['330183']}/export.geojson", headers=headers).get_json()
    assert len(data["features"]) == 12
    response = post_import(client, headers, data, dry_run=True)
    assert response.status_code == 200, response.get_json()


def test_a_new_parent_boundary_must_still_hold_its_children(client, tree, admin, db_session):
    """Importing only a parent checks its children already in the database."""
    before = area_count(db_session)
    # 东社区 shrunk to its west grid: its second grid (in the database) would stick out
    shrunk = feature(C21, "东社区", "community", S2, rect(119.92, 30.00, 119.93, 30.02))
    body = assert_error_shape(post_import(client, admin, [shrunk]), 422)
    problems = [p for p in body["report"]["errors"] if p["kind"] == "outside_parent"]
    assert [(p["code"], p.get("other_code")) for p in problems] == [
        (C21, "330183002001002")]
    assert problems[0]["feature"] == 0
    assert problems[0]["area_m2"] > 1e6
    assert area_count(db_session) == before


def test_patching_a_boundary_checks_parent_siblings_and_children(client, tree, admin):
    area = client.get(f"/areas/{tree[C21]}", headers=admin).get_json()
    shrink = client.patch(f"/areas/{tree[C21]}", headers=admin, json={
        "boundary": rect(119.92, 30.00, 119.93, 30.02), "version": area["version"]})
    body = assert_error_shape(shrink, 422)
    assert "330183002001002" in str(body["report"]["errors"])
    grid = client.get(f"/areas/{tree[G211]}", headers=admin).get_json()
    grow = client.patch(f"/areas/{tree[G211]}", headers=admin, json={
        "boundary": rect(119.92, 30.00, 119.935, 30.02), "version": grid["version"]})
    overlap = [p for p in assert_error_shape(grow, 422)["report"]["errors"]
               if p["kind"] == "overlap"]
    assert overlap and overlap[0]["other_code"] == "330183002001002"
    out = client.patch(f"/areas/{tree[G211]}", headers=admin, json={
        "boundary": rect(119.91, 30.00, 119.93, 30.02), "version": grid["version"]})
    assert "outside_parent" in str(assert_error_shape(out, 422)["report"]["errors"])
    # a boundary that still fits is accepted, its area recomputed, in one version step
    smaller = client.patch(f"/areas/{tree[G211]}", headers=admin, json={
        "boundary": rect(119.92, 30.00, 119.93, 30.015), "version": grid["version"]})
    assert smaller.status_code == 200, smaller.get_json()
    body = smaller.get_json()
    assert body["area_m2"] == pytest.approx(0.75 * grid["area_m2"], rel=0.01)
    assert body["boundary"]["type"] == "MultiPolygon"
    assert body["version"] == grid["version"] + 1


WORLD = rect(-180, -90, 180, 90)


@pytest.mark.parametrize("where", ["district", "grid"])
def test_a_world_sized_polygon_is_a_422_naming_the_feature(client, admin, db_session, where):
    """Before PostGIS: no area is wider than AREA_MAX_EXTENT_DEG (PostGIS's geography would
    fail with "Antipodal (180 degrees long) edge detected!", a 500)."""
    before = area_count(db_session)
    features = base(grid_w=WORLD) if where == "grid" else [
        feature(DX, "新区", "district", None, WORLD)]
    code, index = (GW, 3) if where == "grid" else (DX, 0)
    problem = rejected(post_import(client, admin, features), db_session, before, "extent", code)
    assert problem["feature"] == index
    assert problem["message"].startswith("The boundary spans 360.0° of longitude by 180.0° "
                                         "of latitude; an area spans at most 30°.")


def test_a_polygon_postgis_refuses_is_a_422_naming_the_feature(client, admin, db_session, app):
    """Past the extent check (set wide here), PostGIS's own refusal is caught: the features
    it refuses are named, nothing is written."""
    saved = app.config["AREA_MAX_EXTENT_DEG"]
    app.config["AREA_MAX_EXTENT_DEG"] = 360
    try:
        before = area_count(db_session)
        for features, code, index in (([feature(DX, "新区", "district", None, WORLD)], DX, 0),
                                      (base(grid_w=WORLD), GW, 3)):
            problem = rejected(post_import(client, admin, features), db_session, before,
                               "geometry", code)
            assert problem["feature"] == index
            assert problem["message"] == ("PostGIS cannot use this boundary: Antipodal "
                                          "(180 degrees long) edge detected!")
    finally:
        app.config["AREA_MAX_EXTENT_DEG"] = saved

"""Vector tiles: layers, attributes and scope decoded with mapbox-vector-tile; low-zoom
aggregation, caps, ETag/304, empty tiles, z/x/y validation and TileJSON."""

from __future__ import annotations

import pytest

from tests.conftest import assert_error_shape
from tests.fixtures.areas import G111, G211, D
from tests.fixtures.cases import report
from tests.fixtures.http import at
from tests.fixtures.maps import decode, tile_at

BOTH = tile_at(at(G111), 14)  # one z14 tile over G111's and G211's centres


def _seed(people, category, api) -> dict:
    """A building, an organisation and an open case in G111 and in G211."""
    w1, w2 = people.worker, people.worker2
    made = {}
    for code, who, dy in ((G111, w1, 0.0), (G211, w2, 0.005)):
        point = at(code, dy=dy)  # G211 is two grids tall: level with G111's centre
        made[code] = {"building": who.building(code, location=point),
                      "organisation": who.organisation(code, location=point),
                      "case": report(who, category, code, location=point)}
    hh = w1.household(w1.house(made[G111]["building"]))
    w1.person(hh, relation_to_head="head")
    w1.person(hh, name="李四", relation_to_head="spouse")
    return made


def _tile(who, path: str, **kw):
    response = who.get(f"/tiles/{path}.mvt", **kw)
    assert response.status_code == 200, response.get_data()
    assert response.mimetype == "application/vnd.mapbox-vector-tile"
    return decode(response.data), response


def test_a_worker_sees_only_their_grid_in_a_tile_covering_two(people, category, api):
    made = _seed(people, category, api)
    assert tile_at(at(G211, dy=0.005), 14) == BOTH
    layers, response = _tile(people.worker, f"buildings,cases,organisations/{BOTH}")
    assert set(layers) == {"buildings", "cases", "organisations"}
    assert [f["properties"]["id"] for f in layers["buildings"]["features"]] == \
        [made[G111]["building"]["id"]]
    assert [f["properties"]["id"] for f in layers["cases"]["features"]] == \
        [made[G111]["case"]["id"]]
    assert [f["properties"]["id"] for f in layers["organisations"]["features"]] == \
        [made[G111]["organisation"]["id"]]
    assert response.headers["Cache-Control"].startswith("private")
    assert response.headers["Vary"] == "Authorization"  # a shared cache keys it per user
    # a district-wide role sees both grids in the same tile
    district = api("district_admin", D)
    layers, _ = _tile(district, f"buildings,cases/{BOTH}")
    assert {f["properties"]["id"] for f in layers["cases"]["features"]} == \
        {made[G111]["case"]["id"], made[G211]["case"]["id"]}
    assert len(layers["buildings"]["features"]) == 2


def test_attributes_carry_no_personal_data(people, category, api):
    made = _seed(people, category, api)
    layers, _ = _tile(people.worker, f"buildings,cases/{BOTH}")
    building = layers["buildings"]["features"][0]["properties"]
    assert building["households"] == 1 and building["persons"] == 2
    assert set(building) <= {"id", "name", "use", "floors", "households", "persons"}
    case = layers["cases"]["features"][0]["properties"]
    assert set(case) == {"id", "state", "category", "light", "overdue"}
    assert case["state"] == made[G111]["case"]["state"] and case["category"] == category.code
    assert case["light"] in ("green", "yellow", "red")


def test_low_zooms_aggregate_points_per_grid(people, category, api):
    _seed(people, category, api)
    report(people.worker, category, G111, description="另一处垃圾")
    district = api("district_admin", D)
    layers, _ = _tile(district, f"cases,buildings/{tile_at(at(G111), 10)}")
    by_grid = {f["properties"]["code"]: f["properties"] for f in layers["cases"]["features"]}
    assert by_grid[G111]["count"] == 2 and by_grid[G111]["overdue"] == 0
    assert by_grid[G211]["count"] == 1
    assert all(f["geometry"]["type"] == "Point" for f in layers["cases"]["features"])
    assert {f["properties"]["code"] for f in layers["buildings"]["features"]} == {G111, G211}
    # the worker's aggregate counts only their grid
    layers, _ = _tile(people.worker, f"cases/{tile_at(at(G111), 10)}")
    assert [(f["properties"]["code"], f["properties"]["count"])
            for f in layers["cases"]["features"]] == [(G111, 2)]


def test_overdue_cases_are_counted_and_kept_first(people, category, api, db_session):
    from tests.fixtures.cases import set_case_times, utc

    made = _seed(people, category, api)
    set_case_times(db_session, made[G111]["case"]["id"], warn_at=utc("2026-01-01T00:00:00Z"),
                   due_at=utc("2026-01-02T00:00:00Z"))
    layers, _ = _tile(people.worker, f"cases/{tile_at(at(G111), 10)}")
    assert layers["cases"]["features"][0]["properties"]["overdue"] == 1
    layers, _ = _tile(people.worker, f"cases/{BOTH}")
    assert layers["cases"]["features"][0]["properties"]["light"] == "red"


def test_features_are_capped_per_tile(people, category, api, app):
    for i in range(3):
        people.worker.building(G111, name=f"{i}幢")
    app.config["TILE_MAX_FEATURES"] = 2
    try:
        layers, _ = _tile(people.worker, f"buildings/{BOTH}")
    finally:
        app.config["TILE_MAX_FEATURES"] = 5000
    assert len(layers["buildings"]["features"]) == 2


def test_areas_layer_is_public_per_level_and_cacheable(client, tree):
    response = client.get(f"/tiles/areas/{tile_at(at(G111), 12)}.mvt")
    assert response.status_code == 200
    assert response.headers["Cache-Control"].startswith("public")
    layers = decode(response.data)
    assert {"district", "street", "community", "grid"} <= set(layers)
    assert G111 in {f["properties"]["code"] for f in layers["grid"]["features"]}
    assert all(f["geometry"]["type"] in ("Polygon", "MultiPolygon")
               for f in layers["grid"]["features"])
    # below the grid level's first zoom, no grids
    low = decode(client.get(f"/tiles/areas/{tile_at(at(G111), 8)}.mvt").data)
    assert "grid" not in low and "district" in low
    # ETag and revalidation
    tag = response.headers["ETag"]
    again = client.get(f"/tiles/areas/{tile_at(at(G111), 12)}.mvt",
                       headers={"If-None-Match": tag})
    assert again.status_code == 304 and not again.data


def test_etag_and_304_on_a_scoped_tile(people, category, api):
    _seed(people, category, api)
    _, first = _tile(people.worker, f"cases/{BOTH}")
    again = people.worker.get(f"/tiles/cases/{BOTH}.mvt",
                              headers={"If-None-Match": first.headers["ETag"]})
    assert again.status_code == 304
    report(people.worker, category, G111, description="新的问题")
    changed = people.worker.get(f"/tiles/cases/{BOTH}.mvt",
                                headers={"If-None-Match": first.headers["ETag"]})
    assert changed.status_code == 200 and changed.headers["ETag"] != first.headers["ETag"]


def test_an_empty_tile_is_an_empty_answer(people):
    response = people.worker.get("/tiles/buildings,cases/14/0/0.mvt")
    assert response.status_code == 200 and response.data == b""
    assert "ETag" in response.headers


@pytest.mark.parametrize("path", ["3/8/0", "3/0/8", "23/0/0"])
def test_tile_numbers_out_of_range_are_422(people, path):
    assert_error_shape(people.worker.get(f"/tiles/cases/{path}.mvt"), 422)


def test_unknown_layers_login_and_permissions(client, people):
    assert_error_shape(people.worker.get(f"/tiles/nope/{BOTH}.mvt"), 404)
    assert_error_shape(client.get(f"/tiles/cases/{BOTH}.mvt"), 401)
    # a department handler has no registry:read: no buildings layer for them
    assert_error_shape(people.handler.get(f"/tiles/buildings/{BOTH}.mvt"), 403)


def test_tilejson_describes_layers_and_bounds(people, client):
    body = people.worker.ok(people.worker.get("/tiles/buildings,cases.json"))
    assert body["tilejson"] == "3.0.0"
    assert body["tiles"][0].endswith("/tiles/buildings,cases/{z}/{x}/{y}.mvt")
    assert {v["id"] for v in body["vector_layers"]} == {"buildings", "cases"}
    assert "light" in next(v for v in body["vector_layers"] if v["id"] == "cases")["fields"]
    assert body["bounds"] == pytest.approx([119.90, 30.01, 119.91, 30.02])  # G111
    areas = client.get("/tiles/areas.json").get_json()
    assert {"street", "grid"} <= {v["id"] for v in areas["vector_layers"]}
    assert areas["bounds"] == pytest.approx([119.90, 30.00, 119.94, 30.02])


def test_private_boundaries_when_configured(client, people, app):
    app.config["MAP_PUBLIC_AREAS"] = False
    try:
        assert_error_shape(client.get(f"/tiles/areas/{tile_at(at(G111), 12)}.mvt"), 401)
        layers, response = _tile(people.worker, f"areas/{tile_at(at(G111), 12)}")
    finally:
        app.config["MAP_PUBLIC_AREAS"] = True
    assert response.headers["Cache-Control"].startswith("private")
    assert [f["properties"]["code"] for f in layers["grid"]["features"]] == [G111]
    assert len(layers["district"]["features"]) == 1  # ancestors: visible by name


def test_another_module_can_plug_a_layer_in(people, category, api):
    """How the services module adds its service points (here: a stand-in over cases)."""
    import sqlalchemy as sa

    from grid.cases.models import Case
    from grid.maps import tiles

    def build(ctx):
        rows = sa.select(Case.id, ctx.mvt_geom(Case.location).label("geom")).where(
            sa.func.ST_Intersects(Case.location, ctx.bbox))
        return tiles.mvt(rows, "service_points")

    _seed(people, category, api)
    real = tiles.layers.get("service_points")
    tiles.register(tiles.Layer("service_points", "Service points (stand-in)", build,
                               {"id": "Service point id"}))
    try:
        layers, _ = _tile(people.worker, f"cases,service_points/{BOTH}")
        described = people.worker.ok(people.worker.get("/tiles/service_points.json"))
    finally:
        tiles.layers["service_points"] = real
    assert set(layers) == {"cases", "service_points"}
    assert [v["id"] for v in described["vector_layers"]] == ["service_points"]


def test_two_workers_of_one_shape_each_see_their_own_grid(people, category, api):
    """The tile statement is built once per scope shape and reused with each caller's
    scope values: two grid workers (one grid each) asking for the same tile one after the
    other each get their own grid's records only."""
    made = _seed(people, category, api)
    for who, mine in ((people.worker, G111), (people.worker2, G211), (people.worker, G111)):
        layers, _ = _tile(who, f"buildings,cases/{BOTH}")
        assert [f["properties"]["id"] for f in layers["cases"]["features"]] == \
            [made[mine]["case"]["id"]]
        assert [f["properties"]["id"] for f in layers["buildings"]["features"]] == \
            [made[mine]["building"]["id"]]


def test_outside_the_tests_transaction_a_tile_is_one_prepared_statement_on_the_read_only_pool(
        client, own_session):
    """As in production (the other tests share one transaction, which @db.read_only leaves
    as it is): the tile is read on the read-only pool, its statement prepared once on the
    connection and executed again by name."""
    import sqlalchemy as sa

    from server import db

    for _ in range(2):
        response = client.get("/tiles/areas/16/0/0.mvt")  # public layer, nothing there
        assert response.status_code == 200 and response.data == b""
    again = client.get("/tiles/areas/16/0/0.mvt",
                       headers={"If-None-Match": response.headers["ETag"]})
    assert again.status_code == 304
    db.session.remove()  # (the test's app context outlives the requests): back to the pool
    with db.read_only_twin(own_session).connect() as conn:  # its one pooled connection
        prepared = conn.scalars(sa.text(
            "SELECT statement FROM pg_prepared_statements WHERE statement LIKE '%ST_AsMVT%'"
        )).all()
        assert len(prepared) == 1
        assert conn.scalar(sa.text("SHOW default_transaction_read_only")) == "on"

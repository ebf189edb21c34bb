"""Where a record was collected: a point outside the collector's grids is a 422 naming the
grid it falls in; poor accuracy is accepted and flagged for review; the point decides the
grid of a record without a parent."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from grid.registry.models import Building, House, Household, Organisation, Person
from tests.conftest import assert_error_shape
from tests.fixtures.areas import G111, G112, G121, G211, NAMES
from tests.fixtures.http import at

MODELS = {"/buildings": Building, "/houses": House, "/households": Household,
          "/persons": Person, "/organisations": Organisation}


def _creates(worker, code: str, accuracy_m: float | None = 8.0) -> dict:
    """A create body per kind whose own point is at the centre of `code`."""
    building = worker.building()
    point = at(code, accuracy_m=accuracy_m)
    return {
        "/buildings": {"name": "3幢", "location": point},
        "/houses": {"building_id": building["id"], "room": "501", "location": point},
        "/households": {"location": point},
        "/persons": {"name": "王秀英", "location": point},
        "/organisations": {"name": "某公司", "location": point},
    }


@pytest.mark.parametrize("url", ["/buildings", "/houses", "/households", "/persons",
                                 "/organisations"])
def test_a_point_outside_the_collectors_grids_is_a_422_naming_that_grid(worker, tree, url,
                                                                       db_session):
    body = _creates(worker, G112)[url]
    response = worker.post(url, body)
    error = assert_error_shape(response, 422)
    assert error["grid"] == {"id": tree[G112], "code": G112, "name": NAMES[G112]}
    assert G112 in error["message"] and NAMES[G112] in error["message"]
    assert G112 in error["errors"]["json"]["location"][0]
    # nothing was stored (but the building the house would have been in)
    stored = db_session.scalar(sa.select(sa.func.count()).select_from(MODELS[url]))
    assert stored == (1 if url == "/buildings" else 0)


def test_a_point_outside_every_grid_is_a_422(worker):
    response = worker.post("/buildings", {"name": "海上", "location": {"lon": 121.5,
                                                                      "lat": 25.0}})
    body = assert_error_shape(response, 422)
    assert "outside every grid" in body["errors"]["json"]["location"][0]


@pytest.mark.parametrize("url", ["/buildings", "/houses", "/households", "/persons",
                                 "/organisations"])
def test_poor_accuracy_is_accepted_and_flagged_for_review(worker, url):
    record = worker.ok(worker.post(url, _creates(worker, G111, accuracy_m=120)[url]), 201)
    assert record["needs_review"] is True
    assert record["review_reasons"] == ["gps_accuracy_120m"]
    assert record["gps"]["accuracy_m"] == 120
    flagged = worker.ok(worker.get(f"{url}?needs_review=true"))
    assert record["id"] in [r["id"] for r in flagged]


@pytest.mark.parametrize(("accuracy", "flagged"), [(50, False), (50.4, True), (None, False)])
def test_the_threshold_is_50_metres(worker, accuracy, flagged):
    record = worker.building(location=at(G111, accuracy_m=accuracy))
    assert record["needs_review"] is flagged
    assert bool(record["review_reasons"]) is flagged


def test_the_point_is_kept_raw_and_as_wgs84(worker):
    # a GCJ-02 point (AMap) near the centre of G111: stored as WGS-84, the raw value kept
    gcj = {"lon": 119.9094, "lat": 30.0128, "crs": "gcj02", "accuracy_m": 5,
           "captured_at": "2026-03-01T09:30:00+08:00", "device_id": "amap-phone"}
    building = worker.building(location=gcj)
    assert building["gps"]["crs"] == "gcj02"
    assert (building["gps"]["raw_lon"], building["gps"]["raw_lat"]) == (119.9094, 30.0128)
    assert building["gps"]["device_id"] == "amap-phone"
    assert building["location"]["crs"] == "wgs84"
    assert building["location"]["lon"] != 119.9094  # converted (the offset is ~500 m here)
    assert abs(building["location"]["lon"] - 119.9094) < 0.01
    in_gcj = worker.ok(worker.get(f"/buildings/{building['id']}?crs=gcj02"))
    assert in_gcj["location"]["crs"] == "gcj02"
    assert abs(in_gcj["location"]["lon"] - 119.9094) < 1e-6
    # ≥ 6 decimals kept (GB/T 37149)
    precise = worker.organisation(location={"lon": 119.9051234, "lat": 30.0151234})
    assert precise["location"]["lon"] == 119.9051234
    assert precise["location"]["lat"] == 30.0151234


def test_the_point_decides_the_grid_of_a_record_without_a_parent(api, tree):
    worker = api("grid_worker", G111, G211)
    assert worker.building(G211)["area_id"] == tree[G211]
    assert worker.organisation(G211)["area_id"] == tree[G211]
    assert worker.household(location=at(G211))["area_id"] == tree[G211]
    assert worker.person(location=at(G211))["area_id"] == tree[G211]


def test_a_child_takes_its_parents_grid_and_a_point_elsewhere_is_flagged(api, tree):
    worker = api("grid_worker", G111, G211)
    building = worker.building(G111)
    house = worker.house(building, location=at(G211))
    assert house["area_id"] == tree[G111]
    assert house["review_reasons"] == [f"gps_in_other_grid_{G211}"]
    plain = worker.house(building, room="302")
    assert plain["area_id"] == tree[G111] and plain["location"] is None
    assert plain["needs_review"] is False


def test_a_child_point_outside_the_collectors_grids_is_refused_too(worker):
    building = worker.building()
    response = worker.post("/houses", {"building_id": building["id"], "room": "1",
                                       "location": at(G121)})
    assert assert_error_shape(response, 422)["grid"]["code"] == G121


def test_updating_a_point_follows_the_same_rules(api, tree):
    worker = api("grid_worker", G111, G211)
    org = worker.organisation(G111)
    response = worker.patch(f"/organisations/{org['id']}",
                            {"location": at(G112), "version": org["version"]})
    assert assert_error_shape(response, 422)["grid"]["code"] == G112
    moved = worker.ok(worker.patch(f"/organisations/{org['id']}",
                                   {"location": at(G211, accuracy_m=80),
                                    "version": org["version"]}))
    assert moved["area_id"] == tree[G211]
    assert moved["review_reasons"] == ["gps_accuracy_80m"]
    person = worker.person()
    response = worker.patch(f"/persons/{person['id']}",
                            {"location": at(G121), "version": person["version"]})
    assert assert_error_shape(response, 422)["grid"]["code"] == G121
    history = worker.ok(worker.get(f"/organisations/{org['id']}/history"))
    change = history[-1]["changes"]["location"]
    assert change[1]["lon"] == at(G211)["lon"] and change[0]["lon"] == at(G111)["lon"]


@pytest.mark.parametrize("bad", [
    {"lon": 30.015, "lat": 119.905},  # swapped
    {"lon": 200, "lat": 30},
    {"lon": "119.9", "lat": 30.0},
    {"lon": 119.9, "lat": 30.0, "crs": "epsg3857"},
    {"lat": 30.0},
])
def test_malformed_points_are_a_422(worker, bad):
    body = assert_error_shape(worker.post("/buildings", {"name": "x", "location": bad}), 422)
    assert "location" in body["errors"]["json"]

"""geo.fields: the one Point field every module uses, and the output crs of a request."""

from __future__ import annotations

import math
from datetime import UTC, datetime

import marshmallow as ma
import pytest
from hypothesis import given
from hypothesis import strategies as st

from geo import crs
from geo.fields import GeoJSONGeometry, GpsFix, Near, Point, output_crs, set_output_crs

# Well inside China's box (the conversions jump at its edges) and on land-ish latitudes.
china_lon = st.floats(74.0, 134.0)
china_lat = st.floats(19.0, 53.0)


class Fix(ma.Schema):
    at = Point(required=True)


class Shape(ma.Schema):
    boundary = GeoJSONGeometry()


def load(point) -> GpsFix:
    return Fix().load({"at": point})["at"]


def errors(point) -> dict:
    with pytest.raises(ma.ValidationError) as info:
        load(point)
    return info.value.messages["at"]


@pytest.fixture
def answer_in():
    """Set the output crs as a request's ?crs= would; always back to WGS-84 afterwards."""
    yield set_output_crs
    set_output_crs(None)


# --- input ----------------------------------------------------------------------------------


def test_wgs84_is_the_default_and_kept_as_is():
    fix = load({"lon": 119.96, "lat": 30.05})
    assert fix == GpsFix(lon=119.96, lat=30.05, crs="wgs84", raw_lon=119.96, raw_lat=30.05)
    assert fix.wkt == "SRID=4326;POINT(119.96 30.05)"


def test_integers_are_numbers():
    fix = load({"lon": 120, "lat": 30})
    assert (fix.lon, fix.lat) == (120.0, 30.0) and isinstance(fix.lon, float)


@pytest.mark.parametrize("system,forward", [("gcj02", crs.wgs84_to_gcj02),
                                            ("bd09", crs.wgs84_to_bd09)])
def test_gcj02_and_bd09_are_converted_to_wgs84_keeping_the_raw_values(system, forward):
    raw_lon, raw_lat = forward(119.96, 30.05)
    fix = load({"lon": raw_lon, "lat": raw_lat, "crs": system})
    assert fix.crs == system
    assert (fix.raw_lon, fix.raw_lat) == (raw_lon, raw_lat)
    assert fix.lon == pytest.approx(119.96, abs=1e-8)
    assert fix.lat == pytest.approx(30.05, abs=1e-8)
    # the offset is hundreds of metres: the conversion really happened
    assert abs(raw_lon - 119.96) > 0.003


def test_the_other_fields_are_kept():
    at = datetime(2026, 3, 1, 8, 30, tzinfo=UTC)
    fix = load({"lon": 119.96, "lat": 30.05, "accuracy_m": 12.5,
                "captured_at": at.isoformat(), "device_id": "android-1"})
    assert (fix.accuracy_m, fix.captured_at, fix.device_id) == (12.5, at, "android-1")


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
@pytest.mark.parametrize("name", ["lon", "lat"])
def test_non_finite_numbers_are_rejected(name, value):
    """JSON cannot carry NaN, but Python callers (imports, the registry) can."""
    point = {"lon": 119.96, "lat": 30.05, name: value}
    assert "finite" in str(errors(point)[name])


@pytest.mark.parametrize("name", ["lon", "lat"])
def test_a_huge_integer_is_rejected_not_a_crash(name):
    point = {"lon": 119.96, "lat": 30.05, name: 10**400}
    assert name in errors(point)


@pytest.mark.parametrize("point,name", [
    ({"lon": 180.0001, "lat": 30.0}, "lon"),
    ({"lon": -181, "lat": 30.0}, "lon"),
    ({"lon": 119.96, "lat": 90.5}, "lat"),
    ({"lon": 119.96, "lat": -91}, "lat"),
])
def test_out_of_range_is_rejected(point, name):
    assert name in errors(point)


def test_the_edges_of_the_ranges_are_accepted():
    assert load({"lon": 180, "lat": -90}).lon == 180.0
    assert load({"lon": -180, "lat": 90}).lat == 90.0


@pytest.mark.parametrize("value", [True, False, "119.96", None, [119.96], {"v": 1}])
def test_booleans_strings_and_other_things_are_not_numbers(value):
    point = {"lon": value, "lat": 30.05}
    assert "lon" in errors(point)


@pytest.mark.parametrize("point", [
    {"lon": 30.05, "lat": 119.96},  # 富阳, swapped: latitude out of range
    {"lon": 39.47, "lat": 75.99},  # Kashgar, swapped: both in range, but in China only swapped
])
def test_an_obviously_swapped_point_is_rejected_saying_so(point):
    assert "swapped" in str(errors(point))


@pytest.mark.parametrize("point", [(2.35, 48.85), (-74.0, 40.7), (151.2, -33.87)],
                         ids=["paris", "new-york", "sydney"])
@pytest.mark.parametrize("system", ["wgs84", "gcj02", "bd09"])
def test_a_valid_point_outside_china_is_accepted_unchanged(point, system):
    fix = load({"lon": point[0], "lat": point[1], "crs": system})
    assert (fix.lon, fix.lat) == point  # no offset applies abroad


@pytest.mark.parametrize("point", [
    {"lon": 119.96, "lat": 30.05, "crs": "epsg4326"},
    {"lon": 119.96, "lat": 30.05, "crs": "GCJ02"},
    {"lon": 119.96, "lat": 30.05, "accuracy_m": -1},
    {"lon": 119.96, "lat": 30.05, "accuracy_m": math.nan},
    {"lon": 119.96, "lat": 30.05, "captured_at": "2026-03-01T08:30:00"},  # no offset
    {"lon": 119.96, "lat": 30.05, "altitude": 12},
    {"lat": 30.05},
    {"lon": 119.96},
])
def test_bad_companions_are_rejected(point):
    errors(point)


@pytest.mark.parametrize("value", [[119.96, 30.05], "119.96,30.05", 119.96, None])
def test_only_an_object_is_a_point(value):
    with pytest.raises(ma.ValidationError):
        Fix().load({"at": value})


# --- output ---------------------------------------------------------------------------------


def test_serializes_in_wgs84_by_default():
    assert output_crs() == "wgs84"
    out = Fix().dump({"at": GpsFix(lon=119.96, lat=30.05)})
    assert out == {"at": {"lon": 119.96, "lat": 30.05, "crs": "wgs84"}}


@pytest.mark.parametrize("system,forward", [("gcj02", crs.wgs84_to_gcj02),
                                            ("bd09", crs.wgs84_to_bd09)])
def test_serializes_in_the_output_crs(answer_in, system, forward):
    answer_in(system)
    out = Fix().dump({"at": GpsFix(lon=119.96, lat=30.05)})["at"]
    lon, lat = forward(119.96, 30.05)
    assert out == {"lon": round(lon, 7), "lat": round(lat, 7), "crs": system}


def test_geometry_serializes_in_the_output_crs(answer_in):
    ring = [[119.96, 30.05], [119.97, 30.05], [119.97, 30.06], [119.96, 30.05]]
    geometry = {"type": "Polygon", "coordinates": [ring]}
    assert Shape().dump({"boundary": geometry}) == {"boundary": geometry}
    answer_in("gcj02")
    out = Shape().dump({"boundary": geometry})["boundary"]
    assert out["coordinates"][0][1] == pytest.approx(list(crs.wgs84_to_gcj02(119.97, 30.05)),
                                                     abs=1e-7)


def test_none_serializes_to_none():
    assert Fix().dump({"at": None}) == {"at": None}


def test_an_unknown_output_crs_is_refused_and_none_resets(answer_in):
    with pytest.raises(ma.ValidationError):
        answer_in("bogus")
    answer_in("bd09")
    assert output_crs() == "bd09"
    answer_in(None)
    assert output_crs() == "wgs84"


# --- round trips ----------------------------------------------------------------------------


@given(china_lon, china_lat, st.sampled_from(["gcj02", "bd09"]))
def test_what_a_phone_sends_in_any_crs_is_stored_as_the_wgs84_it_came_from(lon, lat, system):
    raw = crs.from_wgs84(lon, lat, system)
    fix = load({"lon": raw[0], "lat": raw[1], "crs": system})
    assert fix.lon == pytest.approx(lon, abs=1e-8)
    assert fix.lat == pytest.approx(lat, abs=1e-8)


@given(china_lon, china_lat, st.sampled_from(["wgs84", "gcj02", "bd09"]))
def test_dump_then_load_in_the_same_crs_gives_back_the_stored_point(lon, lat, system):
    set_output_crs(system)
    try:
        out = Fix().dump({"at": GpsFix(lon=lon, lat=lat)})["at"]
    finally:
        set_output_crs(None)
    fix = load(out)
    # 7 decimals on the wire: about a centimetre
    assert fix.lon == pytest.approx(lon, abs=2e-7)
    assert fix.lat == pytest.approx(lat, abs=2e-7)


@given(st.floats(-180, 180), st.floats(-90, 90))
def test_any_point_in_range_is_accepted_or_called_swapped(lon, lat):
    try:
        fix = load({"lon": lon, "lat": lat})
    except ma.ValidationError as exc:
        assert "swapped" in str(exc.messages)
        assert crs.out_of_china(lon, lat) and not crs.out_of_china(lat, lon)
    else:
        assert (fix.lon, fix.lat) == (lon, lat)


# --- ?near= ---------------------------------------------------------------------------------


class NearQuery(ma.Schema):
    near = Near()
    near_any = Near(radius_required=False)
    crs = ma.fields.String()


def test_near_is_read_in_the_sibling_crs_and_the_radius_is_kept():
    lon, lat = crs.wgs84_to_gcj02(119.96, 30.05)
    got = NearQuery().load({"near": f"{lon},{lat},30", "crs": "gcj02"})["near"]
    assert got[0] == pytest.approx(119.96, abs=1e-8) and got[1] == pytest.approx(30.05, abs=1e-8)
    assert got[2] == 30.0
    assert NearQuery().load({"near": "119.96,30.05,30"})["near"] == (119.96, 30.05, 30.0)


def test_near_radius_may_be_left_out_only_where_allowed():
    assert NearQuery().load({"near_any": "119.96,30.05"})["near_any"] == (119.96, 30.05, None)
    with pytest.raises(ma.ValidationError) as info:
        NearQuery().load({"near": "119.96,30.05", "near_any": "119.96,30.05,0"})
    assert info.value.messages == {"near": ["lon,lat,radius_m (radius ≤ 50 km)"],
                                   "near_any": ["lon,lat[,radius_m] (radius ≤ 50 km)"]}

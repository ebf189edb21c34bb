"""geo.crs: round trips, the China box, and vectors published by other implementations."""

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from geo import crs

# China's rough box, shrunk by 0.05 degrees: along the box's edges the forward maps jump (the
# offset, < 0.02 degrees, can carry a point across the edge), so no inverse can be exact there.
_EDGE = 0.05
china_lon = st.floats(72.004 + _EDGE, 137.8347 - _EDGE)
china_lat = st.floats(0.8293 + _EDGE, 55.8271 - _EDGE)
world_lon = st.floats(-180.0, 180.0)
world_lat = st.floats(-90.0, 90.0)

ROUND_TRIP_M = 0.01


def haversine_m(a: tuple[float, float], b: tuple[float, float]) -> float:
    """Great-circle distance in metres between two (lon, lat) points (mean Earth radius)."""
    lon1, lat1, lon2, lat2 = map(math.radians, (*a, *b))
    h = (
        math.sin((lat2 - lat1) / 2) ** 2
        + math.cos(lat1) * math.cos(lat2) * math.sin((lon2 - lon1) / 2) ** 2
    )
    return 2 * 6371008.8 * math.asin(math.sqrt(h))


@given(china_lon, china_lat)
def test_wgs84_gcj02_round_trip(lon, lat):
    gcj = crs.from_wgs84(lon, lat, "gcj02")
    assert haversine_m(crs.to_wgs84(*gcj, "gcj02"), (lon, lat)) < ROUND_TRIP_M


@given(china_lon, china_lat)
def test_wgs84_bd09_round_trip(lon, lat):
    bd = crs.from_wgs84(lon, lat, "bd09")
    assert haversine_m(crs.to_wgs84(*bd, "bd09"), (lon, lat)) < ROUND_TRIP_M


@given(china_lon, china_lat)
def test_gcj02_bd09_round_trip(lon, lat):
    bd = crs.convert(lon, lat, "gcj02", "bd09")
    assert haversine_m(crs.convert(*bd, "bd09", "gcj02"), (lon, lat)) < ROUND_TRIP_M


@given(china_lon, china_lat)
def test_inverses_reproduce_their_input(lon, lat):
    """The iterative inverses are exact: the forward formula gives back the input (1e-9 deg)."""
    x, y = crs.wgs84_to_gcj02(*crs.gcj02_to_wgs84(lon, lat))
    assert abs(x - lon) < 1e-9 and abs(y - lat) < 1e-9
    x, y = crs.gcj02_to_bd09(*crs.bd09_to_gcj02(lon, lat))
    assert abs(x - lon) < 1e-9 and abs(y - lat) < 1e-9


@given(china_lon, china_lat, st.sampled_from(crs.CRS), st.sampled_from(crs.CRS))
def test_convert_agrees_with_going_through_wgs84(lon, lat, src, dst):
    direct = crs.convert(lon, lat, src, dst)
    via = crs.from_wgs84(*crs.to_wgs84(lon, lat, src), dst)
    assert haversine_m(direct, via) < ROUND_TRIP_M


@given(world_lon, world_lat, st.sampled_from(crs.CRS))
def test_no_offset_outside_china(lon, lat, system):
    if not crs.out_of_china(lon, lat):
        lon, lat = -lon, -lat  # mirror into the southern/western hemisphere: outside the box
    assert crs.out_of_china(lon, lat)
    assert crs.to_wgs84(lon, lat, system) == (lon, lat)
    assert crs.from_wgs84(lon, lat, system) == (lon, lat)


@pytest.mark.parametrize(
    "point",
    [(72.0, 30.0), (137.9, 30.0), (100.0, 0.8), (100.0, 55.9), (-74.006, 40.7128), (0.0, 0.0)],
)
def test_box_edges_and_far_away_points_are_outside(point):
    assert crs.out_of_china(*point)


def test_gcj02_offset_near_fuyang_is_hundreds_of_metres():
    """DOMAIN.md: the demo district is near 119.96 E 30.05 N; the offset there must matter."""
    wgs = (119.96, 30.05)
    offset = haversine_m(wgs, crs.from_wgs84(*wgs, "gcj02"))
    assert 100 < offset < 700


# Published vectors of the same formulas (a = 6378245.0, ee = 0.00669342162296594323,
# x_pi = pi*3000/180). The forward ones must match to the last bit.


def test_forward_vectors_from_wandergis_coordtransform():
    # wandergis/coordtransform README (the JavaScript original that most ports copy):
    #   wgs84togcj02(116.404, 39.915) -> [116.41024449916938, 39.91640428150164]
    #   gcj02tobd09(116.404, 39.915)  -> [116.41036949371029, 39.92133699351021]
    assert crs.convert(116.404, 39.915, "wgs84", "gcj02") == (116.41024449916938, 39.91640428150164)
    assert crs.convert(116.404, 39.915, "gcj02", "bd09") == (116.41036949371029, 39.92133699351021)
    # geocraft (a Python port) README: wgs84_to_bd09(116.404, 39.915), via GCJ-02.
    assert crs.from_wgs84(116.404, 39.915, "bd09") == (116.41662724378733, 39.922699552216216)


@pytest.mark.parametrize(
    ("wgs", "gcj"),
    [
        # googollee/eviltransform python/test.py, given there as (lat, lon); asserted there to
        # 6 decimals (some of its ports use a = 6378137, which moves the result ~1 cm).
        ((121.5272106, 31.1774276), (121.531541859215, 31.17530398364597)),  # Shanghai
        ((113.912316, 22.543847), (113.9171764808363, 22.540796131694766)),  # Shenzhen
        ((116.377817, 39.911954), (116.38404722455657, 39.91334545536069)),  # Beijing
    ],
)
def test_vectors_from_eviltransform(wgs, gcj):
    assert crs.from_wgs84(*wgs, "gcj02") == pytest.approx(gcj, abs=1e-6)
    assert crs.to_wgs84(*gcj, "gcj02") == pytest.approx(wgs, abs=1e-6)


def test_inverse_vector_from_gcoord():
    # hujiulong/gcoord test/unit/crs/GCJ02.spec.js: GCJ02 -> WGS84 of [123, 45] is
    # [122.99395597, 44.99804071] to 5 decimals (gcoord iterates too, to 1e-6 degrees).
    assert crs.to_wgs84(123.0, 45.0, "gcj02") == pytest.approx(
        (122.99395597, 44.99804071), abs=5e-6
    )


def test_exact_inverse_beats_the_one_step_inverse():
    # wandergis/coordtransform README: the one-step gcj02towgs84(116.404, 39.915) gives
    # [116.39775550083061, 39.91359571849836]; it maps back 6 cm from the input here (the
    # one-step error grows to metres where the offset varies fast).
    one_step = (116.39775550083061, 39.91359571849836)
    exact = crs.to_wgs84(116.404, 39.915, "gcj02")
    assert haversine_m(crs.from_wgs84(*one_step, "gcj02"), (116.404, 39.915)) > ROUND_TRIP_M
    assert haversine_m(crs.from_wgs84(*exact, "gcj02"), (116.404, 39.915)) < 0.001
    assert haversine_m(exact, one_step) < 5  # DOMAIN.md: the one-step error is up to ~4.7 m


def test_exact_bd09_inverse_is_close_to_the_closed_form():
    # wandergis/coordtransform README: the closed-form bd09togcj02(116.404, 39.915) gives
    # [116.39762729119315, 39.90865673957631], a few centimetres off.
    closed_form = (116.39762729119315, 39.90865673957631)
    exact = crs.convert(116.404, 39.915, "bd09", "gcj02")
    assert haversine_m(exact, closed_form) < 0.1
    assert haversine_m(crs.convert(*exact, "gcj02", "bd09"), (116.404, 39.915)) < 0.001


def test_same_system_is_identity():
    for system in crs.CRS:
        assert crs.convert(119.96, 30.05, system, system) == (119.96, 30.05)


@pytest.mark.parametrize("bad", ["WGS84", "gcj-02", "epsg:4326", "", "bd09mc"])
def test_unknown_crs_raises(bad):
    with pytest.raises(ValueError, match="unknown coordinate system"):
        crs.to_wgs84(119.96, 30.05, bad)
    with pytest.raises(ValueError, match="unknown coordinate system"):
        crs.from_wgs84(119.96, 30.05, bad)
    with pytest.raises(ValueError, match="unknown coordinate system"):
        crs.convert(119.96, 30.05, "wgs84", bad)


@pytest.mark.parametrize(
    ("lon", "lat"),
    [(math.nan, 30.0), (120.0, math.inf), (-math.inf, 30.0), (190.0, 30.0), (30.05, 119.96)],
)
def test_non_finite_or_out_of_range_points_raise(lon, lat):
    # (30.05, 119.96) is the demo district with lon and lat swapped: latitude > 90.
    with pytest.raises(ValueError):
        crs.to_wgs84(lon, lat, "gcj02")

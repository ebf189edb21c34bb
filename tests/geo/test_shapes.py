"""geo.shapes: parsing, validity reports with a location, repair, overlaps."""

import math

import pytest
import shapely
from hypothesis import given
from hypothesis import strategies as st
from shapely.geometry import MultiPolygon, Point, Polygon, box

from geo.shapes import (
    ShapeError,
    ShapeProblem,
    as_multipolygon,
    check_valid,
    overlap_location,
    parse_geometry,
    repair,
)

# A grid-sized square near the demo district (119.96 E 30.05 N).
SQUARE = [[119.96, 30.05], [119.97, 30.05], [119.97, 30.06], [119.96, 30.06], [119.96, 30.05]]
# The same corners visited in the wrong order: the edges cross at the square's centre.
BOWTIE = [[119.96, 30.05], [119.97, 30.06], [119.97, 30.05], [119.96, 30.06], [119.96, 30.05]]
CENTRE = [119.965, 30.055]


def polygon(*rings):
    return {"type": "Polygon", "coordinates": [list(r) for r in rings]}


def test_polygon_accepted():
    geom = parse_geometry(polygon(SQUARE))
    assert isinstance(geom, Polygon)
    assert check_valid(geom) is None


def test_multipolygon_accepted():
    other = [[x + 0.02, y] for x, y in SQUARE]
    geom = parse_geometry({"type": "MultiPolygon", "coordinates": [[SQUARE], [other]]})
    assert isinstance(geom, MultiPolygon)
    assert len(geom.geoms) == 2
    assert check_valid(geom) is None
    assert as_multipolygon(geom) is geom


def test_polygon_with_hole_and_altitudes():
    outer = [
        [x, y, 12.5]
        for x, y in [[119.9, 30.0], [120.0, 30.0], [120.0, 30.1], [119.9, 30.1], [119.9, 30.0]]
    ]
    geom = parse_geometry(polygon(outer, SQUARE))
    assert len(geom.interiors) == 1
    assert not geom.has_z  # altitudes dropped: boundaries are 2-D
    assert check_valid(geom) is None


@pytest.mark.parametrize(
    "geojson",
    [
        {"type": "Point", "coordinates": [119.96, 30.05]},
        {"type": "LineString", "coordinates": SQUARE},
        {"type": "GeometryCollection", "geometries": []},
        {"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [SQUARE]}},
        {"coordinates": [SQUARE]},
        {"type": "Polygon"},
        "POLYGON ((0 0, 1 0, 1 1, 0 0))",
    ],
)
def test_non_polygons_rejected(geojson):
    with pytest.raises(ShapeError) as info:
        parse_geometry(geojson)
    assert info.value.location is None


def test_point_rejection_names_the_type():
    with pytest.raises(ShapeError, match="got 'Point'"):
        parse_geometry({"type": "Point", "coordinates": [119.96, 30.05]})


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_coordinates_rejected(bad):
    ring = [list(p) for p in SQUARE]
    ring[2] = [bad, 30.06]
    with pytest.raises(ShapeError, match=r"coordinates\[0\]\[2\].*finite") as info:
        parse_geometry(polygon(ring))
    assert info.value.location is None  # a NaN is no place to point at


@given(st.sampled_from([math.nan, math.inf, -math.inf]), st.integers(0, 4), st.integers(0, 1))
def test_any_non_finite_value_anywhere_is_rejected(bad, index, axis):
    ring = [list(p) for p in SQUARE]
    ring[index][axis] = bad
    with pytest.raises(ShapeError):
        parse_geometry(polygon(ring))


@pytest.mark.parametrize(
    ("position", "word"),
    [
        ([180.5, 30.05], "longitude"),
        ([-181.0, 30.05], "longitude"),
        ([30.05, 119.96], "latitude"),
        ([119.96, -90.01], "latitude"),
    ],
)
def test_out_of_range_rejected_with_location(position, word):
    ring = [list(p) for p in SQUARE]
    ring[1] = position
    with pytest.raises(ShapeError, match=word) as info:
        parse_geometry(polygon(ring))
    assert info.value.location == position
    assert isinstance(info.value, ValueError)
    assert info.value.problem == ShapeProblem(info.value.reason, position)


@pytest.mark.parametrize(
    ("coordinates", "fragment"),
    [
        ([SQUARE[:-1]], "not closed"),
        ([SQUARE[:2] + SQUARE[:1]], "at least 4"),
        ([[[119.96, "30.05"], *SQUARE[1:]]], "numbers"),
        ([[[119.96, True], *SQUARE[1:]]], "numbers"),
        ([[[119.96], *SQUARE[1:]]], r"\[lon, lat\]"),
        ([[]], "empty ring"),
        ([], "empty polygon"),
        ("nope", "array"),
    ],
)
def test_malformed_polygons_rejected(coordinates, fragment):
    with pytest.raises(ShapeError, match=fragment):
        parse_geometry({"type": "Polygon", "coordinates": coordinates})


def test_unclosed_ring_reports_where_it_starts():
    with pytest.raises(ShapeError) as info:
        parse_geometry(polygon(SQUARE[:-1]))
    assert info.value.location == SQUARE[0]


def test_bad_part_of_multipolygon_has_its_path():
    with pytest.raises(ShapeError, match=r"coordinates\[1\]\[0\]\[1\]"):
        parse_geometry(
            {
                "type": "MultiPolygon",
                "coordinates": [[SQUARE], [[SQUARE[0], [200, 0], *SQUARE[2:]]]],
            }
        )


def test_bowtie_self_intersection_reported_with_location():
    geom = parse_geometry(polygon(BOWTIE))  # well-formed GeoJSON, broken topology
    problem = check_valid(geom)
    assert problem is not None
    assert problem.reason == "Self-intersection"
    assert problem.location == pytest.approx(CENTRE)


def test_other_validity_reasons_are_located():
    outer = [[119.9, 30.0], [120.0, 30.0], [120.0, 30.1], [119.9, 30.1], [119.9, 30.0]]
    away = [[x + 1, y] for x, y in SQUARE]
    problem = check_valid(parse_geometry(polygon(outer, away)))
    assert problem == ShapeProblem("Hole lies outside shell", away[0])


def test_overlapping_multipolygon_parts_are_invalid():
    shifted = [[x + 0.005, y] for x, y in SQUARE]
    problem = check_valid(
        parse_geometry({"type": "MultiPolygon", "coordinates": [[SQUARE], [shifted]]})
    )
    assert problem is not None and problem.location is not None


def test_repair_turns_bowtie_into_valid_multipolygon():
    fixed = repair(parse_geometry(polygon(BOWTIE)))
    assert isinstance(fixed, MultiPolygon)
    assert fixed.is_valid
    assert check_valid(fixed) is None
    assert len(fixed.geoms) == 2  # the two triangles, meeting at the centre
    assert fixed.area == pytest.approx(0.01 * 0.01 / 2)
    assert shapely.equals(fixed.geoms[0].intersection(fixed.geoms[1]), Point(CENTRE))


def test_repair_keeps_valid_geometry_and_wraps_polygon():
    geom = parse_geometry(polygon(SQUARE))
    fixed = repair(geom)
    assert isinstance(fixed, MultiPolygon)
    assert shapely.equals(fixed, geom)


def test_repair_keeps_a_hole_outside_its_shell_as_a_separate_piece():
    # GEOS's choice (both make_valid methods): the misplaced hole becomes a second polygon.
    outer = [[119.9, 30.0], [120.0, 30.0], [120.0, 30.1], [119.9, 30.1], [119.9, 30.0]]
    away = [[x + 1, y] for x, y in SQUARE]
    fixed = repair(parse_geometry(polygon(outer, away)))
    assert fixed.is_valid
    assert shapely.equals(fixed, MultiPolygon([Polygon(outer), Polygon(away)]))


def test_repair_keeps_all_the_area_a_looping_ring_covers():
    # The ring crosses itself and covers the unit square [1,2]x[0,1] twice; the "structure"
    # method keeps it (area 6), where "linework" would cut it out as a hole (area 5).
    looping = Polygon([(0, 0), (2, 0), (2, 2), (1, 2), (1, -1), (3, -1), (3, 1), (0, 1), (0, 0)])
    assert check_valid(looping) is not None
    fixed = repair(looping)
    assert fixed.is_valid
    assert fixed.area == pytest.approx(6.0)
    assert fixed.contains(Point(1.5, 0.5))


def test_repair_drops_non_polygonal_leftovers():
    spike = Polygon([(0, 0), (1, 0), (1, 1), (1, 2), (1, 1), (0, 1), (0, 0)])
    fixed = repair(spike)
    assert isinstance(fixed, MultiPolygon)
    assert fixed.is_valid
    assert shapely.equals(fixed, box(0, 0, 1, 1))


def test_repair_of_a_collapsed_polygon_is_empty():
    flat = Polygon([(0, 0), (1, 0), (2, 0), (0, 0)])
    fixed = repair(flat)
    assert isinstance(fixed, MultiPolygon)
    assert fixed.is_empty


def test_as_multipolygon():
    square = box(0, 0, 1, 1)
    assert as_multipolygon(square) == MultiPolygon([square])
    assert as_multipolygon(Polygon()).is_empty
    with pytest.raises(ShapeError, match="Point"):
        as_multipolygon(Point(0, 0))


def test_overlap_location_is_inside_the_overlap():
    a = box(119.96, 30.05, 119.97, 30.06)
    b = box(119.965, 30.055, 119.975, 30.065)
    lon, lat = overlap_location(a, b)
    assert a.intersection(b).contains(Point(lon, lat))


def test_overlap_location_picks_the_largest_piece():
    a = MultiPolygon([box(0, 0, 1, 1), box(10, 0, 12, 2)])
    b = MultiPolygon([box(0.9, 0.9, 2, 2), box(9, 0, 11, 2)])
    lon, lat = overlap_location(a, b)
    assert box(10, 0, 11, 2).contains(Point(lon, lat))


def test_touching_or_disjoint_is_no_overlap():
    a = box(0, 0, 1, 1)
    assert overlap_location(a, box(1, 0, 2, 1)) is None  # shared edge
    assert overlap_location(a, box(1, 1, 2, 2)) is None  # shared corner
    assert overlap_location(a, box(5, 5, 6, 6)) is None


def test_problem_is_frozen_and_error_prints_location():
    error = ShapeError("Self-intersection", [119.965, 30.055])
    assert str(error) == "Self-intersection at [119.965, 30.055]"
    with pytest.raises(AttributeError):
        error.problem.reason = "other"  # type: ignore[misc]

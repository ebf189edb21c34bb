"""Validation and repair of imported area boundaries (pure shapely, no database).

Boundaries arrive as GeoJSON from surveys, other systems and hand-drawn edits, and are often
broken: self-intersections, rings that are not closed, swapped lon/lat, NaN. Each problem is
reported with *where* it is (``[lon, lat]``) so that whoever maintains the data can find it.

The steps are separate on purpose: ``parse_geometry`` rejects what cannot be a boundary at all;
``check_valid`` reports topology errors without changing anything; ``repair`` fixes them when
the importer chooses to. Area, containment and overlap checks in metres belong to PostGIS
(geography); ``overlap_location`` is here only because reports need a point to show.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from numbers import Real
from typing import Any

import shapely
from shapely.errors import GEOSException
from shapely.geometry import GeometryCollection, MultiPolygon, Polygon
from shapely.geometry.base import BaseGeometry

_ACCEPTED_TYPES = ("Polygon", "MultiPolygon")
# GEOS validity reasons look like "Self-intersection[120.05 30.05]" (optionally with a Z).
_REASON = re.compile(r"^(?P<reason>[^\[]*?)\s*\[(?P<x>[^\s\]]+)\s+(?P<y>[^\s\]]+)[^\]]*\]\s*$")


@dataclass(frozen=True)
class ShapeProblem:
    """What is wrong with a geometry and where ([lon, lat]), when a place is known."""

    reason: str
    location: list[float] | None = None


class ShapeError(ValueError):
    """A geometry that cannot be used as a boundary; ``problem`` says what and where."""

    def __init__(self, reason: str, location: list[float] | None = None) -> None:
        super().__init__(reason, location)
        self.problem = ShapeProblem(reason, location)

    @property
    def reason(self) -> str:
        return self.problem.reason

    @property
    def location(self) -> list[float] | None:
        return self.problem.location

    def __str__(self) -> str:
        if self.location is None:
            return self.reason
        return f"{self.reason} at {self.location}"


def _is_number(value: Any) -> bool:
    # bool is an int in Python, but `true` is not a coordinate.
    return isinstance(value, Real) and not isinstance(value, bool)


def _position(value: Any, path: str) -> tuple[float, float]:
    """One GeoJSON position -> (lon, lat); a third (altitude) value is accepted and dropped."""
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence) or len(value) < 2:
        raise ShapeError(f"{path}: a position must be [lon, lat]", None)
    if not all(_is_number(v) for v in value):
        raise ShapeError(f"{path}: coordinates must be numbers", None)
    try:
        numbers = [float(v) for v in value]  # a huge int overflows here
    except OverflowError:
        numbers = [math.inf]
    if not all(math.isfinite(v) for v in numbers):
        raise ShapeError(f"{path}: coordinates must be finite numbers (no NaN or infinity)", None)
    lon, lat = numbers[0], numbers[1]
    if not -180.0 <= lon <= 180.0:
        raise ShapeError(f"{path}: longitude out of range [-180, 180]", [lon, lat])
    if not -90.0 <= lat <= 90.0:
        raise ShapeError(
            f"{path}: latitude out of range [-90, 90] (are lon and lat swapped?)", [lon, lat]
        )
    return lon, lat


def _sequence(value: Any, path: str, what: str) -> Sequence[Any]:
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        raise ShapeError(f"{path}: expected an array of {what}", None)
    return value


def _ring(value: Any, path: str) -> list[tuple[float, float]]:
    positions = _sequence(value, path, "positions")
    points = [_position(p, f"{path}[{i}]") for i, p in enumerate(positions)]
    if not points:
        raise ShapeError(f"{path}: empty ring", None)
    if len(points) < 4:
        raise ShapeError(f"{path}: a ring needs at least 4 positions", list(points[0]))
    if points[0] != points[-1]:
        raise ShapeError(
            f"{path}: ring is not closed (first and last positions differ)", list(points[0])
        )
    return points


def _polygon(value: Any, path: str) -> Polygon:
    rings = _sequence(value, path, "linear rings")
    if not rings:
        raise ShapeError(f"{path}: empty polygon", None)
    shell, *holes = (_ring(r, f"{path}[{i}]") for i, r in enumerate(rings))
    return Polygon(shell, holes)


def parse_geometry(geojson: Mapping[str, Any]) -> Polygon | MultiPolygon:
    """A GeoJSON Polygon or MultiPolygon -> a 2-D shapely geometry, or ShapeError.

    Checks the structure strictly (RFC 7946: closed rings of at least 4 positions, numbers,
    lon within [-180, 180], lat within [-90, 90]) and says where it failed, with a path such
    as ``coordinates[0][3]`` in the reason. Topology (self-intersections…) is not checked
    here: see ``check_valid``. Altitudes are dropped.
    """
    if not isinstance(geojson, Mapping):
        raise ShapeError("expected a GeoJSON geometry object", None)
    kind = geojson.get("type")
    if kind not in _ACCEPTED_TYPES:
        hint = ": pass its 'geometry'" if kind == "Feature" else ""
        raise ShapeError(f"expected a GeoJSON Polygon or MultiPolygon, got {kind!r}{hint}", None)
    if "coordinates" not in geojson:
        raise ShapeError(f"{kind} without 'coordinates'", None)
    coordinates = geojson["coordinates"]
    if kind == "Polygon":
        return _polygon(coordinates, "coordinates")
    polygons = _sequence(coordinates, "coordinates", "polygons")
    if not polygons:
        raise ShapeError("coordinates: empty MultiPolygon", None)
    return MultiPolygon([_polygon(p, f"coordinates[{i}]") for i, p in enumerate(polygons)])


def _location(x: str, y: str) -> list[float] | None:
    try:
        lon, lat = float(x), float(y)
    except ValueError:
        return None
    return [lon, lat] if math.isfinite(lon) and math.isfinite(lat) else None


def check_valid(geom: BaseGeometry) -> ShapeProblem | None:
    """None when GEOS finds the geometry valid, else the reason and where (from GEOS's text).

    ``Self-intersection[120.05 30.05]`` becomes
    ``ShapeProblem("Self-intersection", [120.05, 30.05])``. Empty geometries count as valid
    (that is GEOS's view; ``parse_geometry`` never produces one).
    """
    reason = shapely.is_valid_reason(geom)
    if reason is None or reason == "Valid Geometry":
        return None
    match = _REASON.match(reason)
    if match is None:
        return ShapeProblem(reason, None)
    return ShapeProblem(match["reason"], _location(match["x"], match["y"]))


def as_multipolygon(geom: BaseGeometry) -> MultiPolygon:
    """Polygon or MultiPolygon -> MultiPolygon (one column type for every boundary).

    Anything else raises ShapeError: silently dropping points or lines would hide bad data.
    """
    if isinstance(geom, MultiPolygon):
        return geom
    if isinstance(geom, Polygon):
        return MultiPolygon() if geom.is_empty else MultiPolygon([geom])
    raise ShapeError(f"expected a Polygon or MultiPolygon, got {geom.geom_type}", None)


def _polygonal_parts(geom: BaseGeometry) -> list[Polygon]:
    if isinstance(geom, Polygon):
        return [] if geom.is_empty else [geom]
    if isinstance(geom, (MultiPolygon, GeometryCollection)):
        return [p for part in geom.geoms for p in _polygonal_parts(part)]
    return []


def repair(geom: BaseGeometry) -> MultiPolygon:
    """Make a boundary valid, keeping only its polygonal parts, always as a MultiPolygon.

    Uses GEOS's "structure" method: the area a ring encloses is kept, so a bowtie becomes two
    triangles and a ring that loops over itself keeps the whole area it covers (the default
    "linework" method would punch a hole where the loop overlaps). A hole lying outside its
    shell becomes a separate piece (both methods do this). Parts that collapse to lines or
    points are dropped; if nothing polygonal is left, the result is an empty MultiPolygon,
    which the caller must treat as a rejection. Repair changes the data: report what
    ``check_valid`` found alongside.
    """
    fixed = shapely.make_valid(geom, method="structure", keep_collapsed=False)
    if isinstance(fixed, (Polygon, MultiPolygon)):
        return as_multipolygon(fixed)
    parts = _polygonal_parts(fixed)
    if not parts:
        return MultiPolygon()
    # Parts of a collection may share edges, which a MultiPolygon may not: merge them.
    return as_multipolygon(shapely.union_all(parts))


def overlap_location(a: BaseGeometry, b: BaseGeometry) -> tuple[float, float] | None:
    """A point (lon, lat) inside the area where ``a`` and ``b`` overlap, or None.

    Sharing an edge or a corner is not an overlap. With several overlapping pieces the point
    lies in the largest one. Both geometries must be valid (``repair`` them first); how much
    overlap is tolerable is for the metre-based checks in PostGIS to decide.
    """
    try:
        common = shapely.intersection(a, b)
    except GEOSException as exc:
        raise ShapeError(f"cannot intersect these geometries ({exc}); repair them first") from exc
    parts = [p for p in _polygonal_parts(common) if p.area > 0]
    if not parts:
        return None
    point = max(parts, key=lambda p: p.area).representative_point()
    return point.x, point.y

"""WGS-84, GCJ-02 and BD-09: the three coordinate systems phones in China send.

Raw GPS (Android/iOS, HTML5, WeChat's default) is WGS-84 (EPSG:4326). AMap and Tencent return
GCJ-02, which shifts WGS-84 by a published pseudo-random offset of 100-700 m. Baidu's map uses
BD-09, a further small rotation-and-shift of GCJ-02. The platform stores WGS-84, so every point
is converted on the way in and, for maps that want it, on the way out.

Model used here (simple, and the same as the widely copied reference implementations):

* The offsets apply only inside China's rough bounding box (``out_of_china``). The box test is
  applied to the coordinate *as given*: a point outside the box is returned unchanged by every
  conversion, in either direction, for both GCJ-02 and BD-09. Outside China the three systems
  are therefore identical. (Baidu itself behaves differently abroad; our users are in China.)
* The forward formulas (WGS-84 -> GCJ-02 -> BD-09) are the published ones. The inverses are
  not the usual one-step approximations (which err by up to ~5 m for GCJ-02): they iterate
  the forward formula until it reproduces the input to within 1e-9 degrees (~0.1 mm).
* Because the box test makes the forward maps jump at the box edge, a round trip is exact
  everywhere except in a strip as wide as the offset (< 0.02 degrees) along the box's edges,
  which lies in the sea or outside China anyway.

All functions take and return ``(lon, lat)`` in degrees, in that order (as GeoJSON).
"""

from __future__ import annotations

import math
from collections.abc import Callable

CRS = ("wgs84", "gcj02", "bd09")

# Krasovsky 1940 ellipsoid, which the published GCJ-02 formula is written against.
_A = 6378245.0
_EE = 0.00669342162296594323
# The BD-09 formula's own constant.
_X_PI = math.pi * 3000.0 / 180.0

# China's rough bounding box, as in every reference implementation.
_MIN_LON, _MAX_LON = 72.004, 137.8347
_MIN_LAT, _MAX_LAT = 0.8293, 55.8271

# Inverse iteration: stop when the forward formula reproduces the input to within this many
# degrees (1e-9 degrees is about 0.1 mm); the formulas are contractions, so a handful of steps
# suffice and the cap only guards against non-finite input.
_TOLERANCE = 1e-9
_MAX_ITERATIONS = 30

_Transform = Callable[[float, float], tuple[float, float]]


def out_of_china(lon: float, lat: float) -> bool:
    """True when no GCJ-02/BD-09 offset applies (outside China's rough bounding box).

    Non-finite input counts as outside, so it passes through the conversions unchanged
    instead of looping; the public entry points reject it before that.
    """
    return not (_MIN_LON <= lon <= _MAX_LON and _MIN_LAT <= lat <= _MAX_LAT)


def _gcj_shift_lat(x: float, y: float) -> float:
    ret = -100.0 + 2.0 * x + 3.0 * y + 0.2 * y * y + 0.1 * x * y + 0.2 * math.sqrt(abs(x))
    ret += (20.0 * math.sin(6.0 * x * math.pi) + 20.0 * math.sin(2.0 * x * math.pi)) * 2.0 / 3.0
    ret += (20.0 * math.sin(y * math.pi) + 40.0 * math.sin(y / 3.0 * math.pi)) * 2.0 / 3.0
    ret += (160.0 * math.sin(y / 12.0 * math.pi) + 320 * math.sin(y * math.pi / 30.0)) * 2.0 / 3.0
    return ret


def _gcj_shift_lon(x: float, y: float) -> float:
    ret = 300.0 + x + 2.0 * y + 0.1 * x * x + 0.1 * x * y + 0.1 * math.sqrt(abs(x))
    ret += (20.0 * math.sin(6.0 * x * math.pi) + 20.0 * math.sin(2.0 * x * math.pi)) * 2.0 / 3.0
    ret += (20.0 * math.sin(x * math.pi) + 40.0 * math.sin(x / 3.0 * math.pi)) * 2.0 / 3.0
    ret += (150.0 * math.sin(x / 12.0 * math.pi) + 300.0 * math.sin(x / 30.0 * math.pi)) * 2.0 / 3.0
    return ret


def _gcj_forward(lon: float, lat: float) -> tuple[float, float]:
    """The published WGS-84 -> GCJ-02 formula, without the China box test."""
    dlat = _gcj_shift_lat(lon - 105.0, lat - 35.0)
    dlon = _gcj_shift_lon(lon - 105.0, lat - 35.0)
    radlat = lat / 180.0 * math.pi
    magic = math.sin(radlat)
    magic = 1 - _EE * magic * magic
    sqrtmagic = math.sqrt(magic)
    dlat = (dlat * 180.0) / ((_A * (1 - _EE)) / (magic * sqrtmagic) * math.pi)
    dlon = (dlon * 180.0) / (_A / sqrtmagic * math.cos(radlat) * math.pi)
    return lon + dlon, lat + dlat


def _bd_forward(lon: float, lat: float) -> tuple[float, float]:
    """The published GCJ-02 -> BD-09 formula, without the China box test."""
    z = math.sqrt(lon * lon + lat * lat) + 0.00002 * math.sin(lat * _X_PI)
    theta = math.atan2(lat, lon) + 0.000003 * math.cos(lon * _X_PI)
    return z * math.cos(theta) + 0.0065, z * math.sin(theta) + 0.006


def _invert(forward: _Transform, lon: float, lat: float) -> tuple[float, float]:
    """Solve ``forward(x, y) == (lon, lat)`` by fixed-point iteration.

    ``forward`` is the identity plus a small, slowly varying offset, so subtracting the
    residual converges fast (the first step is the usual one-step inverse).
    """
    x, y = lon, lat
    for _ in range(_MAX_ITERATIONS):
        fx, fy = forward(x, y)
        dx, dy = fx - lon, fy - lat
        if abs(dx) < _TOLERANCE and abs(dy) < _TOLERANCE:
            break
        x, y = x - dx, y - dy
    return x, y


def wgs84_to_gcj02(lon: float, lat: float) -> tuple[float, float]:
    """WGS-84 -> GCJ-02 (published formula); unchanged outside China."""
    if out_of_china(lon, lat):
        return lon, lat
    return _gcj_forward(lon, lat)


def gcj02_to_wgs84(lon: float, lat: float) -> tuple[float, float]:
    """GCJ-02 -> WGS-84, exact (iterative) inverse; unchanged outside China."""
    if out_of_china(lon, lat):
        return lon, lat
    return _invert(_gcj_forward, lon, lat)


def gcj02_to_bd09(lon: float, lat: float) -> tuple[float, float]:
    """GCJ-02 -> BD-09 (published formula); unchanged outside China."""
    if out_of_china(lon, lat):
        return lon, lat
    return _bd_forward(lon, lat)


def bd09_to_gcj02(lon: float, lat: float) -> tuple[float, float]:
    """BD-09 -> GCJ-02, exact (iterative) inverse; unchanged outside China.

    The published closed-form inverse is off by a few centimetres; iterating removes that.
    """
    if out_of_china(lon, lat):
        return lon, lat
    return _invert(_bd_forward, lon, lat)


def wgs84_to_bd09(lon: float, lat: float) -> tuple[float, float]:
    """WGS-84 -> BD-09, through GCJ-02 (BD-09 is defined on top of GCJ-02)."""
    return gcj02_to_bd09(*wgs84_to_gcj02(lon, lat))


def bd09_to_wgs84(lon: float, lat: float) -> tuple[float, float]:
    """BD-09 -> WGS-84, through GCJ-02, both steps exact."""
    return gcj02_to_wgs84(*bd09_to_gcj02(lon, lat))


def _identity(lon: float, lat: float) -> tuple[float, float]:
    return lon, lat


_TO_WGS84: dict[str, _Transform] = {
    "wgs84": _identity,
    "gcj02": gcj02_to_wgs84,
    "bd09": bd09_to_wgs84,
}
_FROM_WGS84: dict[str, _Transform] = {
    "wgs84": _identity,
    "gcj02": wgs84_to_gcj02,
    "bd09": wgs84_to_bd09,
}
# Pairs converted directly rather than through WGS-84 (one formula instead of two).
_DIRECT: dict[tuple[str, str], _Transform] = {
    ("gcj02", "bd09"): gcj02_to_bd09,
    ("bd09", "gcj02"): bd09_to_gcj02,
}


def _check(lon: float, lat: float, *crs: str) -> None:
    """Reject what would silently produce garbage: unknown systems, NaN/inf, swapped ranges."""
    for name in crs:
        if name not in CRS:
            raise ValueError(f"unknown coordinate system {name!r}; expected one of {CRS}")
    if not (math.isfinite(lon) and math.isfinite(lat)):
        raise ValueError(f"coordinates must be finite numbers, got ({lon}, {lat})")
    if not (-180.0 <= lon <= 180.0 and -90.0 <= lat <= 90.0):
        raise ValueError(f"coordinates out of range (lon, lat): ({lon}, {lat})")


def to_wgs84(lon: float, lat: float, crs: str) -> tuple[float, float]:
    """Convert a point given in ``crs`` to WGS-84 (what the database stores).

    Raises ValueError for an unknown ``crs``, non-finite numbers or out-of-range values.
    """
    _check(lon, lat, crs)
    return _TO_WGS84[crs](lon, lat)


def from_wgs84(lon: float, lat: float, crs: str) -> tuple[float, float]:
    """Convert a WGS-84 point to ``crs`` (e.g. GCJ-02 for an AMap client).

    Raises ValueError for an unknown ``crs``, non-finite numbers or out-of-range values.
    """
    _check(lon, lat, crs)
    return _FROM_WGS84[crs](lon, lat)


def convert(lon: float, lat: float, src: str, dst: str) -> tuple[float, float]:
    """Convert a point from ``src`` to ``dst``; same errors as ``to_wgs84``."""
    _check(lon, lat, src, dst)
    if src == dst:
        return lon, lat
    direct = _DIRECT.get((src, dst))
    if direct is not None:
        return direct(lon, lat)
    return _FROM_WGS84[dst](*_TO_WGS84[src](lon, lat))


def transform_geojson(geometry: dict, crs: str) -> dict:
    """A GeoJSON geometry (WGS-84) with every position converted to `crs`.

    Used on the way out when a client asks for ?crs=gcj02|bd09 (AMap/Baidu maps); PostGIS
    has no GCJ-02, so SQL builds the WGS-84 GeoJSON and this walks its coordinate arrays.
    """
    if crs == "wgs84":
        return geometry
    if crs not in _FROM_WGS84:
        raise ValueError(f"unknown coordinate system {crs!r}; expected one of {CRS}")
    forward = _FROM_WGS84[crs]

    def walk(coords):
        if coords and isinstance(coords[0], (int, float)):
            lon, lat = forward(coords[0], coords[1])
            return [round(lon, 7), round(lat, 7), *coords[2:]]
        return [walk(c) for c in coords]

    if geometry.get("type") == "GeometryCollection":
        return {**geometry,
                "geometries": [transform_geojson(g, crs) for g in geometry["geometries"]]}
    return {**geometry, "coordinates": walk(geometry["coordinates"])}

"""The marshmallow fields every module uses for locations: one Point field, one GeoJSON
geometry field, and the output coordinate system a client asked for (?crs=gcj02).

A phone sends `{lon, lat, crs, accuracy_m, captured_at, device_id}`; we keep the raw
values, convert to WGS-84 for storage, and answer in the crs the request asks for.
"""

from __future__ import annotations

import contextvars
import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import marshmallow as ma
from shapely.geometry import mapping

from geo import crs as crs_mod

# Set per request from ?crs= (see `set_output_crs`); WGS-84 unless a client asks otherwise.
_output_crs: contextvars.ContextVar[str] = contextvars.ContextVar("output_crs", default="wgs84")


def set_output_crs(value: str | None) -> None:
    if value is not None and value not in crs_mod.CRS:
        raise ma.ValidationError({"crs": [f"Must be one of: {', '.join(crs_mod.CRS)}."]})
    _output_crs.set(value or "wgs84")


def output_crs() -> str:
    return _output_crs.get()


# How far ahead of the server's clock a phone's `captured_at` may be (clock skew); set from
# the GPS_MAX_FUTURE_S setting at start-up (`set_max_future`).
_max_future = timedelta(minutes=10)


def set_max_future(seconds: int) -> None:
    global _max_future
    _max_future = timedelta(seconds=seconds)


def point_out(lon: float, lat: float) -> dict:
    """A stored WGS-84 point as responses show it: in the request's crs, 7 decimals."""
    target = output_crs()
    lon, lat = crs_mod.from_wgs84(lon, lat, target)
    return {"lon": round(lon, 7), "lat": round(lat, 7), "crs": target}


@dataclass(frozen=True)
class GpsFix:
    """A location as collected: WGS-84 for storage plus what the phone actually sent."""

    lon: float  # WGS-84
    lat: float
    crs: str = "wgs84"
    raw_lon: float | None = None
    raw_lat: float | None = None
    accuracy_m: float | None = None
    captured_at: datetime | None = None
    device_id: str | None = None

    @property
    def wkt(self) -> str:
        return f"SRID=4326;POINT({self.lon!r} {self.lat!r})"


def _looks_swapped(lon: float, lat: float) -> bool:
    """(lon, lat) outside China but (lat, lon) inside it: almost surely swapped."""
    return crs_mod.out_of_china(lon, lat) and not crs_mod.out_of_china(lat, lon)


def _number(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ma.ValidationError({name: ["Must be a number."]})
    try:
        number = float(value)  # an int too large for a float (JSON allows one) overflows
    except OverflowError:
        number = math.inf
    if not math.isfinite(number):
        raise ma.ValidationError({name: ["Must be a finite number."]})
    return number


class _PointInput(ma.Schema):
    lon = ma.fields.Raw(required=True, metadata={"type": "number", "example": 119.96})
    lat = ma.fields.Raw(required=True, metadata={"type": "number", "example": 30.05})
    crs = ma.fields.String(load_default="wgs84", validate=ma.validate.OneOf(crs_mod.CRS))
    accuracy_m = ma.fields.Float(validate=ma.validate.Range(min=0, max=100_000), allow_nan=False)
    captured_at = ma.fields.AwareDateTime()
    device_id = ma.fields.String(validate=ma.validate.Length(max=128))


# One instance for every load: building a schema per point cost more than the checks (a
# feed's 5,000 points: 1.1 s of 1.7 s in Point._deserialize).
_POINT_INPUT = _PointInput()


# The OpenAPI schema of every Point field: one component (`#/components/schemas/Point`),
# registered by server.api, which every `location` refers to.
POINT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": (
        "A point as a phone collects it (GB/T 37149: WGS-84 stored). Requests send lon/lat in "
        "`crs` and may add accuracy, time and device; responses carry lon/lat/crs in the "
        "`?crs=` asked for (default wgs84), 7 decimals. A pair that is plainly swapped (lat "
        "first: outside China as sent, inside it the other way round) is a 422."),
    "required": ["lon", "lat"],
    "properties": {
        "lon": {"type": "number", "minimum": -180, "maximum": 180,
                "description": "Longitude (east positive), first as in GeoJSON"},
        "lat": {"type": "number", "minimum": -90, "maximum": 90,
                "description": "Latitude (north positive)"},
        "crs": {"type": "string", "enum": list(crs_mod.CRS), "default": "wgs84",
                "description": "wgs84: raw GPS; gcj02: AMap, Tencent, WeChat maps; bd09: Baidu"},
        "accuracy_m": {"type": "number", "minimum": 0, "maximum": 100_000,
                       "description": "Horizontal accuracy reported by the phone, metres"},
        "captured_at": {"type": "string", "format": "date-time", "description": (
            "When the fix was taken, ISO-8601 with offset; at most GPS_MAX_FUTURE_S (10 "
            "minutes by default) ahead of the server's clock, else 422")},
        "device_id": {"type": "string", "maxLength": 128, "description": "The phone's id"},
    },
    "additionalProperties": False,
    "example": {"lon": 119.9612345, "lat": 30.0512345, "crs": "wgs84", "accuracy_m": 8.5,
                "captured_at": "2026-12-01T09:30:00+08:00", "device_id": "android-5f2c9a"},
}


# How a field that is not a Point (e.g. a fields.Method that dumps one) refers to it:
# `metadata=POINT_REFERENCE`.
POINT_REFERENCE: dict[str, Any] = {"allOf": [{"$ref": "#/components/schemas/Point"}]}


class Point(ma.fields.Field):
    """`{lon, lat, crs?, accuracy_m?, captured_at?, device_id?}` ⇄ GpsFix (WGS-84 inside).

    Rejects non-finite and out-of-range numbers, a lon/lat pair that is obviously swapped
    and a capture time in the future beyond the clock-skew tolerance. Serializes a GpsFix
    (or anything with lon/lat in WGS-84) in the output crs. Documented as POINT_SCHEMA.
    """

    def _deserialize(self, value, attr, data, **kwargs) -> GpsFix:
        if not isinstance(value, dict):
            raise ma.ValidationError("Must be an object {lon, lat, crs, accuracy_m, ...}.")
        fields = _POINT_INPUT.load(value)
        lon, lat = _number(fields["lon"], "lon"), _number(fields["lat"], "lat")
        if not (-180 <= lon <= 180):
            raise ma.ValidationError({"lon": ["Longitude must be within -180..180."]})
        if not (-90 <= lat <= 90):
            hint = " (lat and lon swapped?)" if -180 <= lat <= 180 else ""
            raise ma.ValidationError({"lat": [f"Latitude must be within -90..90{hint}."]})
        if _looks_swapped(lon, lat):
            raise ma.ValidationError(
                {"lon": ["This looks like lat and lon swapped: send lon first (as GeoJSON)."]}
            )
        captured_at = fields.get("captured_at")
        if captured_at is not None and captured_at > datetime.now(UTC) + _max_future:
            raise ma.ValidationError(
                {"captured_at": ["Must not be in the future (beyond the clock-skew tolerance)."]})
        wgs_lon, wgs_lat = crs_mod.to_wgs84(lon, lat, fields["crs"])
        return GpsFix(
            lon=wgs_lon, lat=wgs_lat, crs=fields["crs"], raw_lon=lon, raw_lat=lat,
            accuracy_m=fields.get("accuracy_m"), captured_at=captured_at,
            device_id=fields.get("device_id"),
        )

    def _serialize(self, value, attr, obj, **kwargs) -> dict | None:
        if value is None:
            return None
        return point_out(value.lon, value.lat)


class GeoJSONGeometry(ma.fields.Field):
    """A GeoJSON geometry on the way out, converted to the output crs.

    Accepts a GeoJSON dict (as built by ST_AsGeoJSON in SQL) or a shapely geometry.
    Input parsing and validation of boundaries lives in geo.shapes.
    """

    def _serialize(self, value, attr, obj, **kwargs) -> dict | None:
        if value is None:
            return None
        geometry = value if isinstance(value, dict) else mapping(value)
        return crs_mod.transform_geojson(geometry, output_crs())

    def _deserialize(self, value, attr, data, **kwargs) -> dict:
        if not isinstance(value, dict) or "type" not in value:
            raise ma.ValidationError("Must be a GeoJSON geometry object.")
        return value


# Ranges spelled as patterns, so that what the document allows is what the parser takes.
_LON = r"-?(180(\.0+)?|(1[0-7]\d|[1-9]?\d)(\.\d+)?)"
_LAT = r"-?(90(\.0+)?|[1-8]?\d(\.\d+)?)"
_RADIUS = r"(50000(\.0+)?|([1-9]\d{0,3}|[1-4]\d{4})(\.\d+)?|0\.\d*[1-9]\d*)"


class _Coordinates(ma.fields.String):
    """Comma-separated numbers in one query string parameter, in the sibling `crs` field.

    The document shows the one form the parser takes: a string, its pattern and an example
    (not an array: `?bbox=1&bbox=2` is not how these are sent)."""

    def __init__(self, *, pattern: str, shape: str, example: str, description: str,
                 message: str, crs_field: str = "crs", **kwargs: Any) -> None:
        self.crs_field, self.shape, self.message = crs_field, shape, message
        self._pattern = re.compile(pattern)
        metadata = {"description": description, "example": example, "pattern": pattern,
                    **kwargs.pop("metadata", {})}
        super().__init__(metadata=metadata, **kwargs)

    def _numbers(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> list[float]:
        text = super()._deserialize(value, attr, data, **kwargs)
        if not self._pattern.fullmatch(text):
            raise ma.ValidationError(self.message)
        return [float(part) for part in text.split(",")]

    def _crs(self, data: Any) -> str:
        crs = data.get(self.crs_field) if data is not None else None
        return crs if crs in crs_mod.CRS else "wgs84"  # an unknown crs is that field's error


class Near(_Coordinates):
    """`?near=lon,lat,radius_m` in the request's `crs` ⇄ `(lon, lat, radius_m)` in WGS-84.

    The point is converted with the sibling `crs` query field (an unknown crs is that
    field's error, so the point is then read as WGS-84). Without `radius_required` the
    radius may be left out (`radius_m` is then None): nearest first, no cut-off.
    """

    MAX_RADIUS_M = 50_000

    def __init__(self, *, radius_required: bool = True, crs_field: str = "crs",
                 **kwargs: Any) -> None:
        self.radius_required = radius_required
        shape = "lon,lat,radius_m" if radius_required else "lon,lat[,radius_m]"
        radius = f",{_RADIUS}"
        pattern = f"^{_LON},{_LAT}{radius if radius_required else f'({radius})?'}$"
        super().__init__(
            pattern=pattern, shape=shape, crs_field=crs_field, example="119.96,30.05,500",
            message=f"{shape} (radius ≤ {self.MAX_RADIUS_M // 1000} km)",
            description=(f"{shape} in `{crs_field}`: lon -180..180, lat -90..90, radius in "
                         f"metres, 0 < radius ≤ {self.MAX_RADIUS_M}"
                         + ("" if radius_required else "; nearest first")),
            **kwargs)

    def _deserialize(self, value, attr, data, **kwargs) -> tuple[float, float, float | None]:
        near = self._numbers(value, attr, data, **kwargs)
        if not (-180 <= near[0] <= 180 and -90 <= near[1] <= 90) \
                or (len(near) == 3 and not 0 < near[2] <= self.MAX_RADIUS_M):
            raise ma.ValidationError(self.message)
        lon, lat = crs_mod.to_wgs84(near[0], near[1], self._crs(data))
        return lon, lat, near[2] if len(near) == 3 else None


class BBox(_Coordinates):
    """`?bbox=min_lon,min_lat,max_lon,max_lat` in the request's `crs` ⇄ the same in WGS-84."""

    def __init__(self, *, crs_field: str = "crs", **kwargs: Any) -> None:
        super().__init__(
            pattern=f"^{_LON},{_LAT},{_LON},{_LAT}$", shape="min_lon,min_lat,max_lon,max_lat",
            crs_field=crs_field, example="119.9,30.0,120.0,30.1",
            message="min_lon,min_lat,max_lon,max_lat, min < max, within -180..180, -90..90",
            description=(f"min_lon,min_lat,max_lon,max_lat in `{crs_field}`: lon -180..180, "
                         "lat -90..90, min < max"), **kwargs)

    def _deserialize(self, value, attr, data, **kwargs) -> tuple[float, float, float, float]:
        box = self._numbers(value, attr, data, **kwargs)
        if not (box[0] < box[2] and box[1] < box[3]) or \
                not all(-180 <= v <= 180 for v in box[::2]) or \
                not all(-90 <= v <= 90 for v in box[1::2]):
            raise ma.ValidationError(self.message)
        crs = self._crs(data)
        a, b = crs_mod.to_wgs84(box[0], box[1], crs), crs_mod.to_wgs84(box[2], box[3], crs)
        return a[0], a[1], b[0], b[1]

"""The marshmallow fields every module uses for locations: one Point field, one GeoJSON
geometry field, and the output coordinate system a client asked for (?crs=gcj02).

A phone sends `{lon, lat, crs, accuracy_m, captured_at, device_id}`; we keep the raw
values, convert to WGS-84 for storage, and answer in the crs the request asks for.
"""

from __future__ import annotations

import contextvars
import math
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import marshmallow as ma
from shapely.geometry import mapping
from webargs.fields import DelimitedList

from geo import crs as crs_mod

# Set per request from ?crs= (see `set_output_crs`); WGS-84 unless a client asks otherwise.
_output_crs: contextvars.ContextVar[str] = contextvars.ContextVar("output_crs", default="wgs84")


def set_output_crs(value: str | None) -> None:
    if value is not None and value not in crs_mod.CRS:
        raise ma.ValidationError({"crs": [f"Must be one of: {', '.join(crs_mod.CRS)}."]})
    _output_crs.set(value or "wgs84")


def output_crs() -> str:
    return _output_crs.get()


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


class Point(ma.fields.Field):
    """`{lon, lat, crs?, accuracy_m?, captured_at?, device_id?}` ⇄ GpsFix (WGS-84 inside).

    Rejects non-finite and out-of-range numbers and a lon/lat pair that is obviously
    swapped. Serializes a GpsFix (or anything with lon/lat in WGS-84) in the output crs.
    """

    def __init__(self, **kwargs: Any) -> None:
        metadata = kwargs.pop("metadata", {})
        metadata.setdefault("description", "A point: lon/lat in `crs` (default wgs84).")
        super().__init__(metadata=metadata, **kwargs)

    def _deserialize(self, value, attr, data, **kwargs) -> GpsFix:
        if not isinstance(value, dict):
            raise ma.ValidationError("Must be an object {lon, lat, crs, accuracy_m, ...}.")
        fields = _PointInput().load(value)
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
        wgs_lon, wgs_lat = crs_mod.to_wgs84(lon, lat, fields["crs"])
        return GpsFix(
            lon=wgs_lon, lat=wgs_lat, crs=fields["crs"], raw_lon=lon, raw_lat=lat,
            accuracy_m=fields.get("accuracy_m"), captured_at=fields.get("captured_at"),
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


class Near(DelimitedList):
    """`?near=lon,lat,radius_m` in the request's `crs` ⇄ `(lon, lat, radius_m)` in WGS-84.

    The point is converted with the sibling `crs` query field (an unknown crs is that
    field's error, so the point is then read as WGS-84). Without `radius_required` the
    radius may be left out (`radius_m` is then None): nearest first, no cut-off.
    """

    MAX_RADIUS_M = 50_000

    def __init__(self, *, radius_required: bool = True, crs_field: str = "crs",
                 **kwargs: Any) -> None:
        self.radius_required, self.crs_field = radius_required, crs_field
        self._shape = "lon,lat,radius_m" if radius_required else "lon,lat[,radius_m]"
        metadata = kwargs.pop("metadata", {})
        metadata.setdefault("description", f"{self._shape} in `{crs_field}`"
                            + ("" if radius_required else ": nearest first"))
        super().__init__(ma.fields.Float(allow_nan=False), metadata=metadata, **kwargs)

    def _deserialize(self, value, attr, data, **kwargs) -> tuple[float, float, float | None]:
        near = super()._deserialize(value, attr, data, **kwargs)
        lengths = (3,) if self.radius_required else (2, 3)
        if len(near) not in lengths or not (-180 <= near[0] <= 180 and -90 <= near[1] <= 90) \
                or (len(near) == 3 and not 0 < near[2] <= self.MAX_RADIUS_M):
            raise ma.ValidationError(f"{self._shape} (radius ≤ {self.MAX_RADIUS_M // 1000} km)")
        crs = data.get(self.crs_field) if data is not None else None
        lon, lat = crs_mod.to_wgs84(near[0], near[1], crs if crs in crs_mod.CRS else "wgs84")
        return lon, lat, near[2] if len(near) == 3 else None

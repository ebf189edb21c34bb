"""Request and response shapes of the map endpoints (tiles are binary, documented inline)."""

from __future__ import annotations

from marshmallow import fields

from grid.areas.schemas import GridCardSchema
from server.api import Schema

BINARY = {"type": "string", "format": "binary"}
MVT = "application/vnd.mapbox-vector-tile"
SVG = "image/svg+xml"


class VectorLayerSchema(Schema):
    id = fields.String()
    description = fields.String()
    minzoom = fields.Integer()
    maxzoom = fields.Integer()
    fields = fields.Dict(keys=fields.String(), values=fields.String())


class TileJsonSchema(Schema):
    """TileJSON 3.0.0 (https://github.com/mapbox/tilejson-spec)."""

    tilejson = fields.String()
    name = fields.String()
    description = fields.String()
    scheme = fields.String()
    tiles = fields.List(fields.String())
    minzoom = fields.Integer()
    maxzoom = fields.Integer()
    bounds = fields.List(fields.Float())
    center = fields.List(fields.Float())
    vector_layers = fields.List(fields.Nested(VectorLayerSchema))


class TileIndexSchema(Schema):
    layers = fields.Dict(keys=fields.String(), values=fields.Nested(TileJsonSchema))


class FeatureCollection(fields.Dict):
    """A GeoJSON FeatureCollection (RFC 7946) built by PostGIS."""

    def __init__(self, **kwargs) -> None:
        super().__init__(metadata={"description": "GeoJSON FeatureCollection (RFC 7946)",
                                   **kwargs.pop("metadata", {})}, **kwargs)


class MapAreaSchema(Schema):
    id = fields.Integer()
    code = fields.String()
    name = fields.String()
    level = fields.String()
    bbox = fields.List(fields.Float(), metadata={"description": "[west, south, east, north]"})


class AreaMapSchema(Schema):
    area = fields.Nested(MapAreaSchema)
    crs = fields.String(metadata={"description": "Coordinates of every geometry: wgs84 "
                                                 "(GeoJSON), or gcj02/bd09 when asked"})
    card = fields.Nested(GridCardSchema)
    boundary = FeatureCollection()
    buildings = FeatureCollection(metadata={"description": "With households and persons"})
    cases = FeatureCollection(metadata={"description": "Open cases with state and light"})
    organisations = FeatureCollection()
    service_points = FeatureCollection(metadata={
        "description": "Registered by the services module (empty without it)"})
    truncated = fields.List(fields.String(), metadata={
        "description": "Collections cut at MAP_MAX_FEATURES"})
    omitted = fields.List(fields.String(), metadata={
        "description": "Collections left empty: the caller may not read them"})

"""Maps API: vector tiles and their TileJSON under /tiles, one area's map as GeoJSON and as
a print SVG under /areas/{id}."""

from __future__ import annotations

import hashlib
from pathlib import Path

from flask import Response, current_app, g, request, send_from_directory

from geo.fields import output_crs
from grid.maps import schemas, service, tiles
from server import db
from server.api import Blueprint
from server.auth.actor import anonymous_actor, current_actor, load_actor, login_required

tiles_blp = Blueprint("tiles", __name__, url_prefix="/tiles",
                      description="Vector tiles (矢量瓦片) and TileJSON")
maps_blp = Blueprint("maps", __name__, url_prefix="/areas",
                     description="One area's map (网格地图): GeoJSON and print SVG")
blueprints = [tiles_blp, maps_blp]


def _context(z: int = 0, x: int = 0, y: int = 0) -> tiles.TileContext:
    config = current_app.config
    return tiles.TileContext(z, x, y, current_actor(),
                             detail_zoom=config["TILE_DETAIL_MIN_ZOOM"],
                             max_features=config["TILE_MAX_FEATURES"],
                             area_min_zoom=config["TILE_AREA_MIN_ZOOM"],
                             public_areas=config["MAP_PUBLIC_AREAS"])


def _who(chosen: list[tiles.Layer]) -> bool:
    """Resolve the caller: anonymous for public layers only (cacheable by anyone), the
    logged-in actor otherwise (401 without a token). True when the answer is public."""
    public = current_app.config["MAP_PUBLIC_AREAS"] and all(layer.public for layer in chosen)
    g.actor = anonymous_actor() if public else load_actor()
    return public


def _optional_login(func):
    """Document that a token is needed for every layer but the public areas layer."""
    apidoc = getattr(func, "_apidoc", {})
    apidoc.setdefault("manual_doc", {})["security"] = [{}, {"bearerAuth": []}]
    func._apidoc = apidoc
    return func


_NAMES = "|".join(sorted(tiles.layers))
# The layer path parameter as the parser takes it: known names joined by commas (a name
# twice, or an unknown one, is a 404: no such tile set).
LAYER_PARAMETER = {"in": "path", "name": "layer", "required": True, "schema": {
    "type": "string", "pattern": f"^({_NAMES})(,({_NAMES}))*$", "example": "buildings,cases"},
    "description": "One layer or several joined by commas, each once: "
                   + ", ".join(sorted(tiles.layers))}


@tiles_blp.route("/<layer>/<int:z>/<int:x>/<int:y>.mvt")
@tiles_blp.doc(parameters=[LAYER_PARAMETER, {
    "in": "path", "name": "z", "required": True, "description": "Zoom",
    "schema": {"type": "integer", "minimum": 0, "maximum": 22}}, *({
        "in": "path", "name": axis, "required": True, "description": "0 ≤ value < 2^z",
        "schema": {"type": "integer", "minimum": 0, "maximum": 2**22 - 1}} for axis in "xy")])
@tiles_blp.response(200, schemas.BINARY, content_type=schemas.MVT,
                    description="A Mapbox Vector Tile (empty body: nothing here). ETag; "
                                "Cache-Control public for the areas layer, private otherwise")
@tiles_blp.alt_response(304, description="Not modified (If-None-Match matched)", success=True)
@_optional_login
@db.read_only
def tile(layer: str, z: int, x: int, y: int):
    """One tile of a layer (`areas`, `buildings`, `cases`, `organisations`, or several
    joined by commas: `buildings,cases`), limited to the caller's scope; points are
    aggregated per grid below TILE_DETAIL_MIN_ZOOM."""
    chosen = tiles.parse_layers(layer)
    public = _who(chosen)
    data = tiles.build_tile(db.session(), _context(z, x, y), chosen)
    response = Response(data, mimetype=schemas.MVT)
    response.set_etag(hashlib.sha256(data).hexdigest()[:32])
    max_age = current_app.config["TILE_MAX_AGE_S"]
    response.headers["Cache-Control"] = (f"public, max-age={max_age * 5}" if public
                                         else f"private, max-age={max_age}")
    if not public:
        response.headers["Vary"] = "Authorization"
    return response.make_conditional(request)


@tiles_blp.route("/<layer>.json")
@tiles_blp.doc(parameters=[LAYER_PARAMETER])
@tiles_blp.response(200, schemas.TileJsonSchema)
@_optional_login
def layer_tilejson(layer: str):
    """TileJSON 3.0.0 of a layer (or of `buildings,cases`…): tile URL (under
    PUBLIC_BASE_URL; root-relative when it is not set), zooms, bounds of the caller's areas,
    fields."""
    chosen = tiles.parse_layers(layer)
    _who(chosen)
    # From the configured public base URL, never from the request's Host header (which a
    # client or a cache-poisoning request controls); without one, root-relative.
    url = f"{current_app.config['PUBLIC_BASE_URL']}/tiles/{layer}/{{z}}/{{x}}/{{y}}.mvt"
    return tiles.tilejson(db.session(), current_actor(), chosen, url, _context())


@maps_blp.route("/<int:area_id>/map")
@maps_blp.response(200, schemas.AreaMapSchema)
@login_required
def area_map(area_id: int):
    """The area's boundary, buildings (with household and person counts), open cases,
    organisations and service points as GeoJSON (`?crs=gcj02|bd09` for AMap/Baidu), with
    its grid card."""
    return service.area_map(db.session(), current_actor(), area_id, output_crs(),
                            current_app.config["MAP_MAX_FEATURES"])


@maps_blp.route("/<int:area_id>/map.svg")
@maps_blp.response(200, schemas.BINARY, content_type=schemas.SVG,
                   description="Boundary, buildings and open cases, drawn by PostGIS")
@login_required
def area_svg(area_id: int):
    """A static print map of the area (for reports)."""
    svg = service.area_svg(db.session(), current_actor(), area_id,
                           current_app.config["MAP_MAX_FEATURES"])
    return Response(svg, mimetype=schemas.SVG, headers={"Cache-Control": "private, no-cache"})


class _PageBlueprint(Blueprint):
    """The map page and its assets: HTML and JavaScript, kept out of the OpenAPI document."""

    def register_views_in_doc(self, *args, **kwargs) -> None:
        return None


_STATIC = Path(__file__).parent / "static"
page_blp = _PageBlueprint("map_page", __name__, url_prefix="/map",
                          description="The map page (网格地图)", static_folder=str(_STATIC),
                          static_url_path="/static")
blueprints.append(page_blp)


@page_blp.route("")
def map_page():
    """网格地图: MapLibre over the API's own tiles (MapLibre GL JS 4.7.1, BSD-3, vendored in
    static/ so that the page works without a CDN)."""
    return send_from_directory(_STATIC, "map.html", max_age=0)

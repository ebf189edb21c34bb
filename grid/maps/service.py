"""One area's map (网格地图): its boundary, buildings, open cases, organisations and service
points as GeoJSON built by PostGIS (json_agg + ST_AsGeoJSON) in one statement, with the
grid card (网格公示); and the same area as a static SVG for printed reports (ST_AsSVG).

Scope: the area itself may be one the actor sees by name only (a worker's community); what
is drawn inside it is limited to the actor's scope (areas.in_scope, cases.scope.visible), so a
worker's community map shows their grid's records only.

Collections are pluggable like the tile layers: `collections[name]` builds one from
(actor, area subtree). The services package adds "service_points" at wiring
(grid/services/wiring.py).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from xml.sax.saxutils import escape

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSON
from sqlalchemy.orm import Session

from geo import crs as crs_mod
from grid.areas import service as areas
from grid.areas.models import Area
from grid.cases.clock import overdue_sql
from grid.cases.models import OPEN_STATES, Case, CaseCategory, light_sql
from grid.cases.scope import visible
from grid.registry.counts import building_counts
from grid.registry.models import Building, Organisation
from server.auth.actor import Actor
from server.errors import Forbidden

# (actor, subtree: SELECT of the area ids below the area, limit) → SELECT of rows with a
# `geom` column (WGS-84) and the properties; `collection()` makes them a FeatureCollection.
Collection = Callable[[Actor, sa.Select, int], sa.Select]


def feature_collection(rows: sa.Select) -> sa.ScalarSelect:
    """A FeatureCollection of `rows` (a `geom` column plus properties), built in SQL.

    json, not jsonb, and the properties named one by one: `to_jsonb(r) - 'geom'` ran
    PostGIS's geometry→jsonb cast (a second ST_AsGeoJSON) on every row only to drop it,
    and jsonb parses and sorts what json copies (~60 µs a feature, most of the map's time).
    """
    r = rows.subquery("r")
    props = sa.func.json_build_object(*[x for c in r.c if c.name != "geom" for x in (c.name, c)])
    feature = sa.func.json_build_object(
        "type", "Feature", "id", r.c.id,
        "geometry", sa.cast(sa.func.ST_AsGeoJSON(r.c.geom, 7), JSON),
        "properties", props)
    return (sa.select(sa.func.json_build_object(
        "type", "FeatureCollection",
        "features", sa.func.coalesce(sa.func.json_agg(feature), sa.text("'[]'::json"))))
        .select_from(r).where(r.c.geom.is_not(None)).scalar_subquery())


def _buildings(actor: Actor, subtree: sa.Select, limit: int) -> sa.Select:
    actor.require("registry:read")
    occupancy, households, persons = building_counts(Building.id)
    return (sa.select(Building.id, Building.name, Building.address, Building.use,
                      Building.floors, households, persons,
                      sa.func.coalesce(Building.footprint, Building.location).label("geom"))
            .join(occupancy, sa.true())
            .where(Building.area_id.in_(subtree), areas.in_scope(Building.area_id, actor),
                   Building.ended_at.is_(None))
            .order_by(Building.id).limit(limit))


def _cases(actor: Actor, subtree: sa.Select, limit: int) -> sa.Select:
    return (sa.select(Case.id, Case.code, Case.state, CaseCategory.code.label("category"),
                      CaseCategory.name.label("category_name"),
                      light_sql().label("light"), overdue_sql().label("overdue"),
                      Case.address, Case.reported_at, Case.due_at, Case.location.label("geom"))
            .join(CaseCategory, CaseCategory.id == Case.category_id)
            .where(Case.area_id.in_(subtree), visible(actor), Case.state.in_(OPEN_STATES))
            .order_by(overdue_sql().desc(), Case.due_at.asc().nulls_last(), Case.id)
            .limit(limit))


def _organisations(actor: Actor, subtree: sa.Select, limit: int) -> sa.Select:
    actor.require("registry:read")
    return (sa.select(Organisation.id, Organisation.name, Organisation.kind,
                      Organisation.industry, Organisation.employees, Organisation.address,
                      Organisation.building_id, Organisation.risk_flags,
                      Organisation.location.label("geom"))
            .where(Organisation.area_id.in_(subtree),
                   areas.in_scope(Organisation.area_id, actor), Organisation.ended_at.is_(None))
            .order_by(Organisation.id).limit(limit))


# This package's own collections; other packages add theirs at wiring.
collections: dict[str, Collection] = {"buildings": _buildings, "cases": _cases,
                                      "organisations": _organisations}


def _subtree(area: Area) -> sa.Select:
    return areas.subtree_ids(area)


def area_map(s: Session, actor: Actor, area_id: int, crs: str, max_features: int) -> dict:
    """The area's map: boundary, buildings, open cases, organisations, service points (each
    a FeatureCollection, at most `max_features` features) and the grid card."""
    area = areas.get_area(s, actor, area_id)
    subtree = _subtree(area)
    boundary = feature_collection(
        sa.select(Area.id, Area.code, Area.name, Area.level, Area.area_m2,
                  Area.boundary.label("geom")).where(Area.id == area.id))
    parts: dict[str, Any] = {"boundary": boundary}
    omitted = []
    for name, build in collections.items():
        try:
            parts[name] = feature_collection(build(actor, subtree, max_features + 1))
        except Forbidden:  # e.g. a resident: no register layers, the rest of the map
            omitted.append(name)
    box = sa.select(Area.boundary).where(Area.id == area.id).scalar_subquery()
    row = s.execute(sa.select(
        sa.func.json_build_object(*[x for kv in parts.items() for x in kv]).label("maps"),
        sa.func.ST_XMin(box), sa.func.ST_YMin(box), sa.func.ST_XMax(box),
        sa.func.ST_YMax(box))).one()
    maps: dict[str, Any] = row[0]
    truncated = []
    for name, fc in maps.items():
        if len(fc["features"]) > max_features:
            del fc["features"][max_features:]
            truncated.append(name)
        if crs != "wgs84":
            for feature in fc["features"]:
                feature["geometry"] = crs_mod.transform_geojson(feature["geometry"], crs)
    bbox = None
    if row[1] is not None:
        west, south = crs_mod.from_wgs84(row[1], row[2], crs)
        east, north = crs_mod.from_wgs84(row[3], row[4], crs)
        bbox = [round(v, 7) for v in (west, south, east, north)]
    for name in ("service_points", *omitted):
        maps.setdefault(name, {"type": "FeatureCollection", "features": []})
    return {"area": {"id": area.id, "code": area.code, "name": area.name, "level": area.level,
                     "bbox": bbox},
            "crs": crs, "card": areas.grid_card(s, actor, area.id), **maps,
            "truncated": truncated, "omitted": omitted}


# --- the print map -------------------------------------------------------------------------

_LIGHT_COLOURS = {"green": "#2e7d32", "yellow": "#f9a825", "red": "#c62828", None: "#1565c0"}


def _svg_rows(geom: Any) -> tuple[Any, Any, Any]:
    """ST_AsSVG of a geometry in Web Mercator (metres; SVG's y axis points down, which
    ST_AsSVG accounts for by negating y), and a point's x and y in the same axes (NULL for
    other shapes: a point drawn as a square needs its centre as numbers)."""
    merc = sa.func.ST_Transform(geom, 3857)
    is_point = sa.func.ST_GeometryType(merc) == "ST_Point"
    return (sa.func.ST_AsSVG(merc, 0, 1),
            sa.case((is_point, sa.func.ST_X(merc))), sa.case((is_point, -sa.func.ST_Y(merc))))


def area_svg(s: Session, actor: Actor, area_id: int, max_features: int,
             width_px: int = 1000) -> str:
    """The area's boundary, buildings and open cases as an SVG document."""
    area = areas.get_area(s, actor, area_id)
    subtree = _subtree(area)
    b = _buildings(actor, subtree, max_features).subquery("b")
    c = _cases(actor, subtree, max_features).subquery("c")
    b_svg, b_x, b_y = _svg_rows(b.c.geom)
    c_svg, _, _ = _svg_rows(c.c.geom)
    merc = sa.func.ST_Transform(Area.boundary, 3857)
    bounds = sa.select(sa.func.ST_AsSVG(merc, 0, 1).label("svg"),
                       sa.func.ST_XMin(merc).label("x0"), sa.func.ST_YMin(merc).label("y0"),
                       sa.func.ST_XMax(merc).label("x1"), sa.func.ST_YMax(merc).label("y1")
                       ).where(Area.id == area.id).subquery("a")
    buildings = sa.select(sa.func.coalesce(sa.func.jsonb_agg(sa.func.jsonb_build_array(
        b.c.id, b.c.name, b_svg, b_x, b_y)), sa.text("'[]'::jsonb"))).scalar_subquery()
    open_cases = sa.select(sa.func.coalesce(sa.func.jsonb_agg(sa.func.jsonb_build_array(
        c.c.id, c.c.code, c_svg, c.c.light)), sa.text("'[]'::jsonb"))).scalar_subquery()
    row = s.execute(sa.select(bounds, buildings.label("buildings"),
                              open_cases.label("cases"))).one()
    return _svg_document(area, row, width_px)


def _svg_document(area: Area, row: Any, width_px: int) -> str:
    if row.svg is None:  # an area without a boundary: an empty, valid drawing
        x0, y0, w, h = 0.0, 0.0, 1.0, 1.0
    else:
        w, h = max(row.x1 - row.x0, 1.0), max(row.y1 - row.y0, 1.0)
        pad = 0.03 * max(w, h)
        x0, y0, w, h = row.x0 - pad, -row.y1 - pad, w + 2 * pad, h + 2 * pad
    unit = max(w, h) / 400  # marker size: a fixed share of the drawing
    height_px = round(width_px * h / w)
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width_px}" height="{height_px}" '
           f'viewBox="{x0:.1f} {y0:.1f} {w:.1f} {h:.1f}">',
           f"<title>{escape(area.name)} ({escape(area.code)})</title>",
           '<g id="boundary" fill="#f5f5f5" stroke="#37474f" stroke-width="2" '
           'vector-effect="non-scaling-stroke">']
    if row.svg:
        out.append(f'<path fill-rule="evenodd" d="{row.svg}"/>')
    out.append('</g><g id="buildings" fill="#90a4ae" stroke="#455a64">')
    for bid, name, svg, x, y in row.buildings:
        label = f"<title>{escape(name or '')}</title>"
        if x is not None:  # a point: a square marker centred on it
            size = unit * 3
            out.append(f'<rect data-id="{bid}" x="{x - size / 2:.1f}" y="{y - size / 2:.1f}" '
                       f'width="{size:.1f}" height="{size:.1f}">{label}</rect>')
        elif svg:
            out.append(f'<path data-id="{bid}" d="{svg}">{label}</path>')
    out.append('</g><g id="cases" stroke="#ffffff">')
    for cid, code, svg, light in row.cases:
        colour = _LIGHT_COLOURS.get(light, _LIGHT_COLOURS[None])
        out.append(f'<circle data-id="{cid}" {svg} r="{unit * 4:.1f}" fill="{colour}">'
                   f"<title>{escape(code)}</title></circle>")
    out.append(f'</g><text x="{x0 + unit * 4:.1f}" y="{y0 + unit * 12:.1f}" '
               f'font-size="{unit * 10:.1f}" fill="#263238">'
               f"{escape(area.name)} {escape(area.code)}</text></svg>")
    return "\n".join(out)

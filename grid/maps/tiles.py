"""Vector tiles (矢量瓦片): the layer registry and the one statement that builds a tile.

A tile is `ST_AsMVT` of each asked layer's rows, concatenated with `||` in ONE statement.
Rules every layer follows (ARCHITECTURE §3 and §8):

- the spatial filter is on the indexed WGS-84 column against the tile envelope transformed
  to 4326 (never the column to 3857); geometries are simplified before they are transformed;
- rows are limited to the caller's scope in SQL (areas.in_scope, cases.scope.visible): a worker's
  tile never holds another grid's records; personal data never enters a tile (buildings
  carry counts, cases their id, state, category code and light);
- below `detail_zoom` points are aggregated per grid (one point per grid on its surface,
  with `count` and, for cases, `overdue`), so a district view is a few hundred points;
- every layer is capped at `max_features` rows per tile.

A tile's statement is built once per layer set, zoom and scope shape (`tile_statement`)
with bind parameters for x, y, the cap and the actor's scope values, and prepared once per
database connection: building and cache-keying the expressions on every request cost more
than many tiles' SQL, and planning it as much as a z16 tile's execution (issue 7).

Layers are pluggable like `storage.object_access`: a package's wiring.py registers its
`Layer` in `layers` (server/modules.py). The services package registers "service_points"
this way (grid/services/wiring.py); until it is installed that layer does not exist (404).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import BYTEA
from sqlalchemy.orm import Session

from grid.areas import service as areas
from grid.areas.models import Area
from grid.cases.clock import overdue_sql
from grid.cases.models import OPEN_STATES, Case, CaseCategory, light_sql
from grid.cases.scope import visible
from grid.registry.counts import building_counts
from grid.registry.models import Building, Organisation
from server import db
from server.auth.actor import Actor
from server.errors import Invalid, NotFound, field_errors

EXTENT, BUFFER = 4096, 64
MAX_ZOOM = 22


@dataclass(frozen=True)
class TileContext:
    """One tile request: where, who, and the settings that bound it.

    Layer builders get it with `x`, `y`, `max_features` and the actor's scope values as
    bind parameters (`bound()`): they may branch on `z`, the settings and the actor's
    roles and permissions, never on the tile's numbers or the scope's values.
    """

    z: int
    x: Any  # int, or a bind parameter in a builder
    y: Any
    actor: Actor
    detail_zoom: int = 14  # below it, points are aggregated per grid
    max_features: Any = 5000  # per layer and tile
    area_min_zoom: dict[str, int] = field(default_factory=dict)  # area level → first zoom
    public_areas: bool = True  # boundaries for everyone (网格公示), else the actor's areas

    @property
    def detailed(self) -> bool:
        return self.z >= self.detail_zoom

    @property
    def envelope(self) -> Any:
        """The tile in EPSG:3857 (what ST_AsMVTGeom clips to)."""
        return sa.func.ST_TileEnvelope(self.z, self.x, self.y)

    @property
    def bbox(self) -> Any:
        """The tile widened by the buffer ST_AsMVTGeom keeps (64/4096 of a tile), transformed
        to EPSG:4326 for `&&` on the indexed columns: a constant the planner folds, so the
        GiST index is used (the columns are never transformed)."""
        margin_m = 40075016.68 / 2 ** self.z * BUFFER / EXTENT
        return sa.func.ST_Transform(sa.func.ST_Expand(self.envelope, margin_m), 4326)

    @property
    def pixel_deg(self) -> float:
        """About one tile pixel in degrees: the simplification tolerance."""
        return 360.0 / (2 ** self.z) / EXTENT

    def simplified(self, geom_4326: Any) -> Any:
        """A line or polygon simplified to half a tile pixel (before it is transformed)."""
        return sa.func.ST_Simplify(geom_4326, self.pixel_deg / 2)

    def mvt_geom(self, geom_4326: Any, simplify: bool = False) -> Any:
        if simplify:
            geom_4326 = self.simplified(geom_4326)
        return sa.func.ST_AsMVTGeom(sa.func.ST_Transform(geom_4326, 3857), self.envelope,
                                    EXTENT, BUFFER, True)

    def shape(self) -> tuple:
        """What a builder may branch on: the key of the built statement."""
        a = self.actor
        return (self.z, self.detail_zoom, tuple(sorted(self.area_min_zoom.items())),
                self.public_areas, a.user_id is None, a.roles, a.permissions,
                len(a.area_paths), len(a.department_ids))

    def bound(self) -> TileContext:
        """This context with bind parameters for what varies between requests of one shape
        (named as in `params()`); the actor keeps its roles and permissions."""
        a = self.actor
        actor = Actor(
            user_id=None if a.user_id is None else sa.bindparam("user_id", type_=sa.BigInteger),
            roles=a.roles, permissions=a.permissions,
            area_paths=tuple(sa.bindparam(f"path_{i}", type_=sa.String)
                             for i in range(len(a.area_paths))),
            department_ids=tuple(sa.bindparam(f"department_{i}", type_=sa.BigInteger)
                                 for i in range(len(a.department_ids))))
        return dataclasses.replace(
            self, x=sa.bindparam("x", type_=sa.Integer), y=sa.bindparam("y", type_=sa.Integer),
            max_features=sa.bindparam("cap", type_=sa.Integer), actor=actor)

    def params(self) -> dict[str, Any]:
        a = self.actor
        return {"x": self.x, "y": self.y, "cap": self.max_features, "user_id": a.user_id,
                **{f"path_{i}": p for i, p in enumerate(a.area_paths)},
                **{f"department_{i}": d for i, d in enumerate(a.department_ids)}}


# A builder returns a SELECT of one bytea (an MVT layer, or several concatenated).
Builder = Callable[[TileContext], sa.Select]


@dataclass(frozen=True)
class Layer:
    """A tile layer: how to build it and what TileJSON says of it.

    `fields` are the attributes of its features (name → description) and `vector_layers`
    the MVT layer names it writes (its own name unless it writes several, like areas).
    A public layer is served without login and cached publicly.
    """

    name: str
    description: str
    build: Builder
    fields: dict[str, str]
    public: bool = False
    vector_layers: tuple[str, ...] = ()



def register(layer: Layer) -> None:
    layers[layer.name] = layer


def mvt(rows: sa.Select, name: str) -> sa.Select:
    """ST_AsMVT of `rows` (a select with a `geom` column in tile coordinates) as layer
    `name`; rows whose geometry was clipped away are dropped."""
    sub = rows.subquery("f")
    return (sa.select(sa.func.coalesce(
        sa.func.ST_AsMVT(sa.literal_column("f"), name, EXTENT, "geom"), sa.cast(b"", BYTEA)))
        .select_from(sub).where(sub.c.geom.is_not(None)))


def per_grid(ctx: TileContext, counts: sa.Select, area_id: Any, name: str) -> sa.Select:
    """Aggregated points: `counts` (rows of `area_id` and counts) placed on a point inside
    each area. An area is in the tile when its point is, so each grid's number appears in
    exactly one tile at a zoom (not split between the tiles its records fall in)."""
    grids = (sa.select(Area.id, Area.code, Area.name,
                       sa.func.ST_PointOnSurface(Area.boundary).label("pt"))
             .where(Area.boundary.op("&&")(ctx.bbox)).cte(f"g_{name}"))
    c = counts.where(area_id.in_(sa.select(grids.c.id))).subquery("c")
    rows = (sa.select(grids.c.id.label("area_id"), grids.c.code, grids.c.name,
                      *[col for col in c.c if col.name != "area_id"],
                      ctx.mvt_geom(grids.c.pt).label("geom"))
            .join(c, c.c.area_id == grids.c.id)
            .where(grids.c.pt.op("&&")(sa.func.ST_Transform(ctx.envelope, 4326)))
            .limit(ctx.max_features))
    return mvt(rows, name)


def _near(column: Any, ctx: TileContext) -> Any:
    return column.op("&&")(ctx.bbox)


# --- the layers ----------------------------------------------------------------------------


def _areas(ctx: TileContext) -> sa.Select:
    """One MVT layer per area level (street, community, grid…), coarse levels from low
    zooms; boundaries simplified to the tile's pixel."""
    shown = [lv for lv, zoom in ctx.area_min_zoom.items() if zoom <= ctx.z]
    level_ok = Area.level.in_(shown or ["-"])
    if ctx.z >= max(ctx.area_min_zoom.values(), default=0):
        level_ok = sa.or_(level_ok, Area.level.not_in(list(ctx.area_min_zoom) or ["-"]))
    rows = (sa.select(Area.id, Area.code, Area.name, Area.level,
                      ctx.mvt_geom(Area.boundary, simplify=True).label("geom"))
            .where(_near(Area.boundary, ctx), level_ok, _public_or_visible(ctx))
            .order_by(Area.path).limit(ctx.max_features).subquery("f"))
    # one ST_AsMVT per level (the layer name is the level), concatenated
    per_level = (sa.select(sa.func.ST_AsMVT(sa.literal_column("f"), rows.c.level, EXTENT,
                                            "geom").label("mvt"))
                 .select_from(rows).where(rows.c.geom.is_not(None))
                 .group_by(rows.c.level).subquery("l"))
    return sa.select(sa.func.coalesce(sa.func.string_agg(per_level.c.mvt, sa.cast(b"", BYTEA)),
                                      sa.cast(b"", BYTEA)))


def _public_or_visible(ctx: TileContext) -> Any:
    """Boundaries are public (网格公示) unless MAP_PUBLIC_AREAS is off: then the areas the
    actor may read."""
    return sa.true() if ctx.public_areas else Area.id.in_(areas.visible_area_ids(ctx.actor))


def _buildings(ctx: TileContext) -> sa.Select:
    ctx.actor.require("registry:read")
    scope = (areas.in_scope(Building.area_id, ctx.actor), Building.ended_at.is_(None))
    if not ctx.detailed:
        counts = (sa.select(Building.area_id, sa.func.count().label("count"))
                  .where(*scope).group_by(Building.area_id))
        return per_grid(ctx, counts, Building.area_id, "buildings")
    # footprints simplified to the pixel; entrance points as they are
    geom = sa.func.coalesce(ctx.simplified(Building.footprint), Building.location)
    occupancy, households, persons = building_counts(Building.id)
    rows = (sa.select(Building.id, Building.name, Building.use, Building.floors, households,
                      persons, ctx.mvt_geom(geom).label("geom"))
            .join(occupancy, sa.true())
            .where(*scope, sa.or_(_near(Building.footprint, ctx), _near(Building.location, ctx)))
            .order_by(Building.id).limit(ctx.max_features))
    return mvt(rows, "buildings")


def _cases(ctx: TileContext) -> sa.Select:
    scope = (visible(ctx.actor), Case.state.in_(OPEN_STATES))
    if not ctx.detailed:
        counts = (sa.select(Case.area_id, sa.func.count().label("count"),
                            sa.func.count().filter(overdue_sql()).label("overdue"))
                  .where(*scope).group_by(Case.area_id))
        return per_grid(ctx, counts, Case.area_id, "cases")
    rows = (sa.select(Case.id, Case.state, CaseCategory.code.label("category"),
                      light_sql().label("light"), overdue_sql().label("overdue"),
                      ctx.mvt_geom(Case.location).label("geom"))
            .join(CaseCategory, CaseCategory.id == Case.category_id)
            .where(*scope, _near(Case.location, ctx))
            # overdue first: what a capped tile keeps is what needs attention
            .order_by(overdue_sql().desc(), Case.due_at.asc().nulls_last(), Case.id)
            .limit(ctx.max_features))
    return mvt(rows, "cases")


def _organisations(ctx: TileContext) -> sa.Select:
    ctx.actor.require("registry:read")
    scope = (areas.in_scope(Organisation.area_id, ctx.actor), Organisation.ended_at.is_(None))
    if not ctx.detailed:
        counts = (sa.select(Organisation.area_id, sa.func.count().label("count"))
                  .where(*scope).group_by(Organisation.area_id))
        return per_grid(ctx, counts, Organisation.area_id, "organisations")
    rows = (sa.select(Organisation.id, Organisation.name, Organisation.kind,
                      Organisation.industry, Organisation.employees,
                      sa.func.array_to_string(Organisation.risk_flags, ",").label("risk_flags"),
                      ctx.mvt_geom(Organisation.location).label("geom"))
            .where(*scope, _near(Organisation.location, ctx))
            .order_by(Organisation.id).limit(ctx.max_features))
    return mvt(rows, "organisations")


_GRID_FIELDS = {"area_id": "The grid (aggregated points, below the detail zoom)",
                "code": "Grid code (aggregated)", "name": "Grid name (aggregated)",
                "count": "How many (aggregated)"}
# The layers this package serves itself; other packages add theirs at wiring.
layers: dict[str, Layer] = {layer.name: layer for layer in (
    Layer("areas", "Area boundaries, one layer per level (district, street, "
                   "community, grid…)", _areas,
          {"id": "Area id", "code": "Administrative code", "name": "Name",
           "level": "Level key"}, public=True),
    Layer("buildings", "Buildings (楼栋) in scope: footprint or entrance point, with "
                       "household and person counts", _buildings,
          {"id": "Building id", "name": "Name/number", "use": "Use", "floors": "Floors",
           "households": "Households living in it", "persons": "Persons present",
           **_GRID_FIELDS}),
    Layer("cases", "Open cases (事件) in scope", _cases,
          {"id": "Case id", "state": "State", "category": "Category code",
           "light": "green/yellow/red",
           "overdue": "Past its stage's limit (aggregated: how many are)",
           **_GRID_FIELDS}),
    Layer("organisations", "Organisations (实有单位) in scope", _organisations,
          {"id": "Organisation id", "name": "Name", "kind": "Kind", "industry": "Industry",
           "employees": "Employees", "risk_flags": "Risk flags, comma-separated",
           **_GRID_FIELDS}),
)}


# --- building a tile -----------------------------------------------------------------------


def check_tile(z: int, x: int, y: int, max_zoom: int = MAX_ZOOM) -> None:
    """z/x/y of an XYZ tile (422 naming the coordinate otherwise)."""
    if not 0 <= z <= max_zoom:
        raise Invalid(field_errors("z", f"Zoom runs from 0 to {max_zoom}.", location="path"))
    for name, value in (("x", x), ("y", y)):
        if not 0 <= value < 2 ** z:
            raise Invalid(field_errors(name, f"At zoom {z}, {name} runs from 0 to "
                                             f"{2 ** z - 1}.", location="path"))


def parse_layers(spec: str) -> list[Layer]:
    """`buildings` or `buildings,cases`: the layers of one tile, in the order asked."""
    names = [n for n in spec.split(",") if n]
    unknown = [n for n in names if n not in layers]
    if not names or unknown or len(names) != len(set(names)):
        raise NotFound(f"No such layer: {spec} (layers: {', '.join(sorted(layers))})")
    return [layers[n] for n in names]


# Sent in the tile statement's round trip. PostGIS's function costs tempt the planner into
# parallel seq scans (ARCHITECTURE §8): off (JIT, which they also trigger, is off for every
# session: server.db.engine_for). A plan for each tile's own x and y: a generic plan, which
# cannot see how many rows a tile envelope holds, nested-looped the dense tiles (EXPLAIN
# ANALYZE of the benchmark's z14 centre tile: 40 ms → 69 ms).
_TILE_SETTINGS = ("SET LOCAL max_parallel_workers_per_gather = 0; "
                  "SET LOCAL plan_cache_mode = force_custom_plan")

# (layer builders, context shape) → prepared statement. Bounded by the layer sets asked for
# × 23 zooms × the scope shapes in use; cleared if something asks for far more than that
# (and each connection keeps at most db.Prepared.MAX_PER_CONNECTION of them).
_statements: dict[tuple, tuple[sa.Select, db.Prepared]] = {}
MAX_STATEMENTS = 1024


def tile_statement(ctx: TileContext, chosen: list[Layer]) -> tuple[sa.Select, db.Prepared]:
    """The statement of these layers for contexts of `ctx`'s shape (its bind parameters:
    `ctx.params()`), built once: as SQLAlchemy built it, and prepared."""
    key = (tuple(layer.build for layer in chosen), ctx.shape())
    built = _statements.get(key)
    if built is None:
        template = ctx.bound()
        parts = [layer.build(template).scalar_subquery() for layer in chosen]
        expr = parts[0]
        for part in parts[1:]:
            expr = expr.op("||", return_type=BYTEA)(part)
        if len(_statements) >= MAX_STATEMENTS:
            _statements.clear()
        stmt = sa.select(expr)
        built = _statements[key] = (stmt, db.Prepared(stmt, settings=_TILE_SETTINGS))
    return built


def build_tile(s: Session, ctx: TileContext, chosen: list[Layer]) -> bytes:
    """The tile's bytes (b"" for an empty tile), in one statement and one round trip."""
    check_tile(ctx.z, ctx.x, ctx.y)
    _, prepared = tile_statement(ctx, chosen)
    data = prepared.execute(s.connection(), ctx.params()).scalar()
    return bytes(data or b"")


def tilejson(s: Session, actor: Actor, chosen: list[Layer], tiles_url: str,
             ctx: TileContext) -> dict:
    """TileJSON 3.0.0 of these layers: URL template, zooms, bounds of the caller's areas,
    and each MVT layer's fields."""
    scoped = actor.user_id is not None and not all(layer.public for layer in chosen)
    extent = sa.select(sa.func.ST_Extent(Area.boundary).label("e"))
    if scoped:
        extent = extent.where(areas.in_scope(Area.id, actor))
    e = extent.subquery().c.e
    bounds_row = s.execute(sa.select(sa.func.ST_XMin(e), sa.func.ST_YMin(e),
                                     sa.func.ST_XMax(e), sa.func.ST_YMax(e))).one()
    bounds = [round(v, 6) for v in bounds_row] if bounds_row[0] is not None \
        else [-180, -85.0511, 180, 85.0511]
    vector_layers = []
    for layer in chosen:
        if layer.name == "areas":
            names = [lv for lv, _ in sorted(ctx.area_min_zoom.items(), key=lambda kv: kv[1])]
        else:
            names = list(layer.vector_layers or (layer.name,))
        for name in names:
            vector_layers.append({
                "id": name, "description": layer.description, "fields": layer.fields,
                "minzoom": ctx.area_min_zoom.get(name, 0) if layer.name == "areas" else 0,
                "maxzoom": MAX_ZOOM})
    return {
        "tilejson": "3.0.0", "name": ",".join(layer.name for layer in chosen),
        "scheme": "xyz", "tiles": [tiles_url], "minzoom": 0, "maxzoom": MAX_ZOOM,
        "bounds": bounds, "center": [(bounds[0] + bounds[2]) / 2, (bounds[1] + bounds[3]) / 2,
                                     ctx.detail_zoom],
        "vector_layers": vector_layers,
        "description": f"Points are aggregated per grid below zoom {ctx.detail_zoom}; "
                       f"at most {ctx.max_features} features per layer and tile.",
    }

"""Importing and exporting area boundaries (GeoJSON), with the checks a city's GIS
office expects before anything is written:

- every geometry a Polygon/MultiPolygon with finite, in-range coordinates, of the size of
  an area (at most `max_extent_deg` wide and high: a world-sized polygon is a wrong file,
  and PostGIS's geography refuses edges of 180°: "Antipodal edge detected");
- valid (the reason and where, e.g. a self-intersection; repaired only when asked);
- codes that fit their level and parent; parents that exist (in the file or the database);
- each child inside its parent, within a tolerance in metres;
- siblings not overlapping (the overlap's area and where);
- gaps inside a parent not covered by its children (warnings).

Geometry checks run in PostGIS over a temporary table, in metres (geography). An import is
all or nothing: any error and nothing is written; `dry_run` only reports. A geometry that
PostGIS still refuses is a 422 naming the feature, not a 500.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

import sqlalchemy as sa
from geoalchemy2.shape import from_shape
from shapely.geometry import MultiPolygon
from sqlalchemy.orm import Session

from geo import crs as crs_mod
from geo import shapes
from grid.areas import service
from grid.areas.models import Area
from server import audit
from server.auth.actor import Actor
from server.errors import Invalid, NotFound

MAX_FEATURES = 20_000


@dataclass
class Problem:
    kind: str  # geometry, invalid, code, level, parent, duplicate, outside_parent, overlap, gap…
    message: str
    feature: int | None = None  # index in the FeatureCollection
    code: str | None = None
    location: list[float] | None = None  # [lon, lat] of where it is
    area_m2: float | None = None
    other_code: str | None = None


@dataclass
class ImportReport:
    dry_run: bool
    features: int = 0
    errors: list[Problem] = field(default_factory=list)
    warnings: list[Problem] = field(default_factory=list)
    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors

    def as_dict(self) -> dict:
        return {"ok": self.ok, "dry_run": self.dry_run, "features": self.features,
                "errors": [_clean(asdict(p)) for p in self.errors],
                "warnings": [_clean(asdict(p)) for p in self.warnings],
                "created": self.created, "updated": self.updated}


def _clean(d: dict) -> dict:
    return {k: v for k, v in d.items() if v is not None}


@dataclass
class Candidate:
    idx: int
    code: str
    name: str
    level: str
    parent_code: str | None
    geom: MultiPolygon


@dataclass
class Options:
    repair: bool = False
    # How far a child may stick out of its parent; also the width below which an overlap
    # or a gap is a sliver of coordinate rounding rather than a real problem.
    tolerance_m: float = 1.0
    overlap_min_m2: float = 1.0  # smaller sibling overlaps are not errors
    gap_min_m2: float = 100.0  # smaller uncovered bits of a parent are not reported
    # Width and height, in degrees, no area may exceed (AREA_MAX_EXTENT_DEG): a Chinese
    # city is at most a few degrees across.
    max_extent_deg: float = 30.0


def _parse_features(collection: Any, report: ImportReport, opts: Options) -> list[Candidate]:
    if not isinstance(collection, dict) or collection.get("type") != "FeatureCollection":
        raise Invalid({"json": {"type": ["Send a GeoJSON FeatureCollection."]}})
    features = collection.get("features")
    if not isinstance(features, list) or not features:
        raise Invalid({"json": {"features": ["The collection has no features."]}})
    if len(features) > MAX_FEATURES:
        raise Invalid({"json": {"features": [f"At most {MAX_FEATURES} features per import."]}})
    report.features = len(features)
    seen: dict[str, int] = {}
    candidates = []
    for i, feature in enumerate(features):
        props = (feature or {}).get("properties") or {} if isinstance(feature, dict) else {}
        code = str(props.get("code") or "").strip()
        name = str(props.get("name") or "").strip()
        level = str(props.get("level") or "").strip()
        parent_code = str(props.get("parent_code") or "").strip() or None
        missing = [k for k, v in (("code", code), ("name", name), ("level", level)) if not v]
        if missing:
            report.errors.append(Problem("properties", f"Missing {', '.join(missing)}.", i,
                                         code or None))
            continue
        if code in seen:
            report.errors.append(Problem("duplicate", f"Code {code} also at feature "
                                                      f"{seen[code]}.", i, code))
            continue
        seen[code] = i
        try:
            geom = shapes.parse_geometry((feature or {}).get("geometry"))
        except shapes.ShapeError as exc:
            report.errors.append(Problem("geometry", exc.reason, i, code, exc.location))
            continue
        x0, y0, x1, y1 = geom.bounds
        if max(x1 - x0, y1 - y0) > opts.max_extent_deg:
            report.errors.append(Problem(
                "extent", f"The boundary spans {x1 - x0:.1f}° of longitude by {y1 - y0:.1f}° "
                f"of latitude; an area spans at most {opts.max_extent_deg:g}°. Is this the "
                "right file?", i, code, [x0, y0]))
            continue
        problem = shapes.check_valid(geom)
        if problem is not None:
            if not opts.repair:
                report.errors.append(Problem("invalid", f"Invalid polygon: {problem.reason}. "
                                             "Fix it, or import with repair=true.", i, code,
                                             problem.location))
                continue
            geom = shapes.repair(geom)
            if geom.is_empty:
                report.errors.append(Problem("invalid", "Nothing polygonal is left after "
                                             "repair.", i, code, problem.location))
                continue
            report.warnings.append(Problem("repaired", f"Repaired: {problem.reason}.", i,
                                           code, problem.location))
        candidates.append(Candidate(i, code, name, level, parent_code,
                                    shapes.as_multipolygon(geom)))
    return candidates


def _check_codes(s: Session, actor: Actor, candidates: list[Candidate],
                 report: ImportReport) -> list[Candidate]:
    levels = service.levels(s)
    in_file = {c.code: c for c in candidates}
    wanted = {c.parent_code for c in candidates if c.parent_code} | set(in_file)
    existing = {a.code: a for a in s.scalars(sa.select(Area).where(Area.code.in_(wanted)))}
    manageable = set(s.scalars(sa.select(Area.code).where(
        Area.code.in_(wanted), service.in_scope(Area.id, actor))))
    kept = []
    for c in candidates:
        if c.level not in levels:
            report.errors.append(Problem("level", f"Unknown level {c.level!r}; known: "
                                         f"{', '.join(levels)}.", c.idx, c.code))
            continue
        if c.code in existing and c.code not in manageable:
            report.errors.append(Problem("scope", "This area exists outside your areas.",
                                         c.idx, c.code))
            continue
        parent_level = None
        parent_for_code: Area | None = None
        # An area that stays where it is may keep a parent outside the actor's areas (a
        # district admin re-importing their district): only placing an area needs the parent.
        current = existing.get(c.code)
        if c.parent_code is None:
            if not actor.unrestricted and not (current is not None
                                               and current.parent_id is None):
                report.errors.append(Problem("parent", "Only a system administrator may add "
                                             "a top-level area.", c.idx, c.code))
                continue
        elif c.parent_code in in_file:
            p = in_file[c.parent_code]
            parent_level = levels.get(p.level)
            parent_for_code = Area(code=p.code)
        elif c.parent_code in existing:
            parent_for_code = existing[c.parent_code]
            stays = current is not None and current.parent_id == parent_for_code.id
            if c.parent_code not in manageable and not stays:
                report.errors.append(Problem("scope", f"Parent {c.parent_code} is outside "
                                             "your areas.", c.idx, c.code))
                continue
            parent_level = levels[parent_for_code.level]
        else:
            report.errors.append(Problem("parent", f"Parent {c.parent_code} is neither in the "
                                         "file nor in the database.", c.idx, c.code))
            continue
        problems = service.check_code(levels[c.level], c.code, parent_for_code, parent_level)
        if problems:
            report.errors.append(Problem("code", " ".join(problems), c.idx, c.code))
            continue
        kept.append(c)
    return kept


_CREATE_TEMP = """
DROP TABLE IF EXISTS pg_temp.area_import;
CREATE TEMP TABLE area_import (
    idx integer, code text PRIMARY KEY, parent_code text,
    geom geometry(MultiPolygon, 4326) NOT NULL
) ON COMMIT DROP;
"""

# Every area as it will be after the import: the file's, plus the database's siblings and
# children of the file's areas that the file does not replace (a new boundary for a
# community must still hold the grids it already has).
_FINAL = """
final AS (
    SELECT idx, code, parent_code, geom FROM area_import
    UNION ALL
    SELECT NULL, a.code, p.code, a.boundary
    FROM areas a JOIN areas p ON p.id = a.parent_id
    WHERE a.boundary IS NOT NULL
      AND (p.code IN (SELECT parent_code FROM area_import)
           OR p.code IN (SELECT code FROM area_import))
      AND NOT EXISTS (SELECT 1 FROM area_import i WHERE i.code = a.code)
),
parent_geom AS (
    SELECT DISTINCT ON (f.parent_code) f.parent_code AS code,
           COALESCE(pf.geom, pa.boundary) AS geom
    FROM final f
    LEFT JOIN area_import pf ON pf.code = f.parent_code
    LEFT JOIN areas pa ON pa.code = f.parent_code
    WHERE f.parent_code IS NOT NULL
)
"""

# A file's area outside its parent, or an area already in the database outside the new
# boundary the file gives its parent (reported on the parent's feature).
_OUTSIDE_PARENT = f"""
WITH {_FINAL},
outside AS (
    SELECT f.idx, f.code, f.parent_code, ST_CollectionExtract(ST_Difference(
               f.geom, ST_Buffer(pg.geom::geography, :tol)::geometry), 3) AS d
    FROM final f JOIN parent_geom pg ON pg.code = f.parent_code
    WHERE pg.geom IS NOT NULL
      AND (f.idx IS NOT NULL OR f.parent_code IN (SELECT code FROM area_import))
      AND NOT ST_CoveredBy(f.geom, pg.geom)
)
SELECT o.idx, o.code, p.idx AS parent_idx, o.parent_code, ST_Area(o.d::geography) AS m2,
       ST_X(ST_PointOnSurface(o.d)) AS lon, ST_Y(ST_PointOnSurface(o.d)) AS lat
FROM outside o LEFT JOIN area_import p ON p.code = o.parent_code
WHERE NOT ST_IsEmpty(o.d) AND ST_Area(o.d::geography) > 0.01
ORDER BY COALESCE(o.idx, p.idx), o.code
"""

_OVERLAPS = f"""
WITH {_FINAL}
SELECT a.idx AS a_idx, a.code AS a_code, b.idx AS b_idx, b.code AS b_code,
       ST_Area(x::geography) AS m2, ST_X(ST_PointOnSurface(x)) AS lon,
       ST_Y(ST_PointOnSurface(x)) AS lat
FROM final a
JOIN final b ON a.parent_code = b.parent_code AND a.code < b.code
               AND ST_Intersects(a.geom, b.geom)
CROSS JOIN LATERAL (SELECT ST_CollectionExtract(ST_Intersection(a.geom, b.geom), 3) AS x) i
WHERE (a.idx IS NOT NULL OR b.idx IS NOT NULL)
  AND NOT ST_IsEmpty(x) AND ST_Area(x::geography) > :overlap_min
  -- slivers thinner than the tolerance are coordinate rounding, not overlaps
  AND NOT ST_IsEmpty(ST_Buffer(x::geography, -:tol)::geometry)
ORDER BY a.code, b.code
"""

_GAPS = f"""
WITH {_FINAL},
gaps AS (
    SELECT pg.code, ST_CollectionExtract(ST_Difference(pg.geom,
               (SELECT ST_Union(f.geom) FROM final f WHERE f.parent_code = pg.code)), 3) AS d
    FROM parent_geom pg WHERE pg.geom IS NOT NULL
)
SELECT code, ST_Area(d::geography) AS m2,
       ST_X(ST_PointOnSurface(d)) AS lon, ST_Y(ST_PointOnSurface(d)) AS lat
FROM gaps WHERE NOT ST_IsEmpty(d) AND ST_Area(d::geography) > :gap_min
  AND NOT ST_IsEmpty(ST_Buffer(d::geography, -:tol)::geometry)
ORDER BY code
"""


def _spatial_checks(s: Session, candidates: list[Candidate], report: ImportReport,
                    opts: Options) -> None:
    for stmt in _CREATE_TEMP.strip().split(";\n"):
        if stmt.strip():
            s.execute(sa.text(stmt))
    s.execute(
        sa.text("INSERT INTO area_import (idx, code, parent_code, geom) "
                "VALUES (:idx, :code, :parent_code, ST_GeomFromText(:wkt, 4326))"),
        [{"idx": c.idx, "code": c.code, "parent_code": c.parent_code, "wkt": c.geom.wkt}
         for c in candidates],
    )
    for r in s.execute(sa.text(_OUTSIDE_PARENT), {"tol": opts.tolerance_m}):
        if r.idx is not None:
            report.errors.append(Problem(
                "outside_parent", f"{r.m2:.1f} m² lie outside the parent (tolerance "
                f"{opts.tolerance_m:g} m).", r.idx, r.code, [r.lon, r.lat], round(r.m2, 2)))
        else:
            report.errors.append(Problem(
                "outside_parent", f"{r.m2:.1f} m² of {r.code}, already inside this area, "
                f"would lie outside this boundary (tolerance {opts.tolerance_m:g} m).",
                r.parent_idx, r.parent_code, [r.lon, r.lat], round(r.m2, 2), r.code))
    for r in s.execute(sa.text(_OVERLAPS), {"overlap_min": opts.overlap_min_m2,
                                            "tol": opts.tolerance_m}):
        idx, code, other = (r.a_idx, r.a_code, r.b_code) if r.a_idx is not None else (
            r.b_idx, r.b_code, r.a_code)
        report.errors.append(Problem(
            "overlap", f"Overlaps sibling {other} by {r.m2:.1f} m².", idx, code,
            [r.lon, r.lat], round(r.m2, 2), other))
    for r in s.execute(sa.text(_GAPS), {"gap_min": opts.gap_min_m2, "tol": opts.tolerance_m}):
        report.warnings.append(Problem(
            "gap", f"{r.m2:.0f} m² of {r.code} are covered by none of its children.", None,
            r.code, [r.lon, r.lat], round(r.m2, 2)))
    s.execute(sa.text("DROP TABLE IF EXISTS pg_temp.area_import"))


def import_areas(s: Session, actor: Actor, collection: Any, *, dry_run: bool,
                 opts: Options) -> ImportReport:
    """Validate a FeatureCollection of areas and, if everything passes, create or update
    them by code (parents first). Raises Invalid with the report when anything fails."""
    actor.require("area:manage")
    report = ImportReport(dry_run=dry_run)
    candidates = _parse_features(collection, report, opts)
    candidates = _check_codes(s, actor, candidates, report)
    if candidates:
        _guarded(s, candidates, report, lambda: _spatial_checks(s, candidates, report, opts))
    _raise_errors(report)
    if dry_run:
        return report
    _guarded(s, candidates, report, lambda: _write(s, actor, candidates, report))
    _raise_errors(report)
    return report


def _raise_errors(report: ImportReport) -> None:
    if report.errors:
        raise Invalid({"json": {"features": [f"{len(report.errors)} problem(s); see report."]}},
                      message="The import has errors; nothing was written",
                      report=report.as_dict())


# The geography operations the checks and the write do with one boundary.
_PROBE = """
SELECT ST_Area(g::geography), ST_IsEmpty(ST_Buffer(g::geography, 1)::geometry),
       ST_Covers(g::geography, ST_PointOnSurface(g)::geography)
FROM (SELECT ST_GeomFromText(:wkt, 4326) AS g) x
"""

# What PostGIS raises for a geometry it cannot compute with: XX000 (lwerror, e.g.
# "Antipodal (180 degrees long) edge detected!") and 22xxx (data exceptions).
_POSTGIS_REFUSALS = (sa.exc.InternalError, sa.exc.DataError)


def _guarded(s: Session, candidates: list[Candidate], report: ImportReport,
             work: Any) -> None:
    """Run `work` in a savepoint; when PostGIS refuses a geometry, report the features it
    refuses alone (each probed in its own savepoint) instead of failing with a 500."""
    try:
        with s.begin_nested():
            work()
    except _POSTGIS_REFUSALS as exc:
        refused = []
        for c in candidates:
            try:
                with s.begin_nested():
                    s.execute(sa.text(_PROBE), {"wkt": c.geom.wkt})
            except _POSTGIS_REFUSALS as probe:
                reason = str(getattr(probe.orig, "pgerror", None) or probe.orig).strip()
                reason = reason.removeprefix("ERROR:").strip().splitlines()[0]
                refused.append(Problem("geometry", f"PostGIS cannot use this boundary: "
                                       f"{reason}", c.idx, c.code))
        if not refused:
            raise exc  # not a geometry of the file: a real failure
        report.errors.extend(refused)
        report.created.clear()  # rolled back with the savepoint
        report.updated.clear()


def _write(s: Session, actor: Actor, candidates: list[Candidate], report: ImportReport) -> None:
    levels = service.levels(s)
    by_code = {a.code: a for a in s.scalars(sa.select(Area).where(
        Area.code.in_({c.code for c in candidates} | {c.parent_code for c in candidates
                                                      if c.parent_code})).with_for_update())}
    for c in sorted(candidates, key=lambda c: levels[c.level].rank):
        parent = by_code.get(c.parent_code) if c.parent_code else None
        area = by_code.get(c.code)
        geom = from_shape(c.geom, srid=4326)
        if area is None:
            area = Area(code=c.code, name=c.name, level=c.level,
                        parent_id=parent.id if parent else None, path="", boundary=geom)
            s.add(area)
            s.flush()
            area.path = f"{parent.path if parent else ''}{area.id}."
            report.created.append(c.code)
        else:
            area.name, area.level, area.boundary = c.name, c.level, geom
            area.updated_at = sa.func.now()
            if parent is not None and area.parent_id != parent.id:
                s.flush()
                service.move_area(s, actor, area.id, parent.id, area.version)
            report.updated.append(c.code)
        by_code[c.code] = area
        s.flush()
    service.refresh_area_m2(s, [a.id for code, a in by_code.items() if code in
                                {c.code for c in candidates}])
    for area in by_code.values():
        s.refresh(area)
    audit.record(s, actor, "areas_imported", "area", None,
                 changes={"created": report.created, "updated": report.updated})


def validate_single(s: Session, area: Area, geojson: Any, repair: bool) -> Any:
    """Check a replacement boundary for one area exactly as an import would."""
    parent = s.get(Area, area.parent_id) if area.parent_id else None
    collection = {"type": "FeatureCollection", "features": [{
        "type": "Feature", "geometry": geojson,
        "properties": {"code": area.code, "name": area.name, "level": area.level,
                       "parent_code": parent.code if parent else None}}]}
    report = ImportReport(dry_run=True)
    opts = Options(repair=repair)
    candidates = _parse_features(collection, report, opts)
    if candidates:
        _spatial_checks(s, candidates, report, opts)
    if report.errors:
        raise Invalid({"json": {"boundary": [p.message for p in report.errors]}},
                      message="The boundary is not acceptable", report=report.as_dict())
    return from_shape(candidates[0].geom, srid=4326)


_EXPORT = """
SELECT json_build_object('type', 'FeatureCollection', 'features', COALESCE(json_agg(
    json_build_object(
        'type', 'Feature', 'id', a.id,
        'geometry', ST_AsGeoJSON(a.boundary, 7)::json,
        'properties', json_build_object('code', a.code, 'name', a.name, 'level', a.level,
                                        'parent_code', p.code, 'area_m2', round(a.area_m2))
    ) ORDER BY a.path), '[]'::json))
FROM areas a LEFT JOIN areas p ON p.id = a.parent_id
WHERE a.path LIKE :prefix
"""


def export_subtree(s: Session, actor: Actor, area_id: int, crs: str = "wgs84") -> dict:
    """An area and everything below it as a FeatureCollection (re-importable)."""
    root = service.get_area(s, actor, area_id)
    if not service.path_in_scope(actor, root.path):
        raise NotFound("No such area")  # ancestors are visible by name, not exportable
    prefix = root.path.replace("%", r"\%").replace("_", r"\_") + "%"
    collection = s.scalar(sa.text(_EXPORT), {"prefix": prefix})
    if crs != "wgs84":
        for feature in collection["features"]:
            if feature["geometry"]:
                feature["geometry"] = crs_mod.transform_geojson(feature["geometry"], crs)
    return json.loads(json.dumps(collection)) if isinstance(collection, str) else collection

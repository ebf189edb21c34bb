"""Hot-spot runs (热点分析): analyse and store (the worker's daily task, or a job someone
asks for), and read the latest run's hot spots in the actor's scope.

Why stored: a city-wide run of one category over 90 days is worker work (seconds over a
million cases, bench/README.md), not a request's. The daily task `hotspot_runs` analyses
every district (areas without a parent) × every 小类 with at least `min_count` cases in
the window; `POST /insights/hotspots/runs` queues a job (202 + poll `GET /jobs/{id}`)
for one category and area with settings of one's own. `GET /insights/hotspots` and the
`hotspots` tile layer read the latest run covering the area.

Scope and privacy: reading needs stats:read and the area in scope; a hot spot is shown when
its grid (the one under its centre) is in scope; its case ids are those the actor may see
(cases.scope.visible); for roles without registry:read, hot spots of fewer than
SUPPRESS_BELOW cases are suppressed (small counts may single people out).
"""

from __future__ import annotations

import json
from dataclasses import asdict
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.orm import Session

from grid.areas import service as areas
from grid.areas.models import Area
from grid.cases.models import Case, CaseCategory
from grid.cases.scope import visible
from grid.insights.hotspots import (
    EXCLUDED_STATES,
    Analysis,
    HotspotSettings,
    analyse,
    category_ids,
)
from grid.insights.models import HOTSPOT_CLASSES, Hotspot, HotspotRun
from server import clock, jobs
from server.auth.actor import Actor
from server.errors import Invalid, NotFound, field_errors
from server.jobs import JobRun

SUPPRESS_BELOW = 5
JOB_KIND = "hotspot_run"
KEEP_DAYS = 90  # older runs (and their hot spots) are deleted by the daily task

# --- runs: analyse and store ---------------------------------------------------------------

_SHAPE = sa.text("""
WITH cell AS (
    SELECT ST_MakeEnvelope(split_part(k, ':', 1)::int * :size,
                           split_part(k, ':', 2)::int * :size,
                           (split_part(k, ':', 1)::int + 1) * :size,
                           (split_part(k, ':', 2)::int + 1) * :size, :srid) AS g
    FROM unnest(CAST(:cells AS text[])) AS k
), shape AS (
    SELECT ST_Multi(ST_Transform(ST_Union(g), 4326)) AS g FROM cell
)
SELECT shape.g AS shape,
       coalesce((SELECT a.id FROM areas a WHERE a.path LIKE :path
                   AND ST_Intersects(a.boundary, ST_PointOnSurface(shape.g))
                 ORDER BY length(a.path) DESC, a.id LIMIT 1), :area_id) AS area_id
FROM shape
""")


def store(s: Session, category: CaseCategory, area: Area, settings: HotspotSettings,
          analysis: Analysis, created_by: int | None = None) -> HotspotRun:
    """The run and its hot spots as rows (shapes built in SQL, one statement a spot)."""
    run = HotspotRun(category_id=category.id, area_id=area.id,
                     window_start=analysis.window_start, window_end=analysis.window_end,
                     baseline_start=analysis.baseline_start,
                     settings={**asdict(settings), "cell_m": analysis.cell_m,
                               "srid": analysis.srid},
                     cells=analysis.n_cells, window_cases=analysis.window_cases,
                     created_by=created_by)
    s.add(run)
    s.flush()
    for spot in analysis.spots:
        keys = [f"{ix}:{iy}" for ix, iy in spot.cells]
        shape, area_id = s.execute(_SHAPE, {
            "size": analysis.cell_m, "srid": analysis.srid, "cells": keys,
            "path": f"{area.path}%", "area_id": area.id}).one()
        s.add(Hotspot(run_id=run.id, area_id=area_id, shape=shape, cells=keys,
                      count=spot.count, expected=spot.expected,
                      baseline_expected=spot.baseline_expected, z=spot.z, p=spot.p,
                      q=spot.q, hot_slices=spot.hot_slices, spot_class=spot.spot_class))
    s.flush()
    return run


def run(s: Session, category: CaseCategory, area: Area, settings: HotspotSettings,
        window_end: datetime, created_by: int | None = None) -> HotspotRun:
    """Analyse and store one category over one area."""
    analysis = analyse(s, category_ids(s, category), area, settings,
                       settings.cell_for(category.code), window_end)
    return store(s, category, area, settings, analysis, created_by)


def daily_runs(s: Session, settings: HotspotSettings = HotspotSettings(),
               now: datetime | None = None) -> dict:
    """The worker's task: every district × every 小类 with enough cases in the window;
    runs older than KEEP_DAYS go."""
    end = now or clock.now()
    start = end - timedelta(days=settings.window_days)
    pruned = s.execute(sa.delete(HotspotRun).where(
        HotspotRun.created_at < end - timedelta(days=KEEP_DAYS))).rowcount
    done = 0
    for district in s.scalars(sa.select(Area).where(Area.parent_id.is_(None),
                                                    Area.boundary.is_not(None))):
        busy = (sa.select(Case.category_id).where(
            Case.reported_at >= start, Case.reported_at < end,
            Case.area_id.in_(areas.subtree_ids(district)))
            .group_by(Case.category_id).having(sa.func.count() >= settings.min_count))
        for category in s.scalars(sa.select(CaseCategory).where(CaseCategory.id.in_(busy))):
            run(s, category, district, settings, end)
            done += 1
    return {"runs": done, "pruned": pruned}


# --- on demand: a job ----------------------------------------------------------------------


def _category(s: Session, code: str, location: str = "json") -> CaseCategory:
    category = s.scalar(sa.select(CaseCategory).where(CaseCategory.code == code))
    if category is None:
        raise Invalid(field_errors("category", "No such category.", location=location))
    return category


def submit(s: Session, actor: Actor, data: dict) -> jobs.Job:
    """Queue a run for one category over an area in scope (its settings as given)."""
    actor.require("stats:read")
    area = _scoped_area(s, actor, data["area_id"])
    if area.boundary is None:
        raise Invalid(field_errors("area_id", "The area has no boundary to analyse."))
    _category(s, data["category"])
    return jobs.create(s, actor, JOB_KIND, area_id=area.id, params=dict(data))


def run_job(s: Session, actor: Actor, job: JobRun) -> dict:
    """The job's handler: the same checks as the request, then the run."""
    params = dict(job.params)
    actor.require("stats:read")
    area = _scoped_area(s, actor, params.pop("area_id"))
    category = _category(s, params.pop("category"))
    settings = HotspotSettings(**params)
    stored = run(s, category, area, settings, clock.now(), created_by=actor.user_id)
    return {"run_id": stored.id, "hotspots": len(_spot_rows(s, stored.id))}


def _spot_rows(s: Session, run_id: int) -> list[int]:
    return list(s.scalars(sa.select(Hotspot.id).where(Hotspot.run_id == run_id)))


def _scoped_area(s: Session, actor: Actor, area_id: int) -> Area:
    area = s.scalar(sa.select(Area).where(Area.id == area_id, areas.in_scope(Area.id, actor)))
    if area is None:
        raise NotFound("No such area")
    return area


# --- reading -------------------------------------------------------------------------------


def latest_run(s: Session, category: CaseCategory, area: Area) -> HotspotRun | None:
    """The newest run of the category over the area or one of its ancestors."""
    return s.scalar(sa.select(HotspotRun).where(
        HotspotRun.category_id == category.id,
        HotspotRun.area_id == sa.any_(areas.path_ids(sa.literal(area.path))))
        .order_by(HotspotRun.id.desc()).limit(1))


def hotspots_for(s: Session, actor: Actor, code: str, area_id: int,
                 spot_class: str | None = None) -> dict:
    """The latest run's hot spots in the area's subtree and the actor's scope, strongest
    first, each with its shape (GeoJSON), figures, class and the case ids the actor may
    see."""
    actor.require("stats:read")
    area = _scoped_area(s, actor, area_id)
    category = _category(s, code, "query")
    found = latest_run(s, category, area)
    if found is None:
        return {"run": None, "hotspots": []}
    cases = (sa.select(sa.func.coalesce(sa.func.array_agg(sa.func.distinct(Case.id)),
                                        sa.text("'{}'::bigint[]")))
             .where(Case.category_id.in_(category_ids(s, category)),
                    Case.reported_at >= found.window_start, Case.reported_at < found.window_end,
                    Case.state.not_in(EXCLUDED_STATES),
                    sa.func.ST_Intersects(Hotspot.shape, Case.location), visible(actor))
             .correlate(Hotspot).scalar_subquery())
    stmt = (sa.select(Hotspot, sa.func.ST_AsGeoJSON(Hotspot.shape, 7).label("geojson"),
                      cases.label("case_ids"))
            .where(Hotspot.run_id == found.id, areas.in_scope(Hotspot.area_id, actor),
                   Hotspot.area_id.in_(areas.subtree_ids(area)))
            .order_by(Hotspot.p, Hotspot.count.desc(), Hotspot.id))
    if spot_class:
        stmt = stmt.where(Hotspot.spot_class == spot_class)
    if not actor.can("registry:read"):
        stmt = stmt.where(Hotspot.count >= SUPPRESS_BELOW)
    return {"run": found, "hotspots": [_spot(h, g, ids) for h, g, ids in s.execute(stmt)]}


def _spot(h: Hotspot, geojson: str, case_ids: list[int]) -> dict:
    return {"id": h.id, "area_id": h.area_id, "shape": json.loads(geojson),
            "count": h.count, "expected": h.expected,
            "baseline_expected": h.baseline_expected, "z": h.z, "p": h.p, "q": h.q,
            "hot_slices": h.hot_slices, "class": h.spot_class,
            "class_label": HOTSPOT_CLASSES[h.spot_class], "case_ids": sorted(case_ids)}

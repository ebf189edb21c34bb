"""The `hotspots` tile layer (grid.maps): the latest run's hot spots of every category and
area, in the actor's scope (stats:read; hot spots of fewer than SUPPRESS_BELOW cases only
for roles with registry:read). Registered in grid/insights/wiring.py."""

from __future__ import annotations

import sqlalchemy as sa

from grid.areas import service as areas
from grid.cases.models import CaseCategory
from grid.insights.hotspot_runs import SUPPRESS_BELOW
from grid.insights.models import Hotspot, HotspotRun
from grid.maps import tiles


def _hotspots(ctx: tiles.TileContext) -> sa.Select:
    ctx.actor.require("stats:read")
    latest = sa.select(sa.func.max(HotspotRun.id)).group_by(HotspotRun.category_id,
                                                            HotspotRun.area_id)
    rows = (sa.select(Hotspot.id, CaseCategory.code.label("category"),
                      Hotspot.spot_class.label("class"), Hotspot.count, Hotspot.expected,
                      Hotspot.q, ctx.mvt_geom(Hotspot.shape, simplify=True).label("geom"))
            .join(HotspotRun, HotspotRun.id == Hotspot.run_id)
            .join(CaseCategory, CaseCategory.id == HotspotRun.category_id)
            .where(Hotspot.run_id.in_(latest), Hotspot.shape.op("&&")(ctx.bbox),
                   areas.in_scope(Hotspot.area_id, ctx.actor))
            .order_by(Hotspot.p, Hotspot.id).limit(ctx.max_features))
    if not ctx.actor.can("registry:read"):
        rows = rows.where(Hotspot.count >= SUPPRESS_BELOW)
    return tiles.mvt(rows, "hotspots")


def tile_layer() -> tiles.Layer:
    return tiles.Layer(
        "hotspots", "Hot spots (热点) of the latest run per category and area, in scope",
        _hotspots,
        {"id": "Hot spot id (GET /insights/hotspots)", "category": "Category code",
         "class": "new / intensifying / persistent / fading",
         "count": "Cases in the window", "expected": "Expected at the area's average",
         "q": "False-discovery-adjusted p (Benjamini–Hochberg)"})

"""Service points on the map (grid.maps): a public tile layer and a per-area map
collection — service points are public information (办事指南). Both are added at
wiring (grid/services/wiring.py)."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from grid.areas.models import Area
from grid.services.models import Service, ServiceCategory
from server.auth.actor import Actor


def service_points_tile(ctx: Any) -> sa.Select:
    from grid.maps import tiles

    rows = (sa.select(Service.id, Service.name, Service.booking_mode, Service.fee,
                      ServiceCategory.code.label("category"),
                      ctx.mvt_geom(Service.location).label("geom"))
            .join(ServiceCategory, ServiceCategory.id == Service.category_id)
            .where(Service.active, Service.location.op("&&")(ctx.bbox))
            .order_by(Service.id).limit(ctx.max_features))
    return tiles.mvt(rows, "service_points")


def service_points_collection(actor: Actor, subtree: sa.Select, limit: int) -> sa.Select:
    """Active service points standing inside the area (whoever provides them)."""
    inside = sa.select(Area.id).where(Area.id.in_(subtree),
                                      sa.func.ST_Covers(Area.boundary, Service.location))
    return (sa.select(Service.id, Service.name, Service.address, Service.phone, Service.fee,
                      Service.booking_mode, Service.area_id,
                      Service.location.label("geom"))
            .where(Service.active, Service.location.is_not(None), inside.exists())
            .order_by(Service.id).limit(limit))


def tile_layer() -> Any:
    """The "service_points" tile layer (a grid.maps.tiles.Layer), added at wiring."""
    from grid.maps import tiles

    return tiles.Layer(
        "service_points", "Service points (便民服务点): public", service_points_tile,
        {"id": "Service id", "name": "Name", "booking_mode": "none/slots/request",
         "fee": "Fee", "category": "Service category code"}, public=True)

"""What grid.maps contributes (its blueprints; its own tile layers and collections are the
initial values of `tiles.layers` and `service.collections`, which other packages add to
at wiring): see server/modules.py."""

from __future__ import annotations

from typing import TYPE_CHECKING

from grid.maps import models, views

if TYPE_CHECKING:
    from server.modules import Registry

TABLES = models  # imported so that the migrations see its tables


def contribute(registry: Registry) -> None:
    registry.blueprints(views.blueprints)

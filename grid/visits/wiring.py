"""What grid.visits contributes: its blueprints and who may see a visit's photos.
See server/modules.py."""

from __future__ import annotations

from typing import TYPE_CHECKING

from grid.visits import models, schemas, views

if TYPE_CHECKING:
    from server.modules import Registry

TABLES = models  # imported so that the migrations see its tables


def contribute(registry: Registry) -> None:
    registry.blueprints(views.blueprints)
    registry.current_schema(models.Visit, schemas.VisitSchema())  # 412 / 409 `current`
    registry.current_schema(models.VisitPolicy, schemas.PolicySchema())
    # Photos of a visit are visible to whoever may see the visit.
    registry.object_access("visit", views.visit_access)

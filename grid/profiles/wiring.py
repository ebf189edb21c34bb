"""What grid.profiles contributes: its blueprints (other packages add profile sections at
wiring). See server/modules.py."""

from __future__ import annotations

from typing import TYPE_CHECKING

from grid.profiles import models, views

if TYPE_CHECKING:
    from server.modules import Registry

TABLES = models  # imported so that the migrations see its tables


def contribute(registry: Registry) -> None:
    registry.blueprints(views.blueprints)

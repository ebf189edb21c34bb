"""What grid.insights contributes: see server/modules.py."""

from __future__ import annotations

from typing import TYPE_CHECKING

from grid.insights import models, views

if TYPE_CHECKING:
    from server.modules import Registry

TABLES = models  # imported so that the migrations see its tables


def contribute(registry: Registry) -> None:
    registry.blueprints(views.blueprints)
    # --- hotspots: hot spots and labour risk ---
    # --- end hotspots ---

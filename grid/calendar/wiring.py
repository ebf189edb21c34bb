"""What grid.calendar contributes (its blueprints): see server/modules.py."""

from __future__ import annotations

from typing import TYPE_CHECKING

from grid.calendar import models, views

if TYPE_CHECKING:
    from server.modules import Registry

TABLES = models  # imported so that the migrations see its tables


def contribute(registry: Registry) -> None:
    registry.blueprints(views.blueprints)
    registry.current_schema(models.WorkCalendar, views.current_calendar)  # a stale one's 412

"""What grid.registry contributes: its blueprints, who may see a record's photos, the
households/population figures of an area's card, and the building-occupancy tasks.
See server/modules.py."""

from __future__ import annotations

from typing import TYPE_CHECKING

from grid.areas import service as areas
from grid.registry import collecting, counts, models, schemas, scope, views
from server.cli import PeriodicTask

if TYPE_CHECKING:
    from server.modules import Registry

TABLES = models  # imported so that the migrations see its tables


def _record_access(model):
    return lambda s, actor, record_id: scope.get_record(s, actor, model, record_id)


def contribute(registry: Registry) -> None:
    collecting.configure(registry.settings["GPS_REVIEW_ACCURACY_M"])
    registry.blueprints(views.blueprints)
    # A stale record's 412 shows it in its own response schema.
    for model, present in ((models.Building, schemas.BuildingSchema()),
                           (models.House, schemas.HouseSchema()),
                           (models.Household, schemas.HouseholdSchema()),
                           (models.Organisation, schemas.OrganisationSchema()),
                           (models.Person, views.current_person)):
        registry.current_schema(model, present)
    # Photos of a record are visible to whoever may see the record.
    for kind, model in scope.KINDS.items():
        registry.object_access(kind, _record_access(model))
    if counts.grid_counts not in areas.card_counters:
        areas.card_counters.append(counts.grid_counts)
    registry.periodic_tasks((
        PeriodicTask("building_occupancy_compact", 600, counts.compact_occupancy),
        PeriodicTask("building_occupancy_recount", 86400, counts.recount_occupancy)))

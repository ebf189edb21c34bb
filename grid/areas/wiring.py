"""What grid.areas contributes: its blueprints, the actor's scope (memberships and
departments added to the actor's one query), the rule that an account lies in an
admin's scope only if all its places do, and the hierarchy notifications' broadcasts need.
See server/modules.py."""

from __future__ import annotations

from typing import TYPE_CHECKING

from grid.areas import memberships, models, schemas, service, views
from notifications.hierarchy import AreaHooks, use_areas

if TYPE_CHECKING:
    from server.modules import Registry

TABLES = models  # imported so that the migrations see its tables


def contribute(registry: Registry) -> None:
    registry.blueprints(views.blueprints)
    registry.current_schema(models.Area, schemas.AreaSchema())  # a stale area's 412
    registry.actor_enricher(service.SCOPE_ENRICHER)
    registry.user_scope_rule(service.placed_in_scope)
    # Broadcasts reach an area's subtree: notifications gets the hierarchy from here.
    use_areas(AreaHooks(service.in_scope, memberships.area_in_scope, memberships.members_below,
                        memberships.areas_reaching, memberships.area_codes_reaching))

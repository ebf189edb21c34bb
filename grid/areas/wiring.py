"""What grid.areas contributes: its blueprints, the actor's scope (memberships and
departments added to the actor's one query) and the rule that an account lies in an
admin's scope only if all its places do. See server/modules.py."""

from __future__ import annotations

from typing import TYPE_CHECKING

from grid.areas import models, service, views

if TYPE_CHECKING:
    from server.modules import Registry

TABLES = models  # imported so that the migrations see its tables


def contribute(registry: Registry) -> None:
    registry.blueprints(views.blueprints)
    registry.actor_enricher(service.SCOPE_ENRICHER)
    registry.user_scope_rule(service.placed_in_scope)

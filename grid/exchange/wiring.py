"""What grid.exchange contributes. See server/modules.py. Each helper's part is one block."""

from __future__ import annotations

from typing import TYPE_CHECKING

from grid.exchange import models, views

if TYPE_CHECKING:
    from server.modules import Registry

TABLES = models  # imported so that the migrations see its tables


def contribute(registry: Registry) -> None:
    _contribute_feeds(registry)


# --- feeds: feeds in (1+N 多源), review items (核实任务), declarations, break-the-glass ---


def _contribute_feeds(registry: Registry) -> None:
    from grid.exchange import declarations, grants, reviews
    from grid.registry import scope
    from grid.visits import service as visits
    from notifications.service import register_templates

    registry.blueprints(views.FEEDS_BLUEPRINTS)
    register_templates(grants.NOTICE_TEMPLATES)
    register_templates(declarations.NOTICE_TEMPLATES)
    registry.current_schema(models.Declaration, views.current_declaration)
    registry.current_schema(models.AccessGrant, views.current_grant)
    # photos of a declaration's documents: the resident and the grid's checkers
    registry.object_access("declaration", views.declaration_access)
    # break-the-glass opens records through the register's one scope filter
    if grants.OPENING not in scope.openings:
        scope.openings.append(grants.OPENING)
    # review items are checks in the grid worker's tasks (GET /me/tasks)
    visits.task_lists["review_items"] = reviews.task_items
    visits.task_lists["declarations"] = declarations.task_items

# --- end feeds ---

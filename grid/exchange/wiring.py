"""What grid.exchange contributes: events out (webhooks, 回单, open data) and what comes in
(feeds, review items, declarations, break-the-glass). See server/modules.py."""

from __future__ import annotations

from typing import TYPE_CHECKING

from grid.cases import notices as case_notices
from grid.exchange import (
    declarations,
    delivery,
    events,
    grants,
    hotline_results,
    models,
    open_data,
    reviews,
    schemas,
    views,
)
from grid.insights import warnings as insight_warnings
from grid.registry import history as registry_history
from grid.registry import scope
from grid.visits import service as visits
from notifications import broadcasts as notifications_broadcasts
from notifications.service import register_templates

if TYPE_CHECKING:
    from server.modules import Registry

TABLES = models  # imported so that the migrations see its tables


def _listen(listeners: list, listener) -> None:
    if listener not in listeners:  # wiring a second app changes nothing
        listeners.append(listener)


def contribute(registry: Registry) -> None:
    _contribute_webhooks(registry)
    _contribute_feeds(registry)


def _contribute_webhooks(registry: Registry) -> None:
    registry.blueprints(views.WEBHOOKS_BLUEPRINTS)
    # where events come from: a case's report (its timeline), every action of the engine
    # (case.transitioned, case.closed, the hotline's 回单), the register's change history,
    # broadcasts, warnings (预警) raised
    _listen(case_notices.TIMELINE_LISTENERS, events.on_case_timeline)
    registry.transition_listeners((events.on_transition, hotline_results.on_transition))
    _listen(registry_history.CHANGE_LISTENERS, events.on_registry_change)
    _listen(notifications_broadcasts.BROADCAST_LISTENERS, events.on_broadcast)
    _listen(insight_warnings.RAISED_LISTENERS, events.warning_raised)
    registry.periodic_tasks(delivery.PERIODIC_TASKS + open_data.PERIODIC_TASKS)


def _contribute_feeds(registry: Registry) -> None:
    registry.blueprints(views.FEEDS_BLUEPRINTS)
    register_templates(grants.NOTICE_TEMPLATES)
    register_templates(declarations.NOTICE_TEMPLATES)
    registry.current_schema(models.Declaration, views.current_declaration)
    registry.current_schema(models.AccessGrant, views.current_grant)
    registry.current_schema(models.ReviewItem, schemas.FeedReviewItemSchema())
    # photos of a declaration's documents: the resident and the grid's checkers
    registry.object_access("declaration", views.declaration_access)
    # break-the-glass opens records through the register's one scope filter
    _listen(scope.openings, grants.OPENING)
    # review items and declarations are checks in the grid worker's tasks (GET /me/tasks)
    visits.task_lists["review_items"] = reviews.task_items
    visits.task_lists["declarations"] = declarations.task_items

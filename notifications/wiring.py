"""What notifications contributes: its blueprints, the broadcast templates and the worker's
tasks (fan-out, delivery, pruning devices). See server/modules.py."""

from __future__ import annotations

from typing import TYPE_CHECKING

from notifications import models, service, views, worker

if TYPE_CHECKING:
    from server.modules import Registry

TABLES = models  # imported so that the migrations see its tables


def contribute(registry: Registry) -> None:
    registry.blueprints(views.blueprints)
    service.register_templates(service.NOTICE_TEMPLATES)
    registry.periodic_tasks(worker.PERIODIC_TASKS)

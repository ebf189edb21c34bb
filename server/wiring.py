"""What the platform itself contributes (server/modules.py lists it first)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from server import apiclients, audit, health, jobs, ratelimit
from server.auth import views as auth_views
from server.cli import PeriodicTask
from server.storage import views as storage_views

if TYPE_CHECKING:
    from server.modules import Registry


def _prune_rate_limits(s):
    return ratelimit.prune(s)


def contribute(registry: Registry) -> None:
    registry.blueprints((health.blp, auth_views.blp, auth_views.me_blp, auth_views.users_blp,
                         audit.blp, storage_views.blp, apiclients.blp, jobs.blp))
    registry.periodic_tasks((PeriodicTask("prune_rate_limits", 3600, _prune_rate_limits),
                             PeriodicTask("run_jobs", 1, jobs.run_jobs_task)))

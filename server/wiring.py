"""What the platform itself contributes (server/modules.py lists it first)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from server import apiclients, audit, db, health, jobs, ratelimit
from server.auth import models as auth_models
from server.auth import schemas as auth_schemas
from server.auth import service as auth_service
from server.auth import views as auth_views
from server.auth.actor import current_actor
from server.cli import PeriodicTask
from server.storage import views as storage_views

if TYPE_CHECKING:
    from server.modules import Registry


def _prune_rate_limits(s):
    return ratelimit.prune(s)


def _current_user(user):
    """A stale account as a 412 shows it: as GET /users/{id} answers it now."""
    fresh = auth_service.get_user(db.session(), current_actor(), user.id)
    return auth_schemas.UserSchema().dump(fresh)


def contribute(registry: Registry) -> None:
    registry.current_schema(auth_models.User, _current_user)
    registry.blueprints((health.blp, auth_views.blp, auth_views.me_blp, auth_views.users_blp,
                         audit.blp, storage_views.blp, apiclients.blp, jobs.blp))
    registry.periodic_tasks((PeriodicTask("prune_rate_limits", 3600, _prune_rate_limits),
                             PeriodicTask("run_jobs", 1, jobs.run_jobs_task)))

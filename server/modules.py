"""THE list of installed packages, in order, and the one place their contributions reach the
platform (ARCHITECTURE.md §1.1).

Each package has a `wiring.py` with one function, `contribute(registry)`, that names what
the package adds: its blueprints, periodic tasks, notice templates, object-access rules for
attachments, actor enrichers, job handlers, and the hooks of other domain packages it plugs
into (tile layers, map collections, profile sections, area card counters). Importing any
other module registers nothing; `create_app` calls `wire` once per app, so a reader finds
every hook by reading the `wiring.py` files in the order below.

The packages are named as strings: `server` never imports `grid` by name, and the domain
is handed to the platform here, at wiring time. Every registration is keyed (by name, kind
or identity), so wiring a second app in the same process changes nothing.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from flask_smorest import Api
from sqlalchemy.orm import Session

from server import actions, api, cli, jobs
from server.auth import service as auth_service
from server.auth.actor import Actor, ActorEnricher, actor_enrichers
from server.storage import service as storage

# Installed packages, in dependency order (a package's contributions may rely on those of
# the packages before it). `server` is the platform's own.
INSTALLED: tuple[str, ...] = (
    "server", "grid.areas", "grid.registry", "grid.visits", "grid.sync", "grid.ledgers",
    "notifications", "grid.calendar", "grid.cases", "grid.services", "grid.open311",
    "grid.maps", "grid.profiles",
    "grid.insights",
    "grid.exchange",
    "console",
)


class Registry:
    """What a package's `contribute` may add to the platform."""

    def __init__(self, api: Api, settings: Mapping[str, Any]) -> None:
        self.api = api
        # The app's settings (server/config.py), read here once: a package hands its
        # services what they need as a typed settings object; services never read config.
        self.settings = settings

    def blueprints(self, blueprints: Iterable[Any]) -> None:
        for blp in blueprints:
            self.api.register_blueprint(blp)

    def periodic_tasks(self, tasks: Iterable[cli.PeriodicTask]) -> None:
        """Work for `flask worker`; a task of the same name is replaced."""
        for task in tasks:
            cli.periodic_tasks[:] = [t for t in cli.periodic_tasks if t.name != task.name]
            cli.periodic_tasks.append(task)

    def object_access(self, object_type: str,
                      check: Callable[[Session, Actor, Any], Any]) -> None:
        """Who may see an attachment of `object_type` (server.storage.service)."""
        storage.object_access[object_type] = check

    def attachment_filter(self, object_type: str,
                          shown: Callable[[Session, Actor, Any], bool]) -> None:
        storage.attachment_filters[object_type] = shown

    def actor_enricher(self, enricher: ActorEnricher) -> None:
        """Columns added to the actor's one query and how they change the actor."""
        if enricher not in actor_enrichers:
            actor_enrichers.append(enricher)

    def user_scope_rule(self, rule: Callable[[Actor], Any]) -> None:
        """An extra condition for an account to lie in an actor's scope (server.auth)."""
        if rule not in auth_service.user_scope_rules:
            auth_service.user_scope_rules.append(rule)

    def job_handler(self, kind: str, handler: jobs.Handler) -> None:
        jobs.handlers[kind] = handler

    def transition_listeners(self, listeners: Iterable[actions.Listener]) -> None:
        """Called after every successful action of any life cycle, in its transaction
        (server/actions.py): `(s, kind, record, transition, actor, result)`."""
        actions.add_listeners(listeners)

    def current_schema(self, model: type, present: Any) -> None:
        """How a 412 shows a stale `model` record: its resource's response schema (a
        marshmallow Schema, or a function record → body for views that add to it)."""
        api.current_schemas[model] = present.dump if hasattr(present, "dump") else present


def wire(api: Api, settings: Mapping[str, Any], installed: Iterable[str] = INSTALLED) -> None:
    """Import each package's `wiring` and let it contribute, in order."""
    registry = Registry(api, settings)
    for package in installed:
        importlib.import_module(f"{package}.wiring").contribute(registry)

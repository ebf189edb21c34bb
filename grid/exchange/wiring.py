"""What grid.exchange contributes. Each helper's part is one block. See server/modules.py."""

from __future__ import annotations

from typing import TYPE_CHECKING

from grid.cases import notices as case_notices
from grid.exchange import delivery, events, hotline_results, models, open_data
from grid.exchange import views as exchange_views
from grid.registry import history as registry_history
from notifications import broadcasts as notifications_broadcasts

if TYPE_CHECKING:
    from server.modules import Registry

# --- webhooks: events out, 回单, open data ---

TABLES = models  # imported so that the migrations see its tables


def _listen(listeners: list, listener) -> None:
    if listener not in listeners:  # wiring a second app changes nothing
        listeners.append(listener)


def contribute_webhooks(registry: Registry) -> None:
    registry.blueprints(exchange_views.WEBHOOKS_BLUEPRINTS)
    # where events come from: a case's report (its timeline), every action of the engine
    # (case.transitioned, case.closed, the hotline's 回单), the register's change history,
    # broadcasts
    _listen(case_notices.TIMELINE_LISTENERS, events.on_case_timeline)
    registry.transition_listeners((events.on_transition, hotline_results.on_transition))
    _listen(registry_history.CHANGE_LISTENERS, events.on_registry_change)
    _listen(notifications_broadcasts.BROADCAST_LISTENERS, events.on_broadcast)
    registry.periodic_tasks(delivery.PERIODIC_TASKS + open_data.PERIODIC_TASKS)

# --- end webhooks ---


def contribute(registry: Registry) -> None:
    contribute_webhooks(registry)

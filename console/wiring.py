"""What console contributes (its page and assets under /console): see server/modules.py."""

from __future__ import annotations

from typing import TYPE_CHECKING

from console import views

if TYPE_CHECKING:
    from server.modules import Registry


def contribute(registry: Registry) -> None:
    registry.blueprints(views.blueprints)

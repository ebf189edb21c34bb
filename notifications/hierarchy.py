"""What notifications needs from the area hierarchy, handed over at wiring by grid.areas
(grid/areas/wiring.py): notifications never imports grid."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from server.auth.actor import Actor


@dataclass(frozen=True)
class AreaHooks:
    #: THE scope filter: (area id column, actor) → SQL condition.
    in_scope: Callable[[Any, Actor], sa.ColumnElement[bool]]
    #: (session, actor, area id) → the area (with `id`, `code`) if in scope, else None.
    area_in_scope: Callable[[Session, Actor, int], Any]
    #: (session, area id, after user id, limit) → ids of active users with a membership in
    #: the area's subtree, above `after`, in id order.
    members_below: Callable[[Session, int, int, int], list[int]]
    #: user id (a value or a column) → SELECT of the ids of the areas a broadcast to which
    #: reaches the user: those of their memberships and every area above them.
    areas_reaching: Callable[[Any], sa.Select]
    #: (session, user ids) → {user id: codes of the areas of areas_reaching}: the topics.
    area_codes_reaching: Callable[[Session, list[int]], dict[int, set[str]]]


_areas: AreaHooks | None = None


def use_areas(hooks: AreaHooks) -> None:
    global _areas
    _areas = hooks


def areas() -> AreaHooks:
    if _areas is None:
        raise RuntimeError("notifications: no area hierarchy wired (server/modules.py)")
    return _areas

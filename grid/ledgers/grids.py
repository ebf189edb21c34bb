"""The importer's grids (网格): the areas of the actor's scope, by code, read once per import;
a row's 网格编码 resolves to one of them or to the reason why not."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.orm import Session

from grid.areas import service as areas
from grid.areas.models import Area, AreaLevel
from server.auth.actor import Actor
from server.errors import Invalid, field_errors


class Grids:
    """The areas in the actor's scope, read once (a district has a few thousand): grid codes
    of the file resolve without a query, in the reading thread. Labels of other areas (for
    duplicates outside the scope) are read when needed, by the writing thread."""

    def __init__(self, s: Session, actor: Actor) -> None:
        self.s, self.actor = s, actor
        grid_rank = sa.select(AreaLevel.rank).where(AreaLevel.key == "grid").scalar_subquery()
        self.by_code: dict[str, int | str] = {}  # id, or why not
        self.labels: dict[int, tuple[str, str, bool]] = {}  # area id → name, code, in scope
        for area in s.execute(
                sa.select(Area.id, Area.code, Area.name, Area.level,
                          (AreaLevel.rank >= grid_rank).label("is_grid"))
                .join(AreaLevel, AreaLevel.key == Area.level)
                .where(areas.in_scope(Area.id, actor))):
            self.labels[area.id] = (area.name, area.code, True)
            self.by_code[area.code] = area.id if area.is_grid else (
                f"{area.name} ({area.code}) is a {area.level}, not a grid.")

    def by_id(self, area_id: int) -> int:
        label = self.labels.get(area_id)
        checked = self.code(label[1]) if label else f"Not one of your grids: area {area_id}."
        if isinstance(checked, str):
            raise Invalid(field_errors("area_id", checked, location="query"))
        return checked

    def code(self, code: str) -> int | str:
        return self.by_code.get(code, f"Not one of your grids: {code}.")

    def label(self, area_id: int) -> tuple[str, str, bool]:
        if area_id not in self.labels:
            area = self.s.get(Area, area_id)
            self.labels[area_id] = (area.name, area.code, False)
        return self.labels[area_id]


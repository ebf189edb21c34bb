"""Fixtures for visits: the hand-made area tree of tests/fixtures/areas.py, and a small
register built row by row (buildings, houses, households, persons, tags) so that each test
states exactly who lives where and since when.

    G111 = lon 119.90–119.91, lat 30.01–30.02 (北社区第1网格)
    G112 = lon 119.91–119.92, lat 30.01–30.02 (北社区第2网格), same community C11
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
import sqlalchemy as sa
from geoalchemy2.shape import from_shape
from shapely.geometry import Point as ShapelyPoint

from grid.registry.models import KEY_TAGS, Building, House, Household, Person, PersonTag
from grid.visits.models import Visit
from tests.conftest import today_local
from tests.fixtures.users import make_user  # noqa: F401 - fixture

IN_G111 = (119.905, 30.015)
IN_G112 = (119.915, 30.015)
IN_G121 = (119.905, 30.005)


def point(lon: float, lat: float, **extra) -> dict:
    return {"lon": lon, "lat": lat, **extra}


class Register:
    """Register rows written straight to the tables (the register's own API is tested in
    tests/grid/registry; here only the shape of the data matters)."""

    def __init__(self, s, tree: dict[str, int]) -> None:
        self.s, self.tree = s, tree

    def _add(self, row):
        self.s.add(row)
        self.s.flush()
        return row

    @staticmethod
    def _geom(lon_lat):
        return None if lon_lat is None else from_shape(ShapelyPoint(*lon_lat), srid=4326)

    def building(self, grid: str, lon_lat: tuple[float, float], name: str = "1幢",
                 address: str | None = "春江路1号", **kw) -> Building:
        return self._add(Building(area_id=self.tree[grid], source="grid_worker", name=name,
                                  address=address, location=self._geom(lon_lat), **kw))

    def household(self, building: Building, room: str = "101", unit: str | None = None,
                  **kw) -> Household:
        house = self._add(House(area_id=building.area_id, source="grid_worker",
                                building_id=building.id, room=room, unit=unit))
        return self._add(Household(area_id=building.area_id, source="grid_worker",
                                   house_id=house.id, **kw))

    def person(self, name: str, grid: str | None = None, household: Household | None = None,
               lon_lat: tuple[float, float] | None = None, tags: dict | None = None,
               **kw) -> Person:
        area_id = household.area_id if household is not None else self.tree[grid]
        person = self._add(Person(area_id=area_id, source="grid_worker", name=name,
                                  household_id=household.id if household else None,
                                  location=self._geom(lon_lat), **kw))
        for tag, start in (tags or {}).items():
            self.tag(person, tag, start)
        return person

    def tag(self, person: Person, tag: str, start: date | int, end: date | None = None
            ) -> PersonTag:
        """`start` as a date or as days ago."""
        if isinstance(start, int):
            start = today_local() - timedelta(days=start)
        kind = "key" if tag in KEY_TAGS else "care"
        return self._add(PersonTag(person_id=person.id, kind=kind, tag=tag, start_date=start,
                                   end_date=end))

    def visit(self, worker_id: int, days_ago: float, person: Person | None = None,
              household: Household | None = None, **kw) -> Visit:
        target = person or household
        fields = {"type": "care", "content": "走访", "photo_ids": [], **kw}
        return self._add(Visit(
            area_id=target.area_id, worker_id=worker_id,
            person_id=person.id if person else None,
            household_id=household.id if household else None,
            visited_at=datetime.now(UTC) - timedelta(days=days_ago), **fields))

    def commit(self) -> None:
        self.s.commit()  # a savepoint: the test's outer transaction still rolls it back


@pytest.fixture
def reg(db_session, tree) -> Register:
    return Register(db_session, tree)


def visits_count(s) -> int:
    return s.scalar(sa.select(sa.func.count()).select_from(Visit))

"""Map fixtures: the area tree, people and a case category of tests/grid/cases, a helper
for XYZ tile numbers, a tile decoder and a statement counter.

    street S1 (西街道) → grids G111, G112, G121, G122;  street S2 (东街道) → G211, G212
    At z14 the tile x=13649 covers lon 119.9048–119.9268: G111's and G211's centres both.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager

import mapbox_vector_tile
import sqlalchemy as sa

from tests.grid.cases import conftest as cases_conftest
from tests.grid.cases.conftest import report  # noqa: F401
from tests.grid.registry.conftest import at  # noqa: F401

tree = cases_conftest.tree
member = cases_conftest.member
make_user = cases_conftest.make_user
api = cases_conftest.api
department = cases_conftest.department
category = cases_conftest.category
people = cases_conftest.people


def tile_of(lon: float, lat: float, z: int) -> tuple[int, int, int]:
    """The XYZ tile (Web Mercator, y down) that holds a WGS-84 point."""
    n = 2 ** z
    x = int((lon + 180) / 360 * n)
    y = int((1 - math.asinh(math.tan(math.radians(lat))) / math.pi) / 2 * n)
    return z, x, y


def tile_at(code_point: dict, z: int) -> str:
    z, x, y = tile_of(code_point["lon"], code_point["lat"], z)
    return f"{z}/{x}/{y}"


def decode(data: bytes) -> dict:
    return mapbox_vector_tile.decode(data) if data else {}


@contextmanager
def counting(app) -> Iterator[list[str]]:
    """The SQL statements run inside the block (SQLAlchemy's before_cursor_execute), without
    the savepoints the tests' rolled-back transaction adds around requests."""
    engine = app.extensions["db_engine"]
    seen: list[str] = []

    def _count(conn, cursor, statement, parameters, context, executemany):
        if not statement.lstrip().upper().startswith(("SAVEPOINT", "RELEASE", "ROLLBACK")):
            seen.append(statement)

    sa.event.listen(engine, "before_cursor_execute", _count)
    try:
        yield seen
    finally:
        sa.event.remove(engine, "before_cursor_execute", _count)

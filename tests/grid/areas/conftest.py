"""A small hand-made area tree near the demo district, loaded through the import service.

    330183 district                lon 119.90–119.94, lat 30.00–30.02
    ├── 330183001 street 1 (west)  lon 119.90–119.92
    │   ├── 330183001001 (north)   lat 30.01–30.02 → grids 001 (west), 002 (east)
    │   └── 330183001002 (south)   lat 30.00–30.01 → grids 001 (west), 002 (east)
    └── 330183002 street 2 (east)  lon 119.92–119.94
        └── 330183002001           the whole street → grids 001 (west), 002 (east)

Every grid is a 0.01° rectangle or two; they tile their community exactly.
"""

from __future__ import annotations

import json

import pytest
import sqlalchemy as sa

from grid.areas import boundaries
from grid.areas import memberships as area_memberships
from grid.areas.models import Area
from grid.demo import SYSTEM

D, S1, S2 = "330183", "330183001", "330183002"
C11, C12, C21 = "330183001001", "330183001002", "330183002001"
G111, G112 = "330183001001001", "330183001001002"
G121, G122 = "330183001002001", "330183001002002"
G211, G212 = "330183002001001", "330183002001002"


def rect(x0: float, y0: float, x1: float, y1: float) -> dict:
    """A GeoJSON Polygon for a lon/lat rectangle (counter-clockwise, closed)."""
    return {"type": "Polygon",
            "coordinates": [[[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]]]}


def feature(code: str, name: str, level: str, parent: str | None, geometry: dict) -> dict:
    return {"type": "Feature", "geometry": geometry,
            "properties": {"code": code, "name": name, "level": level, "parent_code": parent}}


def collection(*features: dict) -> dict:
    return {"type": "FeatureCollection", "features": list(features)}


TREE = [
    (D, "测试区", "district", None, (119.90, 30.00, 119.94, 30.02)),
    (S1, "西街道", "street", D, (119.90, 30.00, 119.92, 30.02)),
    (S2, "东街道", "street", D, (119.92, 30.00, 119.94, 30.02)),
    (C11, "北社区", "community", S1, (119.90, 30.01, 119.92, 30.02)),
    (C12, "南社区", "community", S1, (119.90, 30.00, 119.92, 30.01)),
    (C21, "东社区", "community", S2, (119.92, 30.00, 119.94, 30.02)),
    (G111, "北社区第1网格", "grid", C11, (119.90, 30.01, 119.91, 30.02)),
    (G112, "北社区第2网格", "grid", C11, (119.91, 30.01, 119.92, 30.02)),
    (G121, "南社区第1网格", "grid", C12, (119.90, 30.00, 119.91, 30.01)),
    (G122, "南社区第2网格", "grid", C12, (119.91, 30.00, 119.92, 30.01)),
    (G211, "东社区第1网格", "grid", C21, (119.92, 30.00, 119.93, 30.02)),
    (G212, "东社区第2网格", "grid", C21, (119.93, 30.00, 119.94, 30.02)),
]
BOXES = {code: box for code, _, _, _, box in TREE}
NAMES = {code: name for code, name, _, _, _ in TREE}


def tree_collection() -> dict:
    return collection(*(feature(code, name, level, parent, rect(*box))
                        for code, name, level, parent, box in TREE))


@pytest.fixture
def tree(db_session) -> dict[str, int]:
    """The tree above, imported as the system; returns {code: id}."""
    boundaries.import_areas(db_session, SYSTEM, tree_collection(), dry_run=False,
                            opts=boundaries.Options())
    db_session.commit()  # a savepoint: the test's outer transaction still rolls it back
    return dict(db_session.execute(sa.select(Area.code, Area.id)).all())


@pytest.fixture
def member(db_session, make_user, login, tree):
    """A logged-in user holding `role` with memberships in the areas of `codes`:
    `member("grid_worker", G111)` → (headers, user)."""

    def _member(role: str, *codes: str, phone: str | None = None,
                display_name: str = "测试用户"):
        user = make_user(role, phone=phone, display_name=display_name,
                         username=None if phone is None else f"u{phone}")
        for code in codes:
            area_memberships.add_membership(db_session, SYSTEM, {
                "user_id": user.id, "area_id": tree[code], "role": role})
        db_session.commit()
        tokens = login(user.username)
        return {"Authorization": f"Bearer {tokens['access_token']}"}, user

    return _member


@pytest.fixture
def admin(auth_headers) -> dict:
    return auth_headers("admin")


def area_count(db_session) -> int:
    return db_session.scalar(sa.select(sa.func.count()).select_from(Area))


def total(response) -> int:
    """The item count flask-smorest puts in the X-Pagination header."""
    return json.loads(response.headers["X-Pagination"])["total"]


@pytest.fixture
def make_user(make_user, db_session):
    """The shared make_user, committed: the test's session is the app's, and a request that
    fails rolls back whatever that session only flushed (users made a moment before)."""

    def _make(*roles: str, **kwargs):
        user = make_user(*roles, **kwargs)
        db_session.commit()
        return user

    return _make

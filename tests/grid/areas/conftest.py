"""Area tests: the tree, its members and admin come from tests/fixtures/areas.py."""

from __future__ import annotations

import sqlalchemy as sa

from grid.areas.models import Area
from tests.fixtures.users import make_user  # noqa: F401 - fixture


def area_count(db_session) -> int:
    return db_session.scalar(sa.select(sa.func.count()).select_from(Area))

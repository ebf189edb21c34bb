"""Ledger fixtures: the area tree and register API come from tests/fixtures (areas.py,
http.py), the ledger helpers from tests/fixtures/ledgers.py; here counting helpers and
community staff."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from grid.registry.models import Household, Person
from tests.fixtures.areas import C11
from tests.fixtures.users import make_user  # noqa: F401 - fixture


def count(db_session, model, **where) -> int:
    stmt = sa.select(sa.func.count()).select_from(model)
    for name, value in where.items():
        stmt = stmt.where(getattr(model, name) == value)
    return db_session.scalar(stmt)


def persons_by_name(db_session) -> dict[str, Person]:
    return {p.name: p for p in db_session.scalars(sa.select(Person))}


def households_by_no(db_session) -> dict[str, Household]:
    return {h.household_no: h for h in db_session.scalars(sa.select(Household))}


@pytest.fixture
def staff(api):
    """Community staff of 北社区 (grids G111, G112): may import and export, may not see
    key-person groups."""
    return api("community_staff", C11)

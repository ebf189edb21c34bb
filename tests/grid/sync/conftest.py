"""Sync fixtures: the areas test tree (tests/fixtures/areas.py), members of its grids,
and helpers to collect records through the API and to pull to the end."""

from __future__ import annotations

import itertools
import uuid

import pytest
import sqlalchemy as sa
from stdnum.cn import ric

from grid.areas import service as area_service
from server.auth.actor import Actor
from server.auth.models import UserRole
from server.auth.permissions import permissions_for
from tests.fixtures.areas import BOXES
from tests.fixtures.users import make_user  # noqa: F401 - fixture

_serial = itertools.count(1)


def point_in(code: str, **extra) -> dict:
    """The centre of a test grid, as a phone sends it."""
    x0, y0, x1, y1 = BOXES[code]
    return {"lon": (x0 + x1) / 2, "lat": (y0 + y1) / 2, "accuracy_m": 5,
            "device_id": "test-phone", **extra}


def id_number() -> str:
    """A fresh valid 身份证 number (GB 11643), born 1990-01-01 in 330183."""
    base = f"33018319900101{next(_serial) % 1000:03d}"
    return base + ric.calc_check_digit(base + "0")  # (it wants a placeholder check digit)


def actor_of(db_session, user) -> Actor:
    """The Actor a request of `user` would get (for calling services directly)."""
    roles = frozenset(db_session.scalars(sa.select(UserRole.role)
                                         .where(UserRole.user_id == user.id)))
    return area_service.resolve_scope(db_session, Actor(
        user_id=user.id, roles=roles, permissions=permissions_for(roles)))


@pytest.fixture
def collect(client):
    """Create a record through the API: collect(headers, "buildings", name=..., at=G111)."""

    def _collect(headers: dict, kind: str, at: str | None = None, **data) -> dict:
        if at is not None:
            data["location"] = point_in(at)
        data.setdefault("client_uuid", str(uuid.uuid4()))
        if kind == "buildings":
            data.setdefault("name", f"{next(_serial)}幢")
        response = client.post(f"/{kind}", json=data, headers=headers)
        assert response.status_code == 201, response.get_json()
        return response.get_json()

    return _collect


@pytest.fixture
def pull(client):
    """One GET /sync/pull; returns the body (asserting a 200)."""

    def _pull(headers: dict, cursor: str | None = None, limit: int | None = None) -> dict:
        query = {}
        if cursor is not None:
            query["cursor"] = cursor
        if limit is not None:
            query["limit"] = limit
        response = client.get("/sync/pull", query_string=query, headers=headers)
        assert response.status_code == 200, response.get_json()
        return response.get_json()

    return _pull


@pytest.fixture
def pull_all(pull):
    """Pull pages until has_more is false: (items of every page, next cursor, pages)."""

    def _pull_all(headers: dict, cursor: str | None = None, limit: int | None = None):
        items, pages = [], 0
        while True:
            body = pull(headers, cursor, limit)
            items += body["items"]
            cursor, pages = body["next_cursor"], pages + 1
            if not body["has_more"]:
                return items, cursor, pages
            assert pages < 100, "the pull never ends"

    return _pull_all


def keys(items: list[dict]) -> list[tuple]:
    """(type, id, deleted?) of each item, in order."""
    return [(i["type"], i["id"], bool(i.get("deleted"))) for i in items]

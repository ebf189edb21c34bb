"""Register fixtures: the area tree of tests/grid/areas (grids G111, G112 … of 0.01°), its
members, and a small client for the register API.

Points: `at(G111)` is the centre of grid G111 in WGS-84; `at(G111, dx=…)` nudges it.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass

import pytest
import sqlalchemy as sa

from server.audit import AuditEntry
from tests.grid.areas import conftest as areas_conftest
from tests.grid.areas.conftest import BOXES, G111

# The area tree and its members, as in tests/grid/areas.
tree = areas_conftest.tree
member = areas_conftest.member
make_user = areas_conftest.make_user

# Valid ID numbers (GB 11643): the two of DOMAIN.md and one ending in X.
ID_MALE_2023 = "110101202311012176"  # 2023-11-01, 17th digit 7: male
ID_FEMALE_1988 = "120103198806018241"  # 1988-06-01, 17th digit 4: female
ID_WITH_X = "11010119900307109X"  # 1990-03-07, 17th digit 9: male
ID_MORE = ["110101198001010010", "110101198502020022", "110101199203030030",
           "110101197004040042", "110101200005050052"]
USCC_A, USCC_B = "91110000600037341L", "91350100M000100Y43"


def at(code: str, dx: float = 0.0, dy: float = 0.0, accuracy_m: float | None = 8.0) -> dict:
    """A GPS fix (wgs84) at the centre of an area of the test tree."""
    x0, y0, x1, y1 = BOXES[code]
    point = {"lon": round((x0 + x1) / 2 + dx, 7), "lat": round((y0 + y1) / 2 + dy, 7),
             "crs": "wgs84", "captured_at": "2026-03-01T09:30:00+08:00",
             "device_id": "phone-1"}
    if accuracy_m is not None:
        point["accuracy_m"] = accuracy_m
    return point


def total(response) -> int:
    return json.loads(response.headers["X-Pagination"])["total"]


def audit_rows(db_session, **where) -> list[AuditEntry]:
    stmt = sa.select(AuditEntry).order_by(AuditEntry.id)
    for name, value in where.items():
        stmt = stmt.where(getattr(AuditEntry, name) == value)
    return list(db_session.scalars(stmt))


@dataclass
class Api:
    """The register API as one user calls it. Helpers assert success; raw calls do not."""

    client: object
    headers: dict
    user: object

    def get(self, url: str, **kw):
        return self.client.get(url, headers={**self.headers, **kw.pop("headers", {})}, **kw)

    def post(self, url: str, body: dict | None = None, **kw):
        return self.client.post(url, json=body or {},
                                headers={**self.headers, **kw.pop("headers", {})}, **kw)

    def patch(self, url: str, body: dict, **kw):
        return self.client.patch(url, json=body,
                                 headers={**self.headers, **kw.pop("headers", {})}, **kw)

    def put(self, url: str, body: dict, **kw):
        return self.client.put(url, json=body,
                               headers={**self.headers, **kw.pop("headers", {})}, **kw)

    def ok(self, response, status: int = 200) -> dict | list:
        assert response.status_code == status, (response.status_code, response.get_json())
        return response.get_json()

    # creators, with sensible defaults
    def building(self, code: str = G111, **fields) -> dict:
        body = {"name": "3幢", "use": "residential", "floors": 6, "location": at(code), **fields}
        return self.ok(self.post("/buildings", body), 201)

    def house(self, building: dict, room: str = "301", **fields) -> dict:
        body = {"building_id": building["id"], "unit": "1单元", "floor": 3, "room": room,
                **fields}
        return self.ok(self.post("/houses", body), 201)

    def household(self, house: dict | None = None, **fields) -> dict:
        body = {"type": "registered", **fields}
        if house is not None:
            body["house_id"] = house["id"]
        return self.ok(self.post("/households", body), 201)

    def person(self, household: dict | None = None, name: str = "王秀英", **fields) -> dict:
        body = {"name": name, **fields}
        if household is not None:
            body["household_id"] = household["id"]
        elif "location" not in body:
            body["location"] = at(G111)
        return self.ok(self.post("/persons", body), 201)

    def organisation(self, code: str = G111, **fields) -> dict:
        body = {"name": "富春制衣有限公司", "kind": "enterprise", "industry": "制造业",
                "employees": 120, "location": at(code), **fields}
        return self.ok(self.post("/organisations", body), 201)

    def chain(self, code: str = G111, room: str = "301") -> dict:
        """A building, a house in it, a household in that, and a person in the household."""
        building = self.building(code)
        house = self.house(building, room=room)
        household = self.household(house)
        person = self.person(household, relation_to_head="head")
        return {"building": building, "house": house, "household": household,
                "person": person}


@pytest.fixture
def api(client, member):
    """api("grid_worker", G111) → an Api for a new member with that role in those areas."""

    def _api(role: str, *codes: str, **kwargs) -> Api:
        headers, user = member(role, *codes, **kwargs)
        return Api(client, headers, user)

    return _api


@pytest.fixture
def worker(api) -> Api:
    """A grid worker of G111."""
    return api("grid_worker", G111)


def new_uuid() -> str:
    return str(uuid.uuid4())

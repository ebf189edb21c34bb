"""Open311 fixtures: the case fixtures (area tree, department, category T01, people), an
administrator who issues keys, a client app that calls /open311 with its key, and
helpers that read the answers in either format."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import pytest
import sqlalchemy as sa

from grid.cases.models import CaseCategory
from tests.fixtures.areas import BOXES, G111
from tests.fixtures.users import make_user  # noqa: F401 - fixture

PHONE, EMAIL = "13812345678", "li.wei@example.com"


def where(code: str = G111, dx: float = 0.0, dy: float = 0.0) -> dict:
    """lat/long (WGS-84) at the centre of a grid of the test tree."""
    x0, y0, x1, y1 = BOXES[code]
    return {"lat": f"{(y0 + y1) / 2 + dy:.6f}", "long": f"{(x0 + x1) / 2 + dx:.6f}"}


class App311:
    """A 311 app calling us with its api_key."""

    def __init__(self, client, key: dict | None) -> None:
        self.client, self.key = client, key
        self.api_key = key["api_key"] if key else None

    def post(self, fmt: str = "json", *, api_key: str | None = None, **form):
        data = {"api_key": api_key or self.api_key, **form}
        return self.client.post(f"/open311/v2/requests.{fmt}",
                                data={k: v for k, v in data.items() if v is not None})

    def report(self, service_code: str = "T01", fmt: str = "json", status: int = 201,
               **form) -> str:
        """POST a request that must succeed; returns its service_request_id."""
        response = self.post(fmt, service_code=service_code, **{
            "description": "路边有暴露垃圾", "address_string": "江滨路1号",
            "attribute[size]": "small" if service_code == "T01" else None, **where(),
            **form})
        assert response.status_code == status, response.get_data(True)
        return parse(response, fmt)[0]["service_request_id"]

    def get(self, url: str, **params):
        return self.client.get(url, query_string=params)


def parse(response, fmt: str):
    """The body as Python values: JSON as it is; XML as nested dicts/lists of text."""
    if fmt == "json":
        assert response.mimetype == "application/json"
        return response.get_json()
    assert response.mimetype == "text/xml"
    assert response.data.startswith(b'<?xml version="1.0" encoding="UTF-8"?>')
    return xml_value(ET.fromstring(response.data))


LISTS = {"services", "attributes", "values", "endpoints", "formats", "service_requests",
         "errors"}


def xml_value(element: ET.Element):
    if element.tag in LISTS:
        return [xml_value(child) for child in element]
    if len(element):
        return {child.tag: xml_value(child) for child in element}
    return element.text


def spec_errors(response, status: int, fmt: str = "json") -> list[tuple[int, str]]:
    """The spec's error body: [{code, description}] (XML <errors><error>), every code
    the HTTP status."""
    assert response.status_code == status, (response.status_code, response.get_data(True))
    if fmt == "xml":
        root = ET.fromstring(response.data)
        assert root.tag == "errors" and [e.tag for e in root] == ["error"] * len(root)
        entries = [(int(e.findtext("code")), e.findtext("description")) for e in root]
    else:
        body = response.get_json()
        assert isinstance(body, list) and all(set(e) == {"code", "description"} for e in body)
        entries = [(e["code"], e["description"]) for e in body]
    assert entries and all(code == status for code, _ in entries), entries
    return entries


def text(response) -> str:
    return response.get_data(True)


@pytest.fixture
def admin(api):
    return api("admin")


@pytest.fixture
def new_key(admin, client):
    def _new(kind: str = "open311", **fields) -> App311:
        body = admin.ok(admin.post("/api-clients", {"name": "随手拍App", "kind": kind,
                                                    **fields}), 201)
        return App311(client, body)
    return _new


@pytest.fixture
def app311(new_key, category, people) -> App311:
    """A 311 app with a key, in a district with category T01 and its people."""
    return new_key()


@pytest.fixture
def anonymous(client) -> App311:
    return App311(client, None)


@pytest.fixture
def lists_category(db_session, department) -> CaseCategory:
    """A 小类 with every kind of question: a value list of several, a date, a text."""
    parent = db_session.scalar(sa.select(CaseCategory.id).where(CaseCategory.code == "09"))
    cat = CaseCategory(code="T09", parent_id=parent, name="测试设施", priority=3,
                       default_department_id=department.id, attributes=[
                           {"code": "parts", "datatype": "multivaluelist", "required": True,
                            "description": "损坏部件", "order": 1,
                            "values": [{"key": "lamp", "name": "灯头"},
                                       {"key": "pole", "name": "灯杆"},
                                       {"key": "wire", "name": "线路"}]},
                           {"code": "seen_at", "datatype": "datetime", "required": False,
                            "description": "发现时间", "order": 2, "values": []},
                           {"code": "remark", "datatype": "text", "required": False,
                            "description": "备注", "order": 3, "values": []}])
    db_session.add(cat)
    db_session.commit()
    return cat


def dumps(value) -> str:
    return json.dumps(value, ensure_ascii=False)

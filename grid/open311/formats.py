"""One result, two formats: GeoReport v2 answers in XML (required by the spec) and JSON,
chosen by the resource's extension (`services.xml`, `services.json`).

Results are plain Python values (dicts, lists, strings, numbers, None); XML is built from
them with ElementTree, a list becoming one child element per item named after it
(`<services><service>…`, `<attributes><attribute>…`, `<values><value>…`).
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from typing import Any

from flask import Response

FORMATS = {"json": "application/json; charset=utf-8", "xml": "text/xml; charset=utf-8"}
# The element of each item of a list, by the list's own element name.
ITEM_TAGS = {"services": "service", "attributes": "attribute", "values": "value",
             "endpoints": "endpoint", "formats": "format", "service_requests": "request",
             "errors": "error"}


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _fill(element: ET.Element, value: Any) -> None:
    if value is None:
        return  # an empty element: the spec's way of saying "no value"
    if isinstance(value, dict):
        for key, item in value.items():
            _fill(ET.SubElement(element, key), item)
    elif isinstance(value, list):
        tag = ITEM_TAGS.get(element.tag, "item")
        for item in value:
            _fill(ET.SubElement(element, tag), item)
    else:
        element.text = _text(value)


def to_xml(root: str, value: Any) -> bytes:
    element = ET.Element(root)
    _fill(element, value)
    return b'<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(element, "utf-8",
                                                                     xml_declaration=False)


def render(fmt: str, root: str, value: Any, status: int = 200,
           headers: dict | None = None) -> Response:
    """`value` as JSON (as it is) or XML (under `root`)."""
    if fmt == "xml":
        body = to_xml(root, value)
    else:
        fmt = "json"
        body = json.dumps(value, ensure_ascii=False).encode()
    return Response(body, status=status, headers=headers, content_type=FORMATS[fmt])


def errors(fmt: str, status: int, entries: list[tuple[int, str]],
           headers: dict | None = None) -> Response:
    """The spec's error body: a list of {code, description} (XML <errors><error>)."""
    value = [{"code": code, "description": description} for code, description in entries]
    return render(fmt, "errors", value, status, headers)

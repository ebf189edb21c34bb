"""Third-party GeoReport v2 clients from PyPI drive our server over real HTTP.

- `georeport` 0.3.1 (requests + xmltodict): services, a service definition, requests and
  one request, in JSON and in XML. It has no discovery and no POST.
- `civicbot` 0.4.0's `Open311Client` (stdlib urllib): a POST checked first against the
  live service list and definition (its `validate_remote`), and the spec's 404.
- Neither reads the discovery document, so the test does what an integrator does with
  it: fetch it (with civicbot's transport) and point both clients at the endpoint's url.

`three` 0.8.0 and `open311` 1.1, the other clients on PyPI, are Python 2 only (`from
itertools import ifilter`; implicit relative imports) and do not import on 3.11.
"""

from __future__ import annotations

import pytest
import requests
from civicbot.http import HttpError, HttpTransport, RateLimiter
from civicbot.open311 import Open311Client
from civicbot.registry import Endpoint
from georeport import GeoReport

from tests.grid.open311.conftest import where


@pytest.fixture
def transport() -> HttpTransport:
    return HttpTransport(timeout=30, rate_limiter=RateLimiter(min_interval=0))


@pytest.mark.parametrize("fmt", ["json", "xml"])
def test_georeport_and_civicbot_clients_work_against_our_server(
        app311, lists_category, base_url, transport, fmt):
    discovery = transport.get_json(f"{base_url}/open311/discovery.json")
    [endpoint] = discovery["endpoints"]
    assert endpoint["url"] == f"{base_url}/open311/v2"
    assert endpoint["formats"] == ["text/xml", "application/json"]

    reader = GeoReport(endpoint["url"], output_format=fmt)
    services = {s["service_code"]: s for s in reader.get_service_list()}
    assert services["T09"]["service_name"] == "测试设施"
    assert str(services["T09"]["metadata"]).lower() == "true"
    definition = reader.get_service_definition("T09")
    attributes = definition["attributes"]
    if fmt == "xml":  # xmltodict: <attributes><attribute>… as {"attribute": [...]}
        attributes = attributes["attribute"]
    assert [a["code"] for a in attributes] == ["parts", "seen_at", "remark"]

    poster = Open311Client(Endpoint(id="grid", name="网格化社会治理", base_url=endpoint["url"],
                                    write=True), transport)
    point = {"lat": float(where()["lat"]), "lng": float(where()["long"])}
    sent = poster.create_request("T09", dry_run=False, confirm="SEND", api_key=app311.api_key,
                                 validate_remote=True, description="路灯灯头和灯杆损坏",
                                 address_string="江滨路1号",
                                 attributes={"parts": ["lamp", "pole"]}, **point)
    [answer] = sent.response
    code = answer["service_request_id"]
    assert answer["service_notice"].startswith(f"已登记（{code}）")

    [listed] = reader.get_service_requests(service_code="T09", status="open") \
        if fmt == "json" else [reader.get_service_requests(service_code="T09", status="open")]
    one = reader.get_service_request(code)
    for item in (listed, one):
        assert (item["service_request_id"], item["status"], item["service_code"]) == (
            code, "open", "T09")
        assert item["description"] == "路灯灯头和灯杆损坏"
        assert round(float(item["lat"]), 6) == point["lat"]

    # the spec's errors reach the clients as such
    with pytest.raises(HttpError) as unknown:
        poster.create_request("XXXX", dry_run=False, confirm="SEND", api_key=app311.api_key,
                              **point)
    assert unknown.value.status == 404
    with pytest.raises(requests.HTTPError) as missing:
        reader.get_service_request("nope")
    assert missing.value.response.status_code == 404

"""Discovery, the service list and service definitions, in JSON and XML."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from grid.cases.models import CaseCategory
from tests.grid.open311.conftest import parse, spec_errors


@pytest.mark.parametrize("fmt", ["json", "xml"])
def test_discovery_points_to_the_v2_endpoint(anonymous, fmt):
    response = anonymous.get(f"/open311/discovery.{fmt}")
    assert response.status_code == 200
    body = parse(response, fmt)
    assert body["changeset"] and body["contact"] and "api_key" in body["key_service"]
    [endpoint] = body["endpoints"]
    assert endpoint["specification"] == "http://wiki.open311.org/GeoReport_v2"
    assert endpoint["url"] == "http://localhost/open311/v2"
    assert endpoint["type"] == "production"
    assert endpoint["formats"] == ["text/xml", "application/json"]


@pytest.mark.parametrize("fmt", ["json", "xml"])
def test_services_are_the_active_sub_categories(anonymous, category, db_session, fmt):
    db_session.execute(sa.update(CaseCategory).where(CaseCategory.code == "0103")
                       .values(active=False))
    db_session.commit()
    body = parse(anonymous.get(f"/open311/v2/services.{fmt}"), fmt)
    by_code = {s["service_code"]: s for s in body}
    assert "01" not in by_code and "0103" not in by_code  # a 大类; an inactive 小类
    assert {"0102", "0901", "T01", "0406", "0602"} <= set(by_code)
    garbage = by_code["0102"]
    assert set(garbage) == {"service_code", "service_name", "description", "metadata",
                            "type", "keywords", "group"}
    assert (garbage["service_name"], garbage["group"]) == ("暴露垃圾", "市容环境")
    assert garbage["description"] == "Exposed garbage"
    assert garbage["keywords"] == "市容环境, Exposed garbage"
    true, false = (True, False) if fmt == "json" else ("true", "false")
    assert (garbage["type"], garbage["metadata"]) == ("realtime", false)
    assert by_code["0901"]["metadata"] == true and by_code["T01"]["metadata"] == true


@pytest.mark.parametrize("fmt", ["json", "xml"])
def test_a_service_definition_lists_its_questions(anonymous, category, fmt):
    body = parse(anonymous.get(f"/open311/v2/services/T01.{fmt}"), fmt)
    assert body["service_code"] == "T01"
    size, bags = body["attributes"]
    true, false = (True, False) if fmt == "json" else ("true", "false")
    assert size["code"] == "size" and size["datatype"] == "singlevaluelist"
    assert (size["variable"], size["required"], size["description"]) == (true, true, "规模")
    assert size["values"] == [{"key": "small", "name": "少量"}, {"key": "large", "name": "大量"}]
    assert (bags["code"], bags["datatype"], bags["required"]) == ("bags", "number", false)
    assert str(size["order"]) == "1" and str(bags["order"]) == "2"
    assert bags["values"] == [] and "datatype_description" in bags


def test_seeded_questions_are_published_for_integrators(anonymous):
    body = parse(anonymous.get("/open311/v2/services/0406.json"), "json")
    [level, people] = body["attributes"]
    assert level["required"] is True and [v["key"] for v in level["values"]] == [
        "I", "II", "III", "IV"]
    assert people["datatype"] == "number" and people["required"] is False
    plain = parse(anonymous.get("/open311/v2/services/0102.xml"), "xml")
    assert plain == {"service_code": "0102", "attributes": []}


@pytest.mark.parametrize("fmt", ["json", "xml"])
@pytest.mark.parametrize("code", ["XXXX", "01"])  # unknown; a 大类 is not a service
def test_an_unknown_service_is_a_404_in_the_spec_format(anonymous, fmt, code):
    [(_, description)] = spec_errors(anonymous.get(f"/open311/v2/services/{code}.{fmt}"),
                                     404, fmt)
    assert code in description


def test_only_json_and_xml_are_served(anonymous):
    spec_errors(anonymous.get("/open311/v2/services.csv"), 404)
    spec_errors(anonymous.get("/open311/v2/nothing-here.json"), 404)
    # an unsupported method on a resource: still the spec's error list
    response = anonymous.client.delete("/open311/v2/services.json")
    spec_errors(response, response.status_code)
    assert response.status_code in (404, 405)

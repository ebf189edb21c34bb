"""GeoReport v2 to the letter: empty optional arguments are absent, repeated ones are
honoured (list filters) or refused (the rest), updated_datetime never precedes
requested_datetime, the discovery names the configured public address, and which
reports are published (公开) is the reporter's choice for residents."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa

from grid import demo
from grid.cases.models import Case, CaseCategory
from tests.fixtures.areas import G111
from tests.fixtures.cases import act, report
from tests.fixtures.http import at
from tests.grid.open311.conftest import parse, spec_errors, where


def _codes(app, fmt: str = "json", query=None) -> list[str]:
    response = app.client.get(f"/open311/v2/requests.{fmt}", query_string=query or {})
    assert response.status_code == 200, response.get_data(True)
    return [i["service_request_id"] for i in parse(response, fmt)]


# --- empty and repeated arguments ---------------------------------------------------------


@pytest.mark.parametrize("fmt", ["json", "xml"])
def test_an_empty_optional_argument_counts_as_absent(app311, anonymous, fmt):
    listed = [app311.report(), app311.report(**where(dx=0.001))]
    empty = {name: "" for name in ("status", "start_date", "end_date", "page", "page_size",
                                   "service_code", "service_request_id", "api_key")}
    assert _codes(anonymous, fmt, empty) == _codes(anonymous, fmt) == listed[::-1]


@pytest.mark.parametrize("fmt", ["json", "xml"])
def test_repeated_list_filters_are_honoured(app311, anonymous, lists_category, db_session,
                                            fmt):
    garbage, lamp = app311.report(), app311.report("T09", **{"attribute[parts]": "lamp"})
    db_session.execute(sa.update(Case).where(Case.code == garbage).values(state="closed"))
    db_session.commit()
    everything = [lamp, garbage]
    assert _codes(anonymous, fmt, [("status", "open"), ("status", "closed")]) == everything
    assert _codes(anonymous, fmt, [("status", "closed"), ("status", "open,closed")]) == \
        everything
    assert _codes(anonymous, fmt, [("status", "closed"), ("status", "")]) == [garbage]
    assert _codes(anonymous, fmt, [("service_code", "T01"), ("service_code", "T09")]) == \
        everything
    assert _codes(anonymous, fmt, [("service_request_id", garbage),
                                   ("service_request_id", lamp)]) == everything
    # the same value twice is one value
    assert _codes(anonymous, fmt, [("page", "1"), ("page", "1")]) == everything


@pytest.mark.parametrize("fmt", ["json", "xml"])
def test_other_repeated_arguments_are_refused_naming_them(app311, anonymous, fmt):
    for name, values in [("page", ["1", "2"]), ("page_size", ["1", "50"]),
                         ("start_date", ["2026-01-01T00:00:00+08:00",
                                         "2026-02-01T00:00:00+08:00"])]:
        response = anonymous.client.get(f"/open311/v2/requests.{fmt}",
                                        query_string=[(name, v) for v in values])
        [(_, description)] = spec_errors(response, 400, fmt)
        assert description.startswith(f"{name}: Send it once"), description
    posted = app311.client.post(f"/open311/v2/requests.{fmt}", data={
        "api_key": app311.api_key, "service_code": ["T01", "0901"], **where(),
        "attribute[size]": "small"})
    [(_, description)] = spec_errors(posted, 400, fmt)
    assert description.startswith("service_code: Send it once"), description


# --- unknown services ---------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["json", "xml"])
def test_posting_to_an_unknown_service_is_a_404(app311, fmt):
    for code in ("XXXX", "01"):  # no such code; a 大类, which is not a service
        response = app311.post(fmt, service_code=code, **where())
        [(_, description)] = spec_errors(response, 404, fmt)
        assert description == f"service_code {code!r}: no such service"


# --- updated_datetime ---------------------------------------------------------------------


def test_updated_datetime_is_never_before_requested_datetime(app311, anonymous, people,
                                                             db_session):
    """The test's transaction started before the request, as the demo seed's one
    transaction starts before its reports: the database's now() lags the app's clock."""
    started = db_session.scalar(sa.select(sa.func.now()))
    time.sleep(max(0.0, 1.05 - (datetime.now(UTC) - started).total_seconds()))
    fresh, acted = app311.report(), app311.report(**where(dx=0.001))
    case_id = db_session.scalar(sa.select(Case.id).where(Case.code == acted))
    act(people.dispatcher, people.dispatcher.ok(people.dispatcher.get(f"/cases/{case_id}")),
        "accept")
    for fmt in ("json", "xml"):
        items = parse(anonymous.get(f"/open311/v2/requests.{fmt}"), fmt)
        assert [i["service_request_id"] for i in items] == [acted, fresh]
        for item in items:
            assert datetime.fromisoformat(item["updated_datetime"]) >= \
                datetime.fromisoformat(item["requested_datetime"]), item
    for case in db_session.scalars(sa.select(Case).where(Case.code.in_([fresh, acted]))
                                   .execution_options(populate_existing=True)):
        assert case.updated_at >= case.reported_at, case.code  # at the source too


def test_the_demo_requests_were_not_updated_before_they_were_made(anonymous, db_session):
    """The demo seed reports and acts in one transaction, seconds after it began."""
    demo.seed(db_session, force=True)
    items = parse(anonymous.get("/open311/v2/requests.json"), "json")
    assert items
    for item in items:
        assert item["updated_datetime"] >= item["requested_datetime"], item
    assert db_session.scalar(sa.select(sa.func.count()).select_from(Case).where(
        Case.updated_at < Case.reported_at)) == 0


# --- discovery ----------------------------------------------------------------------------


def test_the_discovery_names_the_configured_public_address(app, anonymous, monkeypatch):
    forged = {"Host": "evil.example", "X-Forwarded-Proto": "http",
              "X-Forwarded-Host": "evil.example"}
    monkeypatch.setitem(app.config, "PUBLIC_BASE_URL", "https://grid.example.gov.cn/gov/")
    for fmt in ("json", "xml"):
        body = parse(anonymous.client.get(f"/open311/discovery.{fmt}", headers=forged), fmt)
        [endpoint] = body["endpoints"]
        assert endpoint["url"] == "https://grid.example.gov.cn/gov/open311/v2"


def test_without_one_forwarded_headers_are_not_trusted(app, anonymous, monkeypatch):
    monkeypatch.setitem(app.config, "PUBLIC_BASE_URL", None)
    assert app.config["TRUSTED_PROXIES"] == 0
    body = anonymous.client.get("/open311/discovery.json", headers={
        "Host": "grid.local", "X-Forwarded-Proto": "https",
        "X-Forwarded-Host": "evil.example"}).get_json()
    assert body["endpoints"][0]["url"] == "http://grid.local/open311/v2"


# --- keys of another kind -----------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["json", "xml"])
def test_a_key_of_another_kind_is_told_what_it_is_for(app311, new_key, fmt):
    hotline = new_key("hotline")
    posted = app311.post(fmt, api_key=hotline.api_key, service_code="T01", **where(),
                         **{"attribute[size]": "small"})
    assert spec_errors(posted, 403, fmt) == [
        (403, "api_key: This API key is for the hotline intake, not Open311")]
    read = app311.get(f"/open311/v2/services.{fmt}", api_key=hotline.api_key)
    assert "for the hotline intake" in spec_errors(read, 403, fmt)[0][1]
    # without its secret nothing is told
    guessed = app311.post(fmt, api_key=f"{hotline.key['key_id']}.guess", service_code="T01",
                          **where())
    assert spec_errors(guessed, 403, fmt) == [(403, "api_key: Unknown or disabled API key")]


# --- what is published (公开) --------------------------------------------------------------


def _category(db_session, code: str) -> CaseCategory:
    return db_session.scalars(sa.select(CaseCategory).where(CaseCategory.code == code)).one()


def test_a_resident_may_publish_their_report(app311, anonymous, people, category, db_session):
    p = people
    kept_private = report(p.resident, category, contact_name="王秀英",
                          contact_phone="13900001111")
    assert kept_private["public"] is False
    published = report(p.resident, category, public=True, contact_name="王秀英",
                       contact_phone="13900001111", description="我家楼下垃圾没人清",
                       location=at(G111, dx=0.002))
    assert published["public"] is True
    dispute = report(p.resident2, _category(db_session, "0601"), public=True,
                     location=at(G111, dx=-0.002), attributes={})
    by_worker = report(p.worker, category, location=at(G111, dy=0.002))
    not_by_worker = report(p.worker, category, public=False,
                           location=at(G111, dy=-0.002))
    by_app = app311.report()
    for fmt in ("json", "xml"):
        listed = _codes(anonymous, fmt)
        assert listed == [by_app, by_worker["code"], published["code"]]
        [item] = parse(anonymous.get(f"/open311/v2/requests/{published['code']}.{fmt}"), fmt)
        assert item["description"] == "我家楼下垃圾没人清"
        for hidden in (kept_private, dispute, not_by_worker):
            spec_errors(anonymous.get(f"/open311/v2/requests/{hidden['code']}.{fmt}"), 404,
                        fmt)
        text = anonymous.get(f"/open311/v2/requests.{fmt}").get_data(True)
        for secret in ("王秀英", "13900001111", "139****1111"):
            assert secret not in text


def test_cases_entered_for_others_are_never_published(anonymous, people, category):
    dispatcher = people.dispatcher
    response = dispatcher.post("/cases", {"category_id": category.id,
                                          "location": at(G111),
                                          "description": "来电反映垃圾", "channel": "wechat",
                                          "attributes": {"size": "small"}, "public": True})
    assert response.status_code == 422, response.get_json()
    assert "public" in response.get_json()["errors"]["json"]
    entered = report(dispatcher, category, channel="wechat")
    assert entered["public"] is False
    assert _codes(anonymous) == []

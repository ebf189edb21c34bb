"""GET requests and GET a request: public fields only, our states mapped to open/closed
with notes, the department as agency_responsible, the stage's due time as
expected_datetime; filters, paging and the 90-day window; sensitive categories never
published."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from grid.cases.models import Case
from tests.fixtures.areas import G211, S1
from tests.fixtures.cases import act, photo, report, set_case_times
from tests.fixtures.http import at
from tests.grid.open311.conftest import EMAIL, PHONE, parse, spec_errors, where

FIELDS = {"service_request_id", "status", "status_notes", "service_name", "service_code",
          "description", "agency_responsible", "service_notice", "requested_datetime",
          "updated_datetime", "expected_datetime", "address", "address_id", "zipcode", "lat",
          "long", "media_url"}


def _id(db_session, code: str) -> int:
    return db_session.scalar(sa.select(Case.id).where(Case.code == code))


def _one(app, code: str, fmt: str = "json") -> dict:
    [item] = parse(app.get(f"/open311/v2/requests/{code}.{fmt}"), fmt)
    return item


@pytest.mark.parametrize("fmt", ["json", "xml"])
def test_a_request_as_the_public_sees_it(app311, anonymous, db_session, fmt):
    code = app311.report(description="小区门口有暴露垃圾", first_name="伟", last_name="李",
                         phone=PHONE, email=EMAIL, media_url="https://img.example.com/1.jpg")
    item = _one(anonymous, code, fmt)
    assert set(item) == FIELDS
    assert (item["service_request_id"], item["status"], item["status_notes"]) == (
        code, "open", "待受理")
    assert (item["service_code"], item["service_name"]) == ("T01", "测试垃圾")
    assert item["description"] == "小区门口有暴露垃圾" and item["address"] == "江滨路1号"
    assert item["agency_responsible"] is None and item["media_url"] is None
    lat, long = float(item["lat"]), float(item["long"])
    assert (round(lat, 6), round(long, 6)) == (30.015, 119.905)  # WGS-84, as posted
    requested = datetime.fromisoformat(item["requested_datetime"])
    assert requested.utcoffset() == timedelta(hours=8)  # ISO-8601 with the offset
    assert abs(requested - datetime.now(UTC)) < timedelta(minutes=5)
    case = db_session.get(Case, _id(db_session, code))
    assert datetime.fromisoformat(item["expected_datetime"]) == case.due_at.replace(
        microsecond=0)


def _walk(p, app311, db_session, department, **form) -> tuple[str, dict]:
    """A request accepted and dispatched to the department through the case API."""
    code = app311.report(**form)
    case = p.dispatcher.ok(p.dispatcher.get(f"/cases/{_id(db_session, code)}"))
    case = act(p.dispatcher, case, "accept")
    return code, act(p.dispatcher, case, "dispatch", department_id=department.id)


def test_the_loop_maps_to_open_then_closed_with_notes(app311, anonymous, people, department,
                                                      db_session):
    p = people
    code, case = _walk(p, app311, db_session, department)
    item = _one(anonymous, code)
    assert (item["status"], item["status_notes"]) == ("open", "已派遣")
    assert item["agency_responsible"] == "测试城管局"
    assert datetime.fromisoformat(item["expected_datetime"]) == datetime.fromisoformat(
        case["due_at"]).replace(microsecond=0)
    case = act(p.handler, case, "sign")
    case = act(p.handler, case, "handle", result="已清理")
    assert _one(anonymous, code)["status_notes"] == "已处置"
    case = act(p.worker, case, "verify", photo_ids=[photo(p.worker)])
    case = act(p.dispatcher, case, "close")
    item = _one(anonymous, code, "xml")
    assert (item["status"], item["status_notes"]) == ("closed", "已结案：已清理")
    assert item["expected_datetime"] is None and item["agency_responsible"] == "测试城管局"
    assert datetime.fromisoformat(item["updated_datetime"]).utcoffset() == timedelta(hours=8)


def test_rejected_merged_and_voided_requests_are_closed_and_say_why(
        app311, anonymous, people, api, db_session):
    p = people

    def as_dispatcher(code: str) -> dict:
        return p.dispatcher.ok(p.dispatcher.get(f"/cases/{_id(db_session, code)}"))

    rejected = app311.report()
    act(p.dispatcher, as_dispatcher(rejected), "reject", reason="不属于城管受理范围")
    kept, merged = app311.report(), app311.report(**where(dx=0.0001))
    act(p.dispatcher, as_dispatcher(merged), "merge", into_case_id=_id(db_session, kept))
    voided = app311.report(**where(dx=-0.002))
    act(p.dispatcher, as_dispatcher(voided), "request_void", reason="重复提交的测试数据")
    second = api("street_dispatcher", S1)
    act(second, second.ok(second.get(f"/cases/{_id(db_session, voided)}")), "approve")

    body = parse(anonymous.get("/open311/v2/requests.json",
                               service_request_id=f"{rejected},{merged},{voided},{kept}"),
                 "json")
    notes = {i["service_request_id"]: (i["status"], i["status_notes"]) for i in body}
    assert notes == {rejected: ("closed", "不予立案：不属于城管受理范围"),
                     merged: ("closed", f"已合并至 {kept}"),
                     voided: ("closed", "已作废：重复提交的测试数据"),
                     kept: ("open", "待受理")}


@pytest.mark.parametrize("fmt", ["json", "xml"])
def test_requests_are_filtered_and_paged(app311, anonymous, lists_category, db_session, fmt):
    garbage = [app311.report(**where(dx=0.001 * i)) for i in range(3)]
    lamp = app311.report("T09", **{"attribute[parts]": "lamp"})
    old = app311.report(**where(dx=-0.003))
    set_case_times(db_session, _id(db_session, old),
                   reported_at=datetime.now(UTC) - timedelta(days=120))
    act_reject = _id(db_session, garbage[0])
    db_session.execute(sa.update(Case).where(Case.id == act_reject).values(state="rejected"))
    db_session.commit()

    def codes(**params) -> list[str]:
        response = anonymous.get(f"/open311/v2/requests.{fmt}", **params)
        assert response.status_code == 200, response.get_data(True)
        return [i["service_request_id"] for i in parse(response, fmt)]

    # newest first, the last 90 days by default
    assert codes() == [lamp, *reversed(garbage)]
    assert codes(service_code="T09") == [lamp]
    assert codes(service_code="T01,T09", status="closed") == [garbage[0]]
    assert codes(status="open") == [lamp, garbage[2], garbage[1]]
    assert codes(status="open,closed") == codes()
    assert codes(page_size=2) == [lamp, garbage[2]]
    assert codes(page_size=2, page=2) == [garbage[1], garbage[0]]
    assert codes(page_size=2, page=9) == []
    start = (datetime.now(UTC) - timedelta(days=130)).isoformat()
    end = (datetime.now(UTC) - timedelta(days=100)).isoformat()
    assert codes(start_date=start, end_date=end) == [old]
    assert codes(start_date=start) == [old]  # 90 days from the start
    # ids are looked up whatever their age, and the other filters are ignored
    assert codes(service_request_id=f"{old}, {lamp},nope", status="closed") == [lamp, old]


@pytest.mark.parametrize("fmt", ["json", "xml"])
def test_bad_queries_are_400s(anonymous, fmt):
    now = datetime.now(UTC)
    for params, starts in [
            ({"start_date": (now - timedelta(days=91)).isoformat(), "end_date": now.isoformat()},
             "end_date: At most 90 days"),
            ({"start_date": now.isoformat(), "end_date": (now - timedelta(days=1)).isoformat()},
             "start_date: Must be before"),
            ({"start_date": "yesterday"}, "start_date: Not a valid datetime."),
            ({"status": "pending"}, "status: open, closed"),
            ({"page_size": "5000"}, "page_size: Must be"),
            ({"page": "0"}, "page: Must be")]:
        response = anonymous.get(f"/open311/v2/requests.{fmt}", **params)
        assert spec_errors(response, 400, fmt)[0][1].startswith(starts), params


@pytest.mark.parametrize("fmt", ["json", "xml"])
def test_an_unknown_request_is_a_404(anonymous, fmt):
    [(_, description)] = spec_errors(anonymous.get(f"/open311/v2/requests/nope.{fmt}"), 404,
                                     fmt)
    assert "nope" in description


# --- privacy -----------------------------------------------------------------------------


def test_nothing_personal_leaves_the_system(app311, anonymous, people, db_session):
    """Contact names, phone (clear or masked), email, device, media, the reporter's and
    handlers' user ids: in no answer, in no format."""
    p = people
    posted = app311.post("xml", service_code="T01", **where(), first_name="Wei",
                         last_name="Lee", phone=PHONE, email=EMAIL, device_id="device-secret-9",
                         media_url="https://img.example.com/face.jpg",
                         **{"attribute[size]": "small"})
    assert posted.status_code == 201
    by_resident = report(p.resident, cases_category(db_session), contact_name="王秀英",
                         contact_phone="13900001111", location=at("330183001001001",
                                                                  dx=0.002))
    texts = [posted.get_data(True)]
    for fmt in ("json", "xml"):
        texts.append(anonymous.get(f"/open311/v2/requests.{fmt}").get_data(True))
        texts.append(app311.get(f"/open311/v2/requests.{fmt}",
                                api_key=app311.api_key).get_data(True))
        texts.append(anonymous.get(f"/open311/v2/requests/{by_resident['code']}.{fmt}")
                     .get_data(True))
    everything = "\n".join(texts)
    # a resident's report is not published: it is in the resident's own words
    assert by_resident["code"] not in texts[1]
    for secret in ("Wei", "Lee", PHONE, "138****5678", EMAIL, "device-secret-9", "face.jpg",
                   "王秀英", "13900001111", "139****1111", "reporter", "contact", "user"):
        assert secret not in everything, secret
    # the published ones carry exactly the public fields
    for item in parse(anonymous.get("/open311/v2/requests.json"), "json"):
        assert set(item) == FIELDS


def cases_category(db_session):
    from grid.cases.models import CaseCategory

    return db_session.scalars(sa.select(CaseCategory).where(CaseCategory.code == "T01")).one()


def test_disputes_and_mass_incidents_are_never_published(app311, anonymous, db_session, tree):
    public = app311.report()
    dispute = app311.report("0602", **{"attribute[workers]": "12"})
    incident = app311.report("0406", **{"attribute[level]": "IV"}, **where(G211))
    family = app311.report("0601")
    assert db_session.scalar(sa.select(sa.func.count()).select_from(Case)
                             .where(Case.channel == "open311")) == 4
    for fmt in ("json", "xml"):
        listed = [i["service_request_id"] for i in parse(
            anonymous.get(f"/open311/v2/requests.{fmt}"), fmt)]
        assert listed == [public]
        asked = parse(anonymous.get(f"/open311/v2/requests.{fmt}",
                                    service_request_id=f"{dispute},{incident},{family}"), fmt)
        assert asked == []
        for code in (dispute, incident, family):
            spec_errors(anonymous.get(f"/open311/v2/requests/{code}.{fmt}"), 404, fmt)
    # with a key neither: the poster follows these up by other means
    assert [i["service_request_id"] for i in parse(app311.get(
        "/open311/v2/requests.json", api_key=app311.api_key), "json")] == [public]

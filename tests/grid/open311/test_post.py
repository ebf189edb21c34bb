"""POST requests: a 311 app's report becomes a case through the same intake as the
hotline (active 小类, extra questions, grid of the point, duplicates, the dispatchers
told, the audit), answers its service_request_id at once, and is idempotent by the
app's client_request_id."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from grid.cases.models import Case, CaseEvent
from server import pii
from tests.conftest import inbox
from tests.fixtures.areas import G111, G211
from tests.fixtures.http import audit_rows
from tests.grid.open311.conftest import EMAIL, PHONE, parse, spec_errors, where


def _case(db_session, code: str) -> Case:
    return db_session.scalars(sa.select(Case).where(Case.code == code)).one()


@pytest.mark.parametrize("fmt", ["json", "xml"])
def test_a_request_becomes_a_case_in_the_grid_of_its_point(app311, people, tree, db_session,
                                                           fmt):
    response = app311.post(fmt, service_code="T01", description="小区门口有暴露垃圾",
                           address_string="江滨路1号", **where(G111),
                           **{"attribute[size]": "large", "attribute[bags]": "3"},
                           media_url="https://img.example.com/1.jpg", first_name="伟",
                           last_name="李", phone="+86 138-1234-5678", email=EMAIL,
                           device_id="app-device-1")
    assert response.status_code == 201, response.get_data(True)
    [answer] = parse(response, fmt)
    assert set(answer) == {"service_request_id", "service_notice", "account_id"}
    assert answer["account_id"] is None and "将由所在街道受理" in answer["service_notice"]
    case = _case(db_session, answer["service_request_id"])
    assert (case.channel, case.state, case.area_id) == ("open311", "reported", tree[G111])
    assert case.reporter_id is None and case.external_ref is None
    assert case.attributes == {"size": "large", "bags": 3}
    assert case.address == "江滨路1号" and case.description == "小区门口有暴露垃圾"
    # the contact is kept like a hotline caller's: the phone encrypted and masked
    assert case.contact_name == "李伟" and case.contact_phone_masked == "138****5678"
    assert pii.decrypt(case.contact_phone_enc, "case.contact_phone") == PHONE
    assert case.stage == "accept" and case.due_at is not None
    report = db_session.scalars(sa.select(CaseEvent).where(CaseEvent.case_id == case.id)).one()
    assert report.action == "report" and report.actor_id is None
    assert report.data["media_url"] == "https://img.example.com/1.jpg"
    assert report.data["channel"] == "open311"
    # the street's dispatcher has it to accept; the audit names the client app
    assert [n.kind for n in inbox(db_session, people.dispatcher.user)] == ["case_new"]
    [row] = audit_rows(db_session, action="case_reported")
    assert row.changes["channel"] == "open311"
    assert row.changes["api_client_id"] == app311.key["id"]


def test_a_json_body_is_accepted_too(app311, db_session):
    response = app311.client.post("/open311/v2/requests.json", json={
        "api_key": app311.api_key, "service_code": "T01", "lat": 30.015, "long": 119.905,
        "description": "垃圾", "attribute": {"size": "small", "bags": 2}})
    assert response.status_code == 201, response.get_json()
    case = _case(db_session, response.get_json()[0]["service_request_id"])
    assert case.attributes == {"size": "small", "bags": 2}
    bad = app311.client.post("/open311/v2/requests.json", json=["not", "an", "object"])
    spec_errors(bad, 400)


def test_without_a_description_the_service_name_is_used(app311, db_session):
    code = app311.report(description=None)
    assert _case(db_session, code).description == "测试垃圾"


def test_an_address_alone_cannot_be_placed_unless_the_grid_is_named(app311, tree, db_session):
    response = app311.post(service_code="T01", address_string="江滨路1号",
                           **{"attribute[size]": "small"})
    [(_, description)] = spec_errors(response, 400)
    assert description.startswith("lat: lat and long are required")
    code = app311.report(lat=None, long=None, grid_code=G211)
    case = _case(db_session, code)
    assert case.area_id == tree[G211] and case.location is None


@pytest.mark.parametrize("fmt", ["json", "xml"])
def test_bad_places_are_400s_naming_the_input(app311, fmt):
    outside = app311.post(fmt, service_code="T01", lat="30.5", long="120.5",
                          **{"attribute[size]": "small"})
    assert spec_errors(outside, 400, fmt) == [(400, "lat/long: The point is outside every "
                                                    "grid.")]
    half = app311.post(fmt, service_code="T01", lat="30.015", **{"attribute[size]": "small"})
    assert "Send lat and long together" in spec_errors(half, 400, fmt)[0][1]
    for lat, long in (("91", "119.9"), ("nan", "119.9"), ("north", "119.9")):
        response = app311.post(fmt, service_code="T01", lat=lat, long=long,
                               **{"attribute[size]": "small"})
        assert spec_errors(response, 400, fmt)[0][1].startswith("lat: ")
    unknown_grid = app311.post(fmt, service_code="T01", grid_code="330183009009009",
                               **{"attribute[size]": "small"})
    assert spec_errors(unknown_grid, 400, fmt) == [(400, "grid_code: No such grid.")]


@pytest.mark.parametrize(("service_code", "status", "expected"), [
    ("XXXX", 404, "service_code 'XXXX': no such service"),  # the spec's 404
    ("01", 404, "service_code '01': no such service"),  # a 大类 is not a service
    (None, 400, "service_code: Missing data for required field."),
])
def test_the_service_must_be_an_active_sub_category(app311, service_code, status, expected):
    response = app311.post(service_code=service_code, **where())
    assert spec_errors(response, status) == [(status, expected)]


def test_bad_contact_fields_are_refused(app311):
    cases = {"phone": ("12345", "phone: A mainland mobile number"),
             "email": ("not-an-email", "email: Not a valid email address."),
             "media_url": ("ftp://x.example.com/a.jpg", "media_url: Not a valid URL."),
             "client_request_id": ("has space", "client_request_id: 1–47 letters")}
    for name, (value, message) in cases.items():
        response = app311.post(service_code="T01", **where(), **{name: value},
                               **{"attribute[size]": "small"})
        assert spec_errors(response, 400)[0][1].startswith(message), name


# --- attributes ---------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["json", "xml"])
def test_attributes_are_checked_against_the_service_definition(app311, fmt):
    def errors(**attributes) -> list[str]:
        form = {f"attribute[{k}]": v for k, v in attributes.items()}
        response = app311.post(fmt, service_code="T01", **where(), **form)
        return sorted(d for _, d in spec_errors(response, 400, fmt))

    assert errors() == ["attribute[size]: Required."]
    assert errors(size="huge") == ["attribute[size]: Must be one of: large, small."]
    assert errors(size="small", bags="many") == ["attribute[bags]: Must be a number."]
    assert errors(size="small", bags="inf") == ["attribute[bags]: Must be a number."]
    assert errors(size="small", colour="red") == [
        "attribute[colour]: This category has no such attribute."]
    assert errors(bags="x", colour="red") == [
        "attribute[bags]: Must be a number.",
        "attribute[colour]: This category has no such attribute.",
        "attribute[size]: Required."]


def test_seeded_required_questions_are_enforced(app311, tree):
    response = app311.post(service_code="0901", **where(), description="井盖缺失")
    assert spec_errors(response, 400) == [(400, "attribute[damage]: Required.")]
    assert app311.report("0901", **{"attribute[damage]": "missing"})


def test_value_lists_dates_and_texts(app311, lists_category, db_session):
    form = {"attribute[parts][]": ["lamp", "wire"], "attribute[seen_at]":
            "2026-03-01T09:30:00+08:00", "attribute[remark]": "夜里不亮"}
    code = app311.report("T09", **form)
    assert _case(db_session, code).attributes == {
        "parts": ["lamp", "wire"], "seen_at": "2026-03-01T09:30:00+08:00",
        "remark": "夜里不亮"}
    # attribute[parts]=lamp (without []) is a list of one
    assert _case(db_session, app311.report("T09", **{"attribute[parts]": "pole"})) \
        .attributes == {"parts": ["pole"]}

    def errors(**form) -> list[str]:
        return [d for _, d in spec_errors(app311.post(service_code="T09", **where(), **form),
                                          400)]

    assert errors(**{"attribute[parts][]": ["lamp", "bulb"]}) == [
        "attribute[parts]: Must be a list of: lamp, pole, wire."]
    assert errors(**{"attribute[parts]": "lamp", "attribute[seen_at]": "yesterday"}) == [
        "attribute[seen_at]: Must be an ISO-8601 date and time."]
    assert errors(**{"attribute[parts]": "lamp", "attribute[remark]": ["a", "b"]}) == [
        "attribute[remark]: Must be text."]


# --- idempotency --------------------------------------------------------------------------


def test_a_retry_with_the_same_client_request_id_is_the_same_request(app311, new_key,
                                                                     db_session):
    first = app311.post(service_code="T01", **where(), client_request_id="app-42",
                        **{"attribute[size]": "small"})
    assert first.status_code == 201
    again = app311.post(service_code="T01", **where(), client_request_id="app-42",
                        **{"attribute[size]": "small"})
    assert again.status_code == 200
    assert again.headers["Idempotent-Replay"] == "true"  # the one replay rule
    assert again.get_json()[0]["service_request_id"] == first.get_json()[0][
        "service_request_id"]
    assert "重复提交" in again.get_json()[0]["service_notice"]
    # other content under the same id is a conflict
    other = app311.post(service_code="T01", **where(), client_request_id="app-42",
                        **{"attribute[size]": "large"})
    assert "already used" in spec_errors(other, 409)[0][1]
    # ids are the client's own: another app may use the same one
    assert new_key().report(client_request_id="app-42")
    refs = db_session.scalars(sa.select(Case.external_ref).where(Case.channel == "open311")
                              .order_by(Case.id)).all()
    assert len(refs) == 2 and refs[0] == f"{app311.key['key_id']}:app-42"
    # without an id every POST is a new request
    assert app311.report() != app311.report()


def test_a_nearby_open_request_of_the_same_service_is_noted(app311, db_session):
    first = app311.report()
    response = app311.post(service_code="T01", **where(dx=0.0001),
                           **{"attribute[size]": "small"})
    assert "附近已有 1 件同类问题在办" in response.get_json()[0]["service_notice"]
    second = _case(db_session, response.get_json()[0]["service_request_id"])
    event = db_session.scalars(sa.select(CaseEvent).where(CaseEvent.case_id == second.id)).one()
    assert event.data["likely_duplicates"] == [_case(db_session, first).id]

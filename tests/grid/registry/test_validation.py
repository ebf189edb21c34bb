"""Validation rules of the register: ID numbers (GB 11643), mobiles, USCCs (GB 32100), and
the other field rules, each seen through the API as a 422 naming the field."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta

import pytest
from stdnum.cn import ric

from tests.conftest import assert_error_shape, today_local
from tests.fixtures.areas import G111
from tests.fixtures.http import at
from tests.fixtures.registry import ID_FEMALE_1988, ID_MALE_2023, ID_WITH_X, USCC_A, USCC_B

WHY = "purpose_code=verify_identity&purpose="  # a reveal's purpose (code, then text)


def _field_error(response, field: str, location: str = "json") -> list[str]:
    body = assert_error_shape(response, 422)
    assert field in body["errors"][location], body
    return body["errors"][location][field]


# --- ID numbers ----------------------------------------------------------------------------


def _with_check(first17: str) -> str:
    return first17 + ric.calc_check_digit(first17 + "0")



@pytest.mark.parametrize(("number", "sex", "born"), [
    (ID_MALE_2023, "M", "2023-11-01"),
    (ID_FEMALE_1988, "F", "1988-06-01"),
    (ID_WITH_X, "M", "1990-03-07"),
    # 富阳 (330183, a county code of 1994–2014), born 1955: python-stdnum's `validate`
    # refuses it, because the code did not exist in the birth year; it is a real number.
    ("330183195506070088", "F", "1955-06-07"),
])
def test_sex_and_birth_date_come_from_the_id_number(worker, number, sex, born):
    person = worker.person(id_number=number)
    assert (person["sex"], person["birth_date"]) == (sex, born)
    assert person["id_number"] == number[:6] + "*" * 12


@pytest.mark.parametrize(("number", "why"), [
    (ID_MALE_2023[:-1] + "5", "check character"),
    (ID_FEMALE_1988[:-1] + "X", "check character"),
    (ID_MALE_2023[:-1], "17 digits"),
    (ID_MALE_2023 + "1", "17 digits"),
    ("11010119900307109", "17 digits"),
    ("A10101202311012176", "17 digits"),
    (_with_check("11010120231301217"), "birth date"),  # month 13, right check character
    (_with_check("99999919900101123"), "region code"),  # no such region
])
def test_a_bad_id_number_is_a_422_naming_it(worker, number, why):
    response = worker.post("/persons", {"name": "李四", "id_number": number,
                                        "location": at(G111)})
    messages = _field_error(response, "id_number")
    assert any(why in m for m in messages), messages


def test_an_id_number_born_in_the_future_is_refused(worker):
    tomorrow = today_local() + timedelta(days=2)
    number = _with_check("110101" + tomorrow.strftime("%Y%m%d") + "123")
    ric.validate(number)  # a well-formed number: only the date is wrong
    response = worker.post("/persons", {"name": "未出生", "id_number": number,
                                        "location": at(G111)})
    assert any("plausible" in m for m in _field_error(response, "id_number"))
    # …also as a correction
    person = worker.person()
    response = worker.patch(f"/persons/{person['id']}",
                            {"id_number": number, "version": person["version"]})
    _field_error(response, "id_number")


def test_a_baby_born_today_in_beijing_is_accepted_before_eight(worker, monkeypatch):
    """At 01:00 Beijing the machine's (UTC) date is still yesterday: the birth date is
    checked against Beijing's day, as the service checks it."""
    from server import clock

    pinned = datetime.combine(datetime.now(UTC).date(), time(17, 0), UTC)  # 01:00 Beijing
    monkeypatch.setattr(clock, "now", lambda: pinned)
    born = (pinned + timedelta(hours=8)).date()
    number = _with_check("110101" + born.strftime("%Y%m%d") + "123")
    person = worker.person(name="新生儿", id_number=number)
    assert person["birth_date"] == born.isoformat()


def test_a_lower_case_x_is_accepted_and_stored_upper_case(worker, api):
    person = worker.person(id_number=ID_WITH_X.lower())
    assert person["id_number"] == "110101************"
    chief = api("grid_chief", G111)
    clear = chief.ok(chief.get(f"/persons/{person['id']}/pii?{WHY}核对身份信息"))
    assert clear["id_number"] == ID_WITH_X
    # the same number either way is the same person
    found = worker.ok(worker.get(f"/persons?id_number={ID_WITH_X.lower()}"))
    assert [p["id"] for p in found] == [person["id"]]
    duplicate = worker.post("/persons", {"name": "重复", "id_number": ID_WITH_X,
                                         "location": at(G111)})
    assert assert_error_shape(duplicate, 409)["existing"]["id"] == person["id"]


def test_correcting_the_id_number_derives_sex_and_birth_date_again(worker):
    person = worker.person(id_number=ID_MALE_2023)
    fixed = worker.ok(worker.patch(f"/persons/{person['id']}",
                                   {"id_number": ID_FEMALE_1988, "version": person["version"]}))
    assert (fixed["sex"], fixed["birth_date"]) == ("F", "1988-06-01")
    assert fixed["id_number"] == "120103************"


# --- mobiles -------------------------------------------------------------------------------


@pytest.mark.parametrize("phone", ["12812345678", "1381234567", "138123456789", "+8613812345678",
                                   "138-1234-567", "２3812345678"])
def test_a_bad_mobile_is_a_422(worker, phone):
    response = worker.post("/persons", {"name": "李四", "phone": phone, "location": at(G111)})
    _field_error(response, "phone")


@pytest.mark.parametrize(("url", "field"), [("/buildings", "leader_phone"),
                                            ("/houses", "owner_phone")])
def test_other_mobiles_are_checked_too(worker, url, field):
    building = worker.building()
    body = {"name": "5幢", "location": at(G111)} if url == "/buildings" else {
        "building_id": building["id"], "room": "101"}
    _field_error(worker.post(url, {**body, field: "10000000000"}), field)


@pytest.mark.parametrize("phone", ["13812345678", "19912345678", "16600001111"])
def test_a_good_mobile_is_accepted_and_masked(worker, phone):
    person = worker.person(phone=phone)
    assert person["phone"] == phone[:3] + "****" + phone[-4:]


# --- USCC ----------------------------------------------------------------------------------


@pytest.mark.parametrize("code", [USCC_A, USCC_B])
def test_valid_usccs_are_accepted(worker, code):
    assert worker.organisation(uscc=code)["uscc"] == code


def test_a_lower_case_uscc_is_stored_upper_case(worker):
    org = worker.organisation(uscc=USCC_B.lower())
    assert org["uscc"] == USCC_B
    found = worker.ok(worker.get(f"/organisations?uscc={USCC_B.lower()}"))
    assert [o["id"] for o in found] == [org["id"]]


@pytest.mark.parametrize(("code", "why"), [
    (USCC_A[:-1] + "M", "check character"),
    (USCC_B[:-1] + "4", "check character"),
    (USCC_A[:-1], "18 characters"),
    ("91110000600037341I", "18 characters"),  # I is not in the alphabet
    ("ABCDEFGHJKLMNPQRTU", "18 characters"),  # not a registration authority code
])
def test_a_bad_uscc_is_a_422_naming_it(worker, code, why):
    response = worker.post("/organisations", {"name": "某公司", "uscc": code,
                                              "location": at(G111)})
    messages = _field_error(response, "uscc")
    assert any(why in m for m in messages), messages
    org = worker.organisation()
    response = worker.patch(f"/organisations/{org['id']}", {"uscc": code, "version": 1})
    _field_error(response, "uscc")


# --- other fields --------------------------------------------------------------------------


def test_other_field_rules(worker):
    building = worker.building()
    house = {"building_id": building["id"], "room": "101"}
    _field_error(worker.post("/houses", {**house, "use": "palace"}), "use")
    _field_error(worker.post("/houses", {**house, "floor_area_m2": -3}), "floor_area_m2")
    _field_error(worker.post("/houses", {**house, "room": "  "}), "room")
    _field_error(worker.post("/houses", {**house, "rental_start": "2026-03-01",
                                         "rental_end": "2026-02-01"}), "rental_end")
    _field_error(worker.post("/houses", {**house, "building_id": 2**70}), "building_id")
    _field_error(worker.post("/households", {"type": "nomadic", "location": at(G111)}), "type")
    _field_error(worker.post("/persons", {"name": "X", "population_type": "alien",
                                          "location": at(G111)}), "population_type")
    _field_error(worker.post("/persons", {"name": "X", "household_id": 2**63,
                                          "location": at(G111)}), "household_id")
    _field_error(worker.post("/organisations", {"name": "X", "location": at(G111),
                                                "risk_flags": ["arson"]}), "risk_flags")
    _field_error(worker.post("/organisations", {"name": "X", "location": at(G111),
                                                "employees": -1}), "employees")
    _field_error(worker.post("/organisations", {"name": "X", "location": at(G111),
                                                "kind": "cartel"}), "kind")
    _field_error(worker.post("/organisations", {"name": "X"}), "location")
    _field_error(worker.post("/buildings", {"name": "X"}), "location")
    _field_error(worker.post("/buildings", {"name": "X", "location": at(G111),
                                            "floors": 0}), "floors")
    # unknown fields are refused, not ignored
    _field_error(worker.post("/buildings", {"name": "X", "location": at(G111),
                                            "colour": "red"}), "colour")


def test_a_rental_period_is_checked_against_the_stored_one(worker):
    house = worker.house(worker.building(), rental_start="2026-03-01", use="rented")
    response = worker.patch(f"/houses/{house['id']}", {"rental_end": "2026-01-31",
                                                       "version": house["version"]})
    _field_error(response, "rental_end")

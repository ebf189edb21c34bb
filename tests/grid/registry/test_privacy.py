"""Personal data: masked in every response, unmasked only for a stated purpose (audited);
key-person tags only for roles allowed to see them; tags with their periods; history that
never holds personal data in clear."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
import sqlalchemy as sa

from tests.conftest import assert_error_shape, today_local
from tests.fixtures.areas import G111, S1
from tests.fixtures.http import at, audit_rows
from tests.fixtures.registry import ID_FEMALE_1988, ID_MALE_2023

PHONE = "13812345678"
MASKED_ID = "110101************"
MASKED_PHONE = "138****5678"

WHY = "purpose_code=verify_identity&purpose="  # a reveal's purpose (code, then text)


@pytest.fixture
def tagged(api):
    """A person with a care tag and a key-person tag, recorded by the grid chief."""
    chief = api("grid_chief", G111)
    household = chief.household(location=at(G111))
    person = chief.person(household, id_number=ID_MALE_2023, phone=PHONE,
                          tags=[{"tag": "elderly_alone", "start_date": "2025-01-01"},
                                {"tag": "community_correction", "note": "矫正期至2027年"}])
    return chief, person, household


# --- masking -------------------------------------------------------------------------------


def test_id_number_and_phone_are_masked_in_every_response(worker, db_session):
    household = worker.household(location=at(G111))
    person = worker.person(household, id_number=ID_MALE_2023, phone=PHONE)
    assert (person["id_number"], person["phone"]) == (MASKED_ID, MASKED_PHONE)
    pid = person["id"]
    responses = [
        worker.get(f"/persons/{pid}"), worker.get("/persons"),
        worker.get(f"/persons?id_number={ID_MALE_2023}"),
        worker.get(f"/households/{household['id']}/members"),
        worker.get(f"/persons/{pid}/history"),
        worker.patch(f"/persons/{pid}", {"ethnicity": "汉族", "version": 1}),
        worker.patch(f"/persons/{pid}", {"ethnicity": "回族", "version": 1}),  # 412
        worker.post("/persons", {"name": "重复", "id_number": ID_MALE_2023,
                                 "location": at(G111)}),  # 409
    ]
    assert [r.status_code for r in responses] == [200, 200, 200, 200, 200, 200, 412, 409]
    for response in responses:
        text = response.get_data(as_text=True)
        assert ID_MALE_2023 not in text and PHONE not in text
    assert responses[1].get_json()[0]["id_number"] == MASKED_ID
    assert responses[1].get_json()[0]["phone"] == MASKED_PHONE
    assert responses[6].get_json()["current"]["id_number"] == MASKED_ID
    assert responses[6].get_json()["current"]["phone"] == MASKED_PHONE
    # at rest: encrypted, with a blind index; the clear value is in no column
    row = db_session.execute(sa.text(
        "SELECT id_number_enc, id_number_bidx, phone_enc, persons::text AS whole "
        "FROM persons WHERE id = :i"), {"i": pid}).one()
    assert ID_MALE_2023 not in row.whole and PHONE not in row.whole
    assert row.id_number_enc.startswith("k") or ":" in row.id_number_enc
    assert re.fullmatch(r"[0-9a-f]{64}", row.id_number_bidx)
    audit_text = str([r.changes for r in audit_rows(db_session)])
    assert ID_MALE_2023 not in audit_text and PHONE not in audit_text


# --- audited unmasking ---------------------------------------------------------------------


def test_unmasking_needs_the_permission_a_purpose_and_is_audited(api, worker, db_session):
    person = worker.person(id_number=ID_MALE_2023, phone=PHONE)
    url = f"/persons/{person['id']}/pii"
    clear = worker.ok(worker.get(f"{url}?{WHY}核对低保申请人身份"))
    assert clear == {"id_number": ID_MALE_2023, "phone": PHONE}
    rows = audit_rows(db_session, action="person_pii_read")
    assert [(r.actor_id, r.object_id, r.purpose) for r in rows] == [
        (worker.user.id, str(person["id"]), "核对低保申请人身份")]
    assert rows[0].changes == {"fields": ["id_number", "phone"]}
    # without a purpose, or with an empty one: 422 and no audit row
    for query in ("", "?purpose=", "?purpose=%20%20%20%20%20"):
        body = assert_error_shape(worker.get(f"{url}{query}"), 422)
        assert "purpose" in body["errors"]["query"]
    # a street dispatcher reads the register but not personal data
    dispatcher = api("street_dispatcher", S1)
    assert dispatcher.ok(dispatcher.get(f"/persons/{person['id']}"))["id_number"] == MASKED_ID
    body = assert_error_shape(dispatcher.get(f"{url}?{WHY}核对身份信息"), 403)
    assert body["required"] == "person:read_pii"
    assert len(audit_rows(db_session, action="person_pii_read")) == 1
    # the reads are in the audit trail, for the auditor
    auditor = api("auditor")
    trail = auditor.ok(auditor.get(f"/audit?action=person_pii_read&object_id={person['id']}"))
    assert [e["purpose"] for e in trail] == ["核对低保申请人身份"]


# --- key-person tags -----------------------------------------------------------------------


def test_the_chief_sees_key_person_tags(tagged):
    chief, person, household = tagged
    assert [t["tag"] for t in person["tags"]] == ["elderly_alone", "community_correction"]
    key = person["tags"][1]
    assert (key["kind"], key["label"], key["note"]) == ("key", "社区矫正", "矫正期至2027年")
    assert key["start_date"] == today_local().isoformat() and key["end_date"] is None
    assert person["tags"][0]["start_date"] == "2025-01-01"
    found = chief.ok(chief.get("/persons?tag=community_correction"))
    assert [p["id"] for p in found] == [person["id"]]
    history = chief.ok(chief.get(f"/persons/{person['id']}/history"))
    assert [h["changes"].get("tag") for h in history if h["action"] == "person_tag_added"] == [
        "elderly_alone", "community_correction"]


def test_a_worker_does_not_see_key_person_tags_anywhere(tagged, worker):
    _, person, household = tagged
    pid = person["id"]
    responses = [worker.get(f"/persons/{pid}"), worker.get("/persons"),
                 worker.get(f"/households/{household['id']}/members"),
                 worker.get(f"/persons/{pid}/history"),
                 worker.get("/persons?tag=elderly_alone")]
    for response in responses:
        assert response.status_code == 200, response.get_json()
        text = response.get_data(as_text=True)
        assert "community_correction" not in text and "社区矫正" not in text
        assert "矫正期" not in text
    assert [t["tag"] for t in responses[0].get_json()["tags"]] == ["elderly_alone"]
    assert [t["tag"] for t in responses[1].get_json()[0]["tags"]] == ["elderly_alone"]
    # the key-person group does not exist for them: filtering by it is a 404, not a hint
    assert_error_shape(worker.get("/persons?tag=community_correction"), 404)
    assert_error_shape(worker.get("/persons?tag=drug_user"), 404)
    # the history still shows the rest
    actions = [h["action"] for h in responses[3].get_json()]
    assert actions == ["person_created", "person_tag_added"]


def test_a_worker_cannot_add_or_end_a_key_person_tag(tagged, worker, db_session):
    chief, person, _ = tagged
    pid = person["id"]
    body = assert_error_shape(worker.post(f"/persons/{pid}/tags", {"tag": "drug_user"}), 403)
    assert body["required"] == "person:read_key_tags"
    response = worker.post("/persons", {"name": "x", "location": at(G111),
                                        "tags": [{"tag": "key_petitioner"}]})
    assert_error_shape(response, 403)
    key_id = person["tags"][1]["id"]
    assert_error_shape(worker.post(f"/persons/{pid}/tags/{key_id}/end", {}), 404)
    still = chief.ok(chief.get(f"/persons/{pid}"))
    assert still["tags"][1]["end_date"] is None
    # care tags are theirs to manage
    worker.ok(worker.post(f"/persons/{pid}/tags", {"tag": "low_income"}), 201)


def test_tags_have_start_and_end_dates(worker):
    person = worker.person()
    pid = person["id"]
    start = (today_local() - timedelta(days=30)).isoformat()
    tag = worker.ok(worker.post(f"/persons/{pid}/tags", {"tag": "unemployed",
                                                         "start_date": start}), 201)
    assert (tag["start_date"], tag["end_date"], tag["kind"]) == (start, None, "care")
    # tagging again while the tag is current changes nothing
    again = worker.ok(worker.post(f"/persons/{pid}/tags", {"tag": "unemployed"}), 201)
    assert again["id"] == tag["id"]
    assert [p["id"] for p in worker.ok(worker.get("/persons?tag=unemployed"))] == [pid]
    # an end before the start, or in the future, is refused
    before = (today_local() - timedelta(days=31)).isoformat()
    response = worker.post(f"/persons/{pid}/tags/{tag['id']}/end", {"end_date": before})
    assert "end_date" in assert_error_shape(response, 422)["errors"]["json"]
    tomorrow = (today_local() + timedelta(days=2)).isoformat()
    response = worker.post(f"/persons/{pid}/tags/{tag['id']}/end", {"end_date": tomorrow})
    assert "end_date" in assert_error_shape(response, 422)["errors"]["json"]
    response = worker.post(f"/persons/{pid}/tags", {"tag": "disabled", "start_date": tomorrow})
    assert "start_date" in assert_error_shape(response, 422)["errors"]["json"]
    ended = worker.ok(worker.post(f"/persons/{pid}/tags/{tag['id']}/end", {}))
    assert ended["end_date"] == today_local().isoformat()
    # an ended tag is kept (with its period) but no longer current
    assert worker.ok(worker.get("/persons?tag=unemployed")) == []
    tags = worker.ok(worker.get(f"/persons/{pid}"))["tags"]
    assert [(t["tag"], t["start_date"], t["end_date"]) for t in tags] == [
        ("unemployed", start, today_local().isoformat())]
    # and the group can start again later
    renewed = worker.ok(worker.post(f"/persons/{pid}/tags", {"tag": "unemployed"}), 201)
    assert renewed["id"] != tag["id"]
    history = worker.ok(worker.get(f"/persons/{pid}/history"))
    assert [h["action"] for h in history] == ["person_created", "person_tag_added",
                                              "person_tag_ended", "person_tag_added"]


# --- history -------------------------------------------------------------------------------


def test_history_shows_who_when_which_fields_and_values_without_personal_data(api, worker):
    person = worker.person(name="王秀英", id_number=ID_MALE_2023, phone=PHONE)
    chief = api("grid_chief", G111)
    pid = person["id"]
    chief.ok(chief.patch(f"/persons/{pid}", {"name": "王秀瑛", "phone": "13900001111",
                                             "version": 1}))
    worker.ok(worker.patch(f"/persons/{pid}", {"id_number": ID_FEMALE_1988, "version": 2}))
    worker.ok(worker.post(f"/persons/{pid}/end", {"status": "deceased", "version": 3}))
    response = worker.get(f"/persons/{pid}/history")
    history = worker.ok(response)
    assert [(h["action"], h["actor_id"]) for h in history] == [
        ("person_created", worker.user.id), ("person_updated", chief.user.id),
        ("person_updated", worker.user.id), ("person_updated", worker.user.id)]
    assert all(h["at"].endswith("+00:00") for h in history)
    created = history[0]["changes"]
    assert created["name"] == "王秀英"
    assert created["id_number"] == "(changed)" and created["phone"] == "(changed)"
    assert history[1]["changes"] == {"name": ["王秀英", "王秀瑛"],
                                     "phone": ["(changed)", "(changed)"]}
    assert history[2]["changes"] == {"id_number": ["(changed)", "(changed)"],
                                     "sex": ["M", "F"],
                                     "birth_date": ["(changed)", "(changed)"]}
    assert history[3]["changes"]["status"] == ["present", "deceased"]
    text = response.get_data(as_text=True)
    for secret in (ID_MALE_2023, ID_FEMALE_1988, PHONE, "13900001111"):
        assert secret not in text

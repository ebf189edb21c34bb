"""Every unmasked read states a purpose: a code from the short list (核实身份, 走访联系,
案件办理, 应急处置, 其他) and a text of at least 4 characters once trimmed; the auditor
filters by code; refused reads (no permission, out of scope) are in the audit trail too."""

from __future__ import annotations

import pytest

from tests.conftest import assert_error_shape
from tests.fixtures.areas import G112, S1
from tests.fixtures.http import audit_rows
from tests.fixtures.registry import ID_MALE_2023

PHONE = "13812345678"


def _query(code: str | None, text: str | None) -> str:
    parts = [f"purpose_code={code}"] if code is not None else []
    parts += [f"purpose={text}"] if text is not None else []
    return "?" + "&".join(parts)


@pytest.mark.parametrize(("code", "text", "field"), [
    ("verify_identity", "%20%20", "purpose"),  # blank
    ("verify_identity", "%20%20ok%20%20", "purpose"),  # too short once trimmed
    (None, "核对低保申请人身份", "purpose_code"),  # no code
    ("curiosity", "核对低保申请人身份", "purpose_code"),  # not on the list
    ("other", None, "purpose"),  # 其他 needs its 说明
])
def test_a_reveal_needs_a_code_and_a_real_purpose(worker, db_session, code, text, field):
    person = worker.person(id_number=ID_MALE_2023, phone=PHONE)
    for url in (f"/persons/{person['id']}/pii{_query(code, text)}",
                f"/persons/{person['id']}/profile{_query(code, text)}&reveal=true"):
        body = assert_error_shape(worker.get(url), 422)
        assert field in body["errors"]["query"], body
    assert audit_rows(db_session, action="person_pii_read") == []


def test_the_purpose_is_trimmed_and_its_code_kept_for_the_auditor(api, worker, db_session):
    person = worker.person(id_number=ID_MALE_2023, phone=PHONE)
    pid = person["id"]
    padded = _query("verify_identity", "%20核对低保申请人身份%20")
    worker.ok(worker.get(f"/persons/{pid}/pii{padded}"))
    worker.ok(worker.get(
        f"/persons/{pid}/profile{_query('other', '上级督查抽查台账')}&reveal=true"))
    rows = audit_rows(db_session, action="person_pii_read")
    assert [(r.purpose_code, r.purpose) for r in rows] == [
        ("verify_identity", "核对低保申请人身份"), ("other", "上级督查抽查台账")]
    auditor = api("auditor")
    trail = auditor.ok(auditor.get("/audit?purpose_code=other"))
    assert [(e["action"], e["purpose_code"], e["purpose"]) for e in trail] == [
        ("person_pii_read", "other", "上级督查抽查台账")]
    assert_error_shape(auditor.get("/audit?purpose_code=nosy"), 422)


def test_refused_reveals_are_audited(api, worker, db_session):
    person = worker.person(id_number=ID_MALE_2023, phone=PHONE)
    pid = person["id"]
    why = _query("verify_identity", "核对低保申请人身份")
    dispatcher = api("street_dispatcher", S1)  # sees the person, may not unmask
    other = api("grid_worker", G112)  # may unmask, not this grid's person
    assert_error_shape(dispatcher.get(f"/persons/{pid}/pii{why}"), 403)
    assert_error_shape(dispatcher.get(f"/persons/{pid}/profile{why}&reveal=true"), 403)
    assert_error_shape(other.get(f"/persons/{pid}/pii{why}"), 404)
    rows = audit_rows(db_session, action="person_pii_read_refused")
    assert [(r.actor_id, r.object_id, r.purpose_code, r.changes["status"]) for r in rows] == [
        (dispatcher.user.id, str(pid), "verify_identity", 403),
        (dispatcher.user.id, str(pid), "verify_identity", 403),
        (other.user.id, str(pid), "verify_identity", 404)]
    assert audit_rows(db_session, action="person_pii_read") == []
    # refusals are reads, not changes: not in the record's history
    history = worker.ok(worker.get(f"/persons/{pid}/history"))
    assert [h["action"] for h in history] == ["person_created"]

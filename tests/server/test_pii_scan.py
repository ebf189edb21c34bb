"""The personal-data scan itself (tests/pii_scan.py): it sees the suite's responses, and it
catches each kind of leak it is there for."""

from __future__ import annotations

import io

import pytest
from flask import Response, g, jsonify
from openpyxl import Workbook

from server import db
from server.auth.actor import Actor
from server.auth.permissions import permissions_for
from tests import pii_scan
from tests.conftest import TEST_CONFIG

ID_NUMBER = "110101202311012176"  # valid check character
PHONE = "13812345678"


def test_the_findings():
    assert pii_scan.text_findings(f"x {ID_NUMBER} y") == [f"ID number in clear: {ID_NUMBER}"]
    assert pii_scan.text_findings("110101202311012177") == []  # wrong check: not an ID
    assert pii_scan.text_findings(f'"phone":"{PHONE}"') == [f"phone in clear: {PHONE}"]
    assert pii_scan.text_findings("ab13812345678cd 138123456789") == []  # inside tokens
    assert pii_scan.text_findings("110101********2176") == [
        "ID mask shows more than the region: 110101********2176"]
    assert pii_scan.text_findings("1381***5678") == [
        "phone mask shows more than 7 digits: 1381***5678"]
    assert pii_scan.text_findings("110101************ 138****5678") == []
    beside = {"items": [{"id_number": "110101************", "birth_date": "2023-11-01"}]}
    assert pii_scan.json_findings(beside) == [
        "masked ID number (id_number) beside a birth date (birth_date)"]
    assert pii_scan.json_findings({"id_number": "110101************", "birth_date": None,
                                   "age_band": "0-9"}) == []
    assert pii_scan.body_findings("text/javascript", b"a=1540483477*b") is None
    assert pii_scan.body_findings("application/xml", f"<p>{PHONE}</p>".encode()) == [
        f"phone in clear: {PHONE}"]
    rows = [["姓名", "身份证号", "出生日期"], ["王", "110101************", "2023-11-01"]]
    assert pii_scan.rows_findings(rows) == ["masked ID number beside a birth date (出生日期)"]


@pytest.fixture
def leaky_app(urls, db_session, tmp_path):
    """A second app on the same database with routes that leak, scanned by a Scan of its
    own (the suite's scan stays clean)."""
    from server.app import create_app

    bind = db_session.get_bind()
    application = create_app({**TEST_CONFIG, **urls, "STORAGE_DIR": str(tmp_path)})
    scan = pii_scan.install(application, pii_scan.Scan())

    @application.route("/planted/json")
    def planted_json():
        return jsonify({"caller": {"phone": PHONE}, "person": {
            "id_number": "110101********2176", "birth_date": "2023-11-01"}, "raw": ID_NUMBER})

    @application.route("/planted/xlsx")
    def planted_xlsx():
        book = Workbook()
        book.active.append(["姓名", "身份证号", "出生日期", "联系电话"])
        book.active.append(["王秀英", "110101************", "2023-11-01", PHONE])
        out = io.BytesIO()
        book.save(out)
        return Response(out.getvalue(), mimetype=pii_scan.XLSX)

    @application.route("/planted/entitled")
    def planted_entitled():
        roles = frozenset({"grid_worker"})  # person:read_pii: clear data is theirs to see
        g.actor = Actor(user_id=1, roles=roles, permissions=permissions_for(roles))
        return jsonify({"phone": PHONE})

    db.SessionFactory.configure(bind=bind, join_transaction_mode="create_savepoint")
    return application, scan


def test_it_catches_planted_leaks_and_names_the_endpoint(leaky_app):
    application, scan = leaky_app
    client = application.test_client()
    for url in ("/planted/json", "/planted/xlsx", "/planted/entitled"):
        assert client.get(url).status_code == 200
    assert scan.seen == 2 and scan.exports == 1
    text = "\n".join(scan.violations)
    assert f"GET /planted/json (planted_json, anonymous): phone in clear: {PHONE}" in text
    assert f"ID number in clear: {ID_NUMBER}" in text
    assert "ID mask shows more than the region: 110101********2176" in text
    assert "masked ID number (id_number) beside a birth date (birth_date)" in text
    assert "GET /planted/xlsx (planted_xlsx, anonymous): masked ID number beside a birth " \
           "date (出生日期)" in text
    assert f"GET /planted/xlsx (planted_xlsx, anonymous): phone in clear: {PHONE}" in text
    assert "/planted/entitled" not in text


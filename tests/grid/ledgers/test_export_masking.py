"""The ledger export follows the masking rule for an exporter without person:read_pii: 年龄段
where 出生日期 was (no role has registry:export without it today; the test grants it, so
that the export cannot become the leak the day one does), and the personal-data scan reads
the file."""

from __future__ import annotations

from server.auth import permissions
from tests.conftest import today_local
from tests.fixtures.areas import G111, S1
from tests.fixtures.http import at
from tests.fixtures.ledgers import id_number
from tests.grid.ledgers.test_export import sheet_rows


def test_an_exporter_without_read_pii_gets_age_bands(api, staff, monkeypatch,
                                                     personal_data_scan):
    worker = api("grid_worker", G111)
    number = id_number(21, "19660315")
    worker.person(name="王建国", id_number=number, phone="13812345678", location=at(G111))
    role = "street_dispatcher"
    monkeypatch.setitem(permissions.ROLE_PERMISSIONS, role,
                        permissions.ROLE_PERMISSIONS[role] | {"registry:export"})
    dispatcher = api(role, S1)
    exports = personal_data_scan.exports
    [row] = sheet_rows(dispatcher.get("/ledgers/export?kind=persons"))
    assert personal_data_scan.exports == exports + 1  # the scan read the file
    age = today_local().year - 1966
    assert row["年龄段"] == f"{age // 10 * 10}-{age // 10 * 10 + 9}" and "出生日期" not in row
    assert (row["身份证号"], row["联系电话"]) == (number[:6] + "*" * 12, "138****5678")
    # who may read personal data keeps the birth date
    [row] = sheet_rows(staff.get("/ledgers/export?kind=persons"))
    assert row["出生日期"] is not None and "年龄段" not in row

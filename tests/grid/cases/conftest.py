"""Case fixtures: the area tree of tests/grid/areas, a department (城管) with a head and a
handler, a sub-category with known limits, and an Api per role.

    street S1 (西街道) → grids G111, G112, G121, G122;  street S2 (东街道) → G211, G212
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa

from grid.areas.models import Department, DepartmentMember
from grid.cases.models import Case, CaseCategory
from tests.grid.areas.conftest import S1, S2, D  # noqa: F401
from tests.grid.registry import conftest as registry_conftest
from tests.grid.registry.conftest import Api, at, audit_rows, new_uuid, total  # noqa: F401

# The area tree, its members and the Api helper, as the register tests use them.
tree = registry_conftest.tree
member = registry_conftest.member
make_user = registry_conftest.make_user
api = registry_conftest.api



@pytest.fixture
def department(db_session, tree) -> Department:
    dept = Department(code="T-CG", name="测试城管局", kind="城管", service_area_id=tree[D])
    db_session.add(dept)
    db_session.commit()
    return dept


@pytest.fixture
def category(db_session, department) -> CaseCategory:
    """暴露垃圾-like: 1 working day to handle, a result photo required, 50 m duplicates."""
    parent = db_session.scalar(sa.select(CaseCategory.id).where(CaseCategory.code == "01"))
    cat = CaseCategory(code="T01", parent_id=parent, name="测试垃圾", priority=3,
                       default_department_id=department.id,
                       time_limits={"handle": {"amount": 1, "unit": "working_days"}},
                       result_photo_required=False, duplicate_radius_m=50, duplicate_days=3,
                       attributes=[{"code": "size", "datatype": "singlevaluelist",
                                    "required": True, "description": "规模", "order": 1,
                                    "values": [{"key": "small", "name": "少量"},
                                               {"key": "large", "name": "大量"}]},
                                   {"code": "bags", "datatype": "number", "required": False,
                                    "description": "袋数", "order": 2, "values": []}])
    db_session.add(cat)
    db_session.commit()
    return cat


@dataclass
class People:
    dispatcher: Api
    dispatcher2: Api
    worker: Api
    worker2: Api
    resident: Api
    resident2: Api
    handler: Api
    head: Api


@pytest.fixture
def people(api, db_session, department) -> People:
    handler, head = api("department_handler"), api("department_handler")
    for who, is_head in ((handler, False), (head, True)):
        db_session.add(DepartmentMember(department_id=department.id, user_id=who.user.id,
                                        is_head=is_head))
    db_session.commit()
    from tests.grid.areas.conftest import C11, G111, G211

    return People(dispatcher=api("street_dispatcher", S1), dispatcher2=api("street_dispatcher", S2),
                  worker=api("grid_worker", G111), worker2=api("grid_worker", G211),
                  resident=api("resident", C11), resident2=api("resident", C11),
                  handler=handler, head=head)


def report(who: Api, category, code: str = "330183001001001", **fields) -> dict:
    body = {"category_id": category.id, "location": at(code), "description": "路边有暴露垃圾",
            "address": "江滨路1号", "attributes": {"size": "small"}, **fields}
    return who.ok(who.post("/cases", body), 201)


def act(who: Api, case: dict, action: str, status: int = 200, **fields):
    """POST an action with the case's version; returns the new case (or the error body)."""
    response = who.post(f"/cases/{case['id']}/actions/{action}",
                        {"version": case["version"], **fields})
    assert response.status_code == status, (action, response.status_code, response.get_json())
    return response.get_json()


def set_case_times(db_session, case_id: int, **times) -> None:
    """Move a case's clock (tests of the sweep and the light)."""
    db_session.execute(sa.update(Case).where(Case.id == case_id).values(**times))
    db_session.commit()


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


def photo(who: Api, seed: int = 0) -> int:
    """Upload a small JPEG as `who`; returns the attachment id (for photo_ids)."""
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (64, 48), (seed % 256, 120, 60)).save(buffer, "JPEG")
    response = who.client.post("/attachments", data={"file": (io.BytesIO(buffer.getvalue()),
                                                              "p.jpg")},
                               headers=who.headers, content_type="multipart/form-data")
    assert response.status_code == 201, response.get_json()
    return response.get_json()["id"]


# --- helpers of the deadline, calendar, queue, statistics and hotline tests ---------------


def local(text: str) -> datetime:
    """A wall-clock time in Asia/Shanghai ("2026-03-06 16:00") as an aware UTC instant."""
    from zoneinfo import ZoneInfo

    return datetime.fromisoformat(text).replace(tzinfo=ZoneInfo("Asia/Shanghai")) \
        .astimezone(UTC)


def start_clock(db_session, case_id: int, at: datetime, state: str | None = None) -> Case:
    """Start the clock of the case's current stage (or of `state`'s stage) at `at`, as the
    service does when a stage begins; returns the case as stored."""
    from grid.cases import clock

    case = db_session.get(Case, case_id, populate_existing=True)
    if state is not None:
        case.state = state
    clock._start_stage(db_session, case, at)
    db_session.commit()
    return db_session.get(Case, case_id, populate_existing=True)


def stored(db_session, case_id: int) -> Case:
    """The case as the database has it now."""
    return db_session.get(Case, case_id, populate_existing=True)


def in_progress(p: People, category, department, code: str = "330183001001001") -> dict:
    """A case reported in grid `code`, accepted and dispatched to `department` by its
    street's dispatcher, and signed by the department's handler."""
    dispatcher = p.dispatcher2 if code.startswith("330183002") else p.dispatcher
    case = report(p.worker, category, code)
    case = act(dispatcher, dispatcher.ok(dispatcher.get(f"/cases/{case['id']}")), "accept")
    case = act(dispatcher, case, "dispatch", department_id=department.id)
    return act(p.handler, case, "sign")

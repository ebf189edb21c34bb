"""A client generated from /api/openapi.json drives a day's first steps: if the document
lies, the generated client breaks.

`openapi-python-client` (pinned in requirements-dev.txt) generates a package from the
document as the app serves it, at test time, in a fresh subprocess into tmp_path (no cache);
the app runs on a real socket (werkzeug's server in a thread, 127.0.0.1, a free port), and
the generated code alone talks to it: a grid worker reports a case (上报), the street's
dispatcher reads it, accepts it (受理) and dispatches it (派遣) to a department, with the
version as the If-Match header the document declares. No hand-written HTTP. The client is
built with `raise_on_unexpected_status`, so a status the document does not list fails, and
its models parse every answer, so a field the document types wrongly fails too.
"""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fixtures.http import at
from tests.fixtures.users import make_user  # noqa: F401 - fixture (tree, people…: tests/fixtures)

PACKAGE = "grid_client"


@pytest.fixture
def generated(app, tmp_path: Path, monkeypatch):
    """The generated package, imported from tmp_path."""
    document = tmp_path / "openapi.json"
    document.write_text(json.dumps(app.test_client().get("/api/openapi.json").get_json()))
    generator = Path(sys.executable).with_name("openapi-python-client")
    done = subprocess.run(
        [str(generator), "generate", "--path", str(document), "--meta", "none",
         "--output-path", str(tmp_path / PACKAGE)],
        capture_output=True, text=True, timeout=240, cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    monkeypatch.syspath_prepend(str(tmp_path))
    for name in [m for m in sys.modules if m == PACKAGE or m.startswith(PACKAGE + ".")]:
        del sys.modules[name]  # another test's package of the same name
    return importlib.import_module(PACKAGE)


def _module(package, dotted: str):
    return importlib.import_module(f"{package.__name__}.{dotted}")


def test_a_generated_client_reports_accepts_and_dispatches(generated, base_url, people,
                                                           category, department):
    client_mod = _module(generated, "client")
    models = _module(generated, "models")
    post_cases = _module(generated, "api.cases.post_cases")
    get_case = _module(generated, "api.cases.get_cases_case_id")
    act = _module(generated, "api.cases.post_cases_case_id_actions_action")

    def as_(who) -> object:
        token = who.headers["Authorization"].removeprefix("Bearer ")
        return client_mod.AuthenticatedClient(base_url=base_url, token=token,
                                              raise_on_unexpected_status=True)

    worker, dispatcher = as_(people.worker), as_(people.dispatcher)
    where = at("330183001001001")
    body = models.CaseCreate(
        category_id=category.id,
        location=models.Point.from_dict(where),
        description="路边有暴露垃圾",
        address="江滨路1号",
        attributes=models.CaseCreateAttributes.from_dict({"size": "small"}),
    )
    reported = post_cases.sync_detailed(client=worker, body=body)
    assert reported.status_code == 201, reported.content
    case = reported.parsed
    assert isinstance(case, models.ReportedCase) and case.state == "reported"
    assert (case.location.lon, case.location.lat) == pytest.approx((where["lon"], where["lat"]))

    read = get_case.sync_detailed(case.id, client=dispatcher)
    assert read.status_code == 200 and isinstance(read.parsed, models.CaseAnswer)
    assert "accept" in read.parsed.actions

    accepted = act.sync_detailed(case.id, "accept", client=dispatcher, body=models.Action(),
                                 if_match=read.headers["ETag"])
    assert accepted.status_code == 200, accepted.content
    assert accepted.parsed.state == "accepted"

    dispatched = act.sync_detailed(case.id, "dispatch", client=dispatcher,
                                   body=models.Action(department_id=department.id),
                                   if_match=accepted.headers["ETag"])
    assert dispatched.status_code == 200, dispatched.content
    assert dispatched.parsed.state == "dispatched"
    assert dispatched.parsed.department_id == department.id

    # A stale version: the documented 412, parsed as the one error shape.
    stale = act.sync_detailed(case.id, "accept", client=dispatcher, body=models.Action(),
                              if_match=read.headers["ETag"])
    assert stale.status_code == 412 and isinstance(stale.parsed, models.Error)
    assert stale.parsed.code == 412

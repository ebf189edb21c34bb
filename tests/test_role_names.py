"""Role names are written in one place, server/auth/permissions.py (ARCHITECTURE.md §3):
elsewhere code asks its constants and predicates (and the action tables compose named
predicates), so that who may do what is read — and changed — in one file."""

from __future__ import annotations

import ast
from pathlib import Path

from server.auth.permissions import ROLES

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("server", "grid", "notifications", "geo", "console")
# grid/demo.py: the demo accounts' usernames (admin, auditor, resident) read like roles;
# their roles come from permissions' constants.
ALLOWED = {Path("server/auth/permissions.py"), Path("grid/demo.py")}


def _role_literals(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return [(node.lineno, node.value) for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and node.value in ROLES]


def test_role_names_appear_only_in_the_permission_table():
    found = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            relative = path.relative_to(ROOT)
            if relative in ALLOWED:
                continue
            found += [f"{relative}:{line}: {value!r}" for line, value in _role_literals(path)
                      if not (relative == Path("grid/registry/models.py")
                              and value == "grid_worker")]  # a record's source code
    assert not found, "role names outside server/auth/permissions.py:\n" + "\n".join(found)


def test_the_checker_sees_a_role_name(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text('if "street_dispatcher" in actor.roles:\n    pass\n', encoding="utf-8")
    assert _role_literals(sample) == [(1, "street_dispatcher")]

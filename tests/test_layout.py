"""The layout a newcomer can hold in their head (ARCHITECTURE.md §1), checked with the
standard library: module-level imports between the app's packages form no cycle, and no
module grows past the size at which it should be split along the domain's words."""

from __future__ import annotations

import ast
import graphlib
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("server", "grid", "geo", "notifications", "console")
MAX_LINES = 600  # ~500 is the aim; past 600 a module needs its reason in its docstring
MAX_FUNCTION_LINES = 60
REASON = "Longer than"  # the docstring's sentence that says why a module stays long


def _modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
            found[name.removesuffix(".__init__")] = path
    return found


def _imports(tree: ast.Module, modules: dict[str, Path]) -> set[str]:
    """The app modules a module imports when it is loaded (not inside functions)."""
    found = set()
    for node in tree.body:
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            for alias in node.names:  # `from grid.cases import intake` names a module
                child = f"{node.module}.{alias.name}"
                found.add(child if child in modules else node.module)
    return {name for name in found if name in modules}


def test_module_imports_form_no_cycle():
    modules = _modules()
    graph = {name: _imports(ast.parse(path.read_text()), modules) - {name}
             for name, path in modules.items()}
    assert len(graph) > 100  # the check saw the app
    try:
        graphlib.TopologicalSorter(graph).prepare()
    except graphlib.CycleError as exc:
        raise AssertionError(f"import cycle: {' → '.join(exc.args[1])}") from None


def test_the_platform_does_not_import_the_domain_at_load():
    """server/, geo/ and notifications/ are handed what they need from grid/ at wiring."""
    modules = _modules()
    wrong = sorted((name, dep) for name, path in modules.items()
                   if not name.startswith("grid")
                   for dep in _imports(ast.parse(path.read_text()), modules)
                   if dep.startswith("grid"))
    assert not wrong, wrong


def test_the_platform_never_imports_the_domain():
    """Not even inside a function: what server/ and notifications/ need from grid/ is
    handed to them by a package's wiring.py."""
    wrong = []
    for name, path in _modules().items():
        if name.startswith(("server", "geo", "notifications")):
            for node in ast.walk(ast.parse(path.read_text())):
                imported = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                            [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
                wrong += [f"{name}:{node.lineno}" for m in imported if m.split(".")[0] == "grid"]
    assert not wrong, wrong


def test_no_module_is_too_long_without_a_reason():
    long = []
    for name, path in _modules().items():
        lines = len(path.read_text().splitlines())
        doc = ast.get_docstring(ast.parse(path.read_text())) or ""
        if lines > MAX_LINES and REASON not in doc:
            long.append(f"{name} ({lines} lines)")
    assert not long, f"split along the domain's words, or say why in the docstring: {long}"


def test_no_function_is_too_long_without_a_reason():
    """~60 lines is a screen: past it a function is split into steps named by the domain,
    or its docstring says why not (a table, a script), with the same sentence as modules."""
    long = []
    for name, path in _modules().items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_FUNCTION_LINES and REASON not in (ast.get_docstring(node) or ""):
                    long.append(f"{name}.{node.name} ({lines} lines)")
    assert not long, f"split into steps, or say why in the docstring: {long}"


def _conftest_imports(tree: ast.Module) -> list[str]:
    """`import tests.<x>.conftest`, `from tests.<x>.conftest import …`, `from tests.<x> import
    conftest` anywhere in a module (the top-level tests/conftest.py is not a package's)."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [a.name for a in node.names
                      if a.name.startswith("tests.") and a.name.endswith(".conftest")
                      and a.name != "tests.conftest"]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module.startswith("tests.") and node.module.endswith(".conftest") \
                    and node.module != "tests.conftest":
                found.append(node.module)
            elif node.module.startswith("tests.") and any(a.name == "conftest"
                                                          for a in node.names):
                found.append(f"{node.module}.conftest")
    return found


def test_test_packages_do_not_import_each_others_conftest():
    """Fixtures shared between test packages live in tests/fixtures/ (registered once in
    tests/conftest.py); a package's tests may import their own conftest, no other's."""
    wrong = []
    for path in sorted((ROOT / "tests").rglob("*.py")):
        package = ".".join(path.parent.relative_to(ROOT).parts)
        for module in _conftest_imports(ast.parse(path.read_text())):
            if module != f"{package}.conftest":
                wrong.append((str(path.relative_to(ROOT)), module))
    assert not wrong, wrong


# The registries the platform and the domain packages fill at wiring (server/modules.py).
_REGISTRIES = """
import json
from grid.areas import service as areas
from grid.maps import service as maps, tiles
from grid.profiles import service as profiles
from notifications import service as notices
from server import cli, jobs
from server.auth import service as accounts
from server.auth.actor import actor_enrichers
from server.storage import service as storage

def sizes():
    return {"periodic_tasks": len(cli.periodic_tasks), "job handlers": len(jobs.handlers),
            "actor_enrichers": len(actor_enrichers),
            "user_scope_rules": len(accounts.user_scope_rules),
            "object_access": len(storage.object_access),
            "attachment_filters": len(storage.attachment_filters),
            "notice templates": len(notices.TEMPLATES), "card_counters": len(areas.card_counters),
            "tile layers": len(tiles.layers), "map collections": len(maps.collections),
            "profile sections": sum(map(len, profiles.profile_sections.values()))}
"""


def test_importing_a_module_registers_nothing():
    """Every module of the app imported, without create_app: the registries hold only their
    owners' own values (wiring happens in one place, server/modules.py)."""
    names = sorted(n for n in _modules() if not n.endswith("__main__"))
    script = _REGISTRIES + f"""
before = sizes()
import importlib
for name in {names!r}:
    importlib.import_module(name)
print(json.dumps([before, sizes()]))
"""
    out = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True,
                         text=True, check=True).stdout
    before, after = json.loads(out.splitlines()[-1])
    assert after == before
    assert before["periodic_tasks"] == before["notice templates"] == 0
    assert before["object_access"] == before["actor_enrichers"] == 0


def test_wiring_fills_the_registries():
    """The same registries after create_app: the check above looks at something real."""
    script = _REGISTRIES + """
from server.app import create_app
create_app()  # builds the engine, connects to nothing
print(json.dumps(sizes()))
"""
    out = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True,
                         text=True, check=True).stdout
    wired = json.loads(out.splitlines()[-1])
    assert all(wired.values()), wired


def test_only_wiring_files_write_into_registries():
    """No module-level statement outside a `wiring.py` calls `register*` or writes into an
    attribute of another module (`storage.object_access[k] = …`, `x.tasks.append(…)`)."""
    wrong = []
    for name, path in _modules().items():
        if path.name == "wiring.py":
            continue
        for node in ast.parse(path.read_text()).body:
            targets = node.targets if isinstance(node, ast.Assign) else []
            call = node.value if isinstance(node, ast.Expr) else None
            if any(isinstance(t, ast.Subscript) and isinstance(t.value, ast.Attribute)
                   for t in targets):
                wrong.append(f"{name}:{node.lineno}")
            if isinstance(call, ast.Call):
                func = call.func
                called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
                into_other_module = (isinstance(func, ast.Attribute) and called in MUTATORS
                                     and isinstance(func.value, ast.Attribute))
                if called.startswith("register") or into_other_module:
                    wrong.append(f"{name}:{node.lineno}")
    assert not wrong, f"move these to the package's wiring.py: {wrong}"


MUTATORS = {"append", "extend", "update", "setdefault", "insert", "add"}

"""The layout a newcomer can hold in their head (ARCHITECTURE.md §1), checked with the
standard library: module-level imports between the app's packages form no cycle, and no
module grows past the size at which it should be split along the domain's words."""

from __future__ import annotations

import ast
import graphlib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("server", "grid", "geo", "notifications")
MAX_LINES = 600  # ~500 is the aim; past 600 a module needs its reason in its docstring
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


def test_no_module_is_too_long_without_a_reason():
    long = []
    for name, path in _modules().items():
        lines = len(path.read_text().splitlines())
        doc = ast.get_docstring(ast.parse(path.read_text())) or ""
        if lines > MAX_LINES and REASON not in doc:
            long.append(f"{name} ({lines} lines)")
    assert not long, f"split along the domain's words, or say why in the docstring: {long}"


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

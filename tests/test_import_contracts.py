"""Imports run one way (DESIGN.md): the contracts in pyproject.toml's [tool.importlinter] hold.

import-linter forbids modules, not names, and the tasks keep their private helpers inside public modules, so the
rule "callbacks and benchmarks use public names only" is checked here by reading their imports with ``ast``.
"""

import ast
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_import_contracts_are_kept():
    lint = Path(sys.executable).with_name("lint-imports")
    run = subprocess.run([str(lint)], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    assert "0 broken" in run.stdout and "5 kept" in run.stdout


# ------------------------------------------------- public API only: callbacks and benchmarks take no private helper
#: Private modules that package code outside their layer may use: the shared bottom layer's lazy importer.
SHARED_PRIVATE_MODULES = frozenset({"multimodal_fer._lazy"})


def _is_private(part: str) -> bool:
    return part.startswith("_") and not (part.startswith("__") and part.endswith("__"))


def _module_name(path: Path) -> str | None:
    """Dotted name of a file inside the package (None for files outside it, e.g. benchmarks/)."""
    relative = path.resolve().relative_to(REPO)
    if relative.parts[0] != "multimodal_fer":
        return None
    parts = list(relative.with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _absolute(node: ast.ImportFrom, module: str | None, is_package: bool) -> str | None:
    """The module a ``from ... import`` reads, with relative imports resolved against ``module``."""
    if not node.level:
        return node.module
    if module is None:
        return None
    package = module.split(".") if is_package else module.split(".")[:-1]
    base = package[: len(package) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def private_imports(
    source: str,
    module: str | None = None,
    is_package: bool = False,
    own_package: str | None = None,
    allowed_modules: frozenset[str] = frozenset(),
) -> list[str]:
    """Private names a file takes from ``multimodal_fer``, as ``"line N: dotted.name"``.

    Counts ``from multimodal_fer.x import _y``, imports of private modules (``multimodal_fer._z``, ``x._z``) and
    ``_attribute`` reads on anything bound by a ``multimodal_fer`` import (``cli._helper``). Dunder names are public.

    Args:
        source: the file's text.
        module: its dotted name when it lies in the package (resolves relative imports).
        is_package: whether the file is a package's ``__init__.py``.
        own_package: names inside this package are the file's own and may be private.
        allowed_modules: private modules whose public names may be imported.
    """
    found: set[tuple[int, str]] = set()
    bound: set[str] = set()

    def check(line: int, target: str) -> None:
        parts = target.split(".")
        if parts[0] != "multimodal_fer":
            return
        if own_package and (target == own_package or target.startswith(own_package + ".")):
            return
        if not any(_is_private(p) for p in parts[1:]):
            return
        module_path = ".".join(parts[:-1])
        if module_path in allowed_modules and not _is_private(parts[-1]):
            return
        found.add((line, target))

    tree = ast.parse(source)
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            target = _absolute(node, module, is_package)
            if target is None or target.split(".")[0] != "multimodal_fer":
                continue
            for alias in node.names:
                bound.add(alias.asname or alias.name)
                check(node.lineno, f"{target}.{alias.name}")
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "multimodal_fer":
                    bound.add(alias.asname or "multimodal_fer")
                    check(node.lineno, alias.name)
    inner = {id(node.value) for node in ast.walk(tree) if isinstance(node, ast.Attribute)}
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and id(node) not in inner:  # whole chains only: a.b._c, not a.b
            chain: list[str] = []
            value: ast.expr = node
            while isinstance(value, ast.Attribute):
                chain.append(value.attr)
                value = value.value
            if isinstance(value, ast.Name) and value.id in bound and any(_is_private(a) for a in chain):
                found.add((node.lineno, f"{value.id}.{'.'.join(reversed(chain))}"))
    return [f"line {line}: {name}" for line, name in sorted(found)]


def test_callbacks_take_no_private_helpers_from_tasks_or_other_layers():
    files = sorted((REPO / "multimodal_fer" / "callbacks").glob("*.py"))
    assert files
    broken = {}
    for path in files:
        module = _module_name(path)
        found = private_imports(
            path.read_text(),
            module=module,
            is_package=path.name == "__init__.py",
            own_package="multimodal_fer.callbacks",
            allowed_modules=SHARED_PRIVATE_MODULES,
        )
        if found:
            broken[str(path.relative_to(REPO))] = found
    assert not broken, f"callbacks import private helpers (make them public where they live): {broken}"


def test_benchmarks_use_the_public_api_only():
    files = sorted((REPO / "benchmarks").glob("*.py"))
    assert files
    broken = {str(p.relative_to(REPO)): found for p in files if (found := private_imports(p.read_text()))}
    assert not broken, f"benchmarks import private names of multimodal_fer: {broken}"


def test_private_import_scan_finds_every_form():
    source = """
import multimodal_fer._lazy
import multimodal_fer.cli as cli
from multimodal_fer.tasks.multitask_fer import _helper, MultitaskFERTask
from multimodal_fer import __version__, tasks
from .base import _own_helper
from ..tasks import _sibling
cli._private_verb()
tasks.multitask_fer._other()
MultitaskFERTask.__name__
cli._parser.add_argument
"""
    found = private_imports(source, module="multimodal_fer.callbacks.grid", own_package="multimodal_fer.callbacks")
    assert found == [
        "line 2: multimodal_fer._lazy",
        "line 4: multimodal_fer.tasks.multitask_fer._helper",
        "line 7: multimodal_fer.tasks._sibling",
        "line 8: cli._private_verb",
        "line 9: tasks.multitask_fer._other",
        "line 11: cli._parser.add_argument",
    ]
    allowed = private_imports("from multimodal_fer._lazy import require", allowed_modules=SHARED_PRIVATE_MODULES)
    assert allowed == []
    assert private_imports("from multimodal_fer._lazy import _cache", allowed_modules=SHARED_PRIVATE_MODULES) == [
        "line 1: multimodal_fer._lazy._cache"
    ]

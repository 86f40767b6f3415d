"""The layout's rules, read from the source: no import cycle, MLflow only in the jobs and tracking, short functions."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "medadv"
MLFLOW_ALLOWED = ("medadv.jobs", "medadv.tracking")
MAX_FUNCTION_LINES = 60


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(path): ast.parse(path.read_text(), str(path)) for path in sorted(PACKAGE.rglob("*.py"))}


def _is_type_checking(node: ast.If) -> bool:
    return isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING"


def module_imports(tree: ast.Module) -> list[str]:
    """The modules imported when the module itself is imported (not those under `if TYPE_CHECKING:` or inside
    functions, which run later)."""
    found = []
    pending: list[ast.stmt] = list(tree.body)
    while pending:
        node = pending.pop()
        if isinstance(node, ast.If) and not _is_type_checking(node):
            pending += node.body + node.orelse
        elif isinstance(node, ast.Try):
            pending += node.body + node.orelse + node.finalbody
        elif isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found += [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
    return found


def medadv_edges() -> dict[str, set[str]]:
    return {
        name: {target for target in module_imports(tree) if target in MODULES and target != name}
        for name, tree in MODULES.items()
    }


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a path a -> b -> ... -> a, or None (depth-first search, colouring visited nodes)."""
    state: dict[str, str] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = "open"
        stack.append(node)
        for target in sorted(edges[node]):
            if state.get(target) == "open":
                return [*stack[stack.index(target) :], target]
            if target not in state and (cycle := visit(target)):
                return cycle
        state[node] = "done"
        stack.pop()
        return None

    for node in sorted(edges):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_the_cycle_finder_finds_a_cycle_and_only_a_cycle() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


def test_medadv_has_no_import_cycle() -> None:
    cycle = find_cycle(medadv_edges())
    assert cycle is None, " -> ".join(cycle or [])


def imported_anywhere(tree: ast.Module) -> set[str]:
    """The top-level packages a module imports anywhere, function bodies included."""
    names = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    names |= {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}
    return {name.split(".")[0] for name in names}


def test_mlflow_is_imported_only_by_the_jobs_and_tracking() -> None:
    offenders = [
        name
        for name, tree in MODULES.items()
        if "mlflow" in imported_anywhere(tree) and not name.startswith(MLFLOW_ALLOWED)
    ]
    assert offenders == []


@pytest.mark.parametrize("name", sorted(MODULES))
def test_no_function_is_longer_than_60_lines(name: str) -> None:
    long = [
        f"{node.name} ({node.end_lineno - node.lineno + 1} lines)"
        for node in ast.walk(MODULES[name])
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and node.end_lineno is not None
        and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES
    ]
    assert long == []


ARTIFACT_OR_TAG = re.compile(r"(medadv\.[a-z_]+|[\w/]+\.(?:csv|npz|parquet|html|json|png|svg|tex))")


def contract_names(tree: ast.Module) -> set[str]:
    """The artifact file names and medadv tag keys a module spells (string constants, f-string parts included)."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            match = ARTIFACT_OR_TAG.fullmatch(node.value.lstrip("/"))
            if (match and not node.value.startswith("medadv.")) or (match and node.value.count(".") == 1):
                found.add(node.value.lstrip("/"))
    return found


def test_each_artifact_name_and_tag_key_is_spelled_in_one_module() -> None:
    """The contract between jobs lives in one place (medadv/tracking/contract.py); others import its names."""
    spelled: dict[str, list[str]] = {}
    for name, tree in MODULES.items():
        for literal in contract_names(tree):
            spelled.setdefault(literal, []).append(name)
    assert {literal: modules for literal, modules in spelled.items() if len(modules) > 1} == {}

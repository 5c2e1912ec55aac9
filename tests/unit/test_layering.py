"""The package layering, read from the source (every `import`, at any depth):

- `ltr_core` (what the pipeline and serving share) imports neither of them;
- `ltr_serving` never imports the pipeline (`ltr_assets`), so it installs and runs without it;
- `ltr_assets` imports `ltr_serving` only in its command line (`ltr serve` starts the service);
- Dagster is imported only by the wiring (`ltr_assets.definitions`, `ltr_assets.defs`) and by
  `ltr_assets.demo`, which runs the daily job (inside its function: the probe in
  tests/integration/test_dagster_free_imports.py checks that importing it loads no Dagster);
- the subpackages of `ltr_assets` import each other without a cycle.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("ltr_core", "ltr_assets", "ltr_serving")
WIRING = ("ltr_assets.definitions", "ltr_assets.defs")
RUNS_DAGSTER = (*WIRING, "ltr_assets.demo")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> dict[str, Path]:
    return {
        module_name(path): path for package in PACKAGES for path in (ROOT / package).rglob("*.py")
    }


def imported(path: Path) -> Iterator[str]:
    """Every module `path` imports, wherever the import statement sits."""
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module
            yield from (f"{node.module}.{alias.name}" for alias in node.names)


def _within(module: str, prefixes: tuple[str, ...]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in prefixes)


# For each package, the packages of ours it may import.
ALLOWED = {"ltr_core": (), "ltr_serving": ("ltr_core",), "ltr_assets": ("ltr_core", "ltr_serving")}


def violations(package: str) -> list[str]:
    found = []
    for name, path in modules().items():
        if name.split(".")[0] != package:
            continue
        for target in imported(path):
            top = target.split(".")[0]
            if top in PACKAGES and top != package and top not in ALLOWED[package]:
                found.append(f"{name} imports {target}")
    return sorted(set(found))


def test_core_imports_neither_the_pipeline_nor_serving() -> None:
    assert violations("ltr_core") == []


def test_serving_imports_only_core() -> None:
    assert violations("ltr_serving") == []


def test_the_pipeline_imports_serving_only_to_start_it() -> None:
    users = sorted(
        name
        for name, path in modules().items()
        if name.startswith("ltr_assets")
        and any(t.split(".")[0] == "ltr_serving" for t in imported(path))
    )
    assert users == ["ltr_assets.cli", "ltr_assets.launcher"]  # `ltr serve`


def test_dagster_is_imported_only_by_the_wiring() -> None:
    outside = sorted(
        name
        for name, path in modules().items()
        if not _within(name, RUNS_DAGSTER)
        and any(t.split(".")[0].startswith("dagster") for t in imported(path))
    )
    assert outside == []


def subpackage(module: str) -> str | None:
    """`ltr_assets.<sub>` for a module of the pipeline, None for anything else."""
    parts = module.split(".")
    return ".".join(parts[:2]) if parts[0] == "ltr_assets" and len(parts) > 1 else None


def subpackage_graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for name, path in modules().items():
        source = subpackage(name)
        if source is None:
            continue
        graph.setdefault(source, set())
        for target in imported(path):
            sub = subpackage(target)
            if sub is not None and sub != source and sub in {subpackage(m) for m in modules()}:
                graph[source].add(sub)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of `graph` as a path that returns to its start, None when it has none."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt) :] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        state[node] = 2
        path.pop()
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_the_pipelines_subpackages_form_no_cycle() -> None:
    graph = subpackage_graph()
    assert {"ltr_assets.ingest", "ltr_assets.learning", "ltr_assets.gate"} <= set(graph)
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph) or [])


@pytest.mark.parametrize(
    ("graph", "cyclic"),
    [({"a": {"b"}, "b": {"c"}, "c": set()}, False), ({"a": {"b"}, "b": {"c"}, "c": {"a"}}, True)],
)
def test_find_cycle_finds_a_cycle_only_where_there_is_one(
    graph: dict[str, set[str]], cyclic: bool
) -> None:
    assert (find_cycle(graph) is not None) is cyclic

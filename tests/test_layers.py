"""The layers hold, read from the source: lvm/ never imports prefect, tasks/ or flows/; tasks/ never imports
flows/; no project modules import each other in a circle (a function-level import counts too)."""

import ast
from pathlib import Path

from conftest import ROOT

PACKAGES = ("lvm", "tasks", "flows")


def _modules() -> dict[str, Path]:
    out = {}
    for pkg in PACKAGES:
        for f in (ROOT / pkg).rglob("*.py"):
            parts = f.relative_to(ROOT).with_suffix("").parts
            out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = f
    return out


def _imports(path: Path) -> set[str]:
    package = ".".join(path.relative_to(ROOT).parts[:-1])
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package if node.level else ""
            module = ".".join(x for x in (base, node.module or "") if x)
            names |= {module} | {f"{module}.{a.name}" for a in node.names}
    return names


def _graph() -> dict[str, set[str]]:
    mods = _modules()
    return {m: {n for n in _imports(f) if n in mods and n != m} for m, f in mods.items()}


def test_the_library_never_imports_prefect_tasks_or_flows():
    for name, path in _modules().items():
        top = {n.split(".")[0] for n in _imports(path)}
        if name.startswith("lvm"):
            assert not top & {"prefect", "prefect_dask", "tasks", "flows"}, name
        if name.startswith("tasks"):
            assert "flows" not in top, name


def test_no_import_circle():
    graph = _graph()
    state: dict[str, int] = {}  # 1 = on the path, 2 = done

    def visit(m, path):
        state[m] = 1
        for n in graph[m]:
            assert state.get(n) != 1, " -> ".join([*path, m, n])
            if n not in state:
                visit(n, [*path, m])
        state[m] = 2

    for m in graph:
        if m not in state:
            visit(m, [])
    # the reader sees real edges, relative imports included
    assert graph["lvm.train.on_table"] >= {"lvm.evaluation.compare", "lvm.train.trainer"}
    assert "lvm.models.base" in graph["lvm.models.lstm"]

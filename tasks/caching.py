"""Cache policies shared by the tasks: content-addressed, persisted under data/, valid across runs and servers."""

from __future__ import annotations

import ast
import hashlib
import json
from pathlib import Path

from prefect.cache_policies import INPUTS, TASK_SOURCE, CacheKeyFnPolicy
from prefect.filesystems import LocalFileSystem

from lvm.data.dataset import file_hash
from lvm.util.paths import prefect_cache_dir


def _file_content_key(context, parameters: dict) -> str:
    """Parameters named `path` are hashed by file content, the rest by value: a rewritten file with the same
    bytes keeps its cache, an edited one loses it."""
    parts = {}
    for name, value in sorted(parameters.items()):
        if name == "path" and value is not None and Path(value).exists():
            parts[name] = file_hash(value)
        else:
            parts[name] = repr(value)
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


PROJECT_PACKAGES = ("lvm", "tasks", "flows")
_ROOT = Path(__file__).resolve().parents[1]


def code_version(*modules: str) -> str:
    """Content hash of `modules` and of every project module they import, followed transitively (function-level
    imports included). Passed as a task input, it makes the cache follow the library code a task really runs:
    moving a function into a new module, then editing it there, changes the key; no hand-kept list to forget."""
    h = hashlib.sha256()
    for name in sorted(project_imports(*modules)):
        h.update(name.encode() + b"\0" + _module_file(name).read_bytes())
    return h.hexdigest()[:16]


def project_imports(*modules: str) -> set[str]:
    """`modules` and the project modules (lvm, tasks, flows) they import, directly or not, read from the source
    with ast (nothing is imported). A package counts with its __init__."""
    seen: set[str] = set()
    todo = list(modules)
    while todo:
        name = todo.pop()
        if name in seen or _module_file(name) is None:
            continue
        seen.add(name)
        todo.extend(_imports_of(name))
    return seen


def _module_file(name: str) -> Path | None:
    """The source file of a project module, found on disk beside this package (nothing is imported)."""
    if name.split(".")[0] not in PROJECT_PACKAGES:
        return None
    base = _ROOT.joinpath(*name.split("."))
    for f in (base.with_suffix(".py"), base / "__init__.py"):
        if f.is_file():
            return f
    return None


def _imports_of(name: str) -> list[str]:
    path = _module_file(name)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{parent}.{base}" if base else parent
            found.append(base)
            found += [f"{base}.{a.name}" for a in node.names]  # `from pkg import module`
    parents = [".".join(n.split(".")[:i]) for n in found for i in range(1, n.count(".") + 1)]
    return [n for n in found + parents if n.split(".")[0] in PROJECT_PACKAGES and _module_file(n) is not None]


class CacheRecords(LocalFileSystem):
    """The cache records (Prefect's key storage), kept in the data folder. The results they point at are Prefect's,
    under $PREFECT_HOME/storage (Prefect takes only a server-saved block as another place), so a run under another
    Prefect home, or after that storage was cleared, finds records whose results it cannot read. Such a record
    reads as absent: Prefect's `exists` says no and the task recomputes, where reading the result would fail."""

    _block_type_name = "LVM cache records"

    def _checked(self, content: bytes) -> bytes:
        from prefect.settings import get_current_settings

        key = json.loads(content).get("storage_key")
        base = Path(get_current_settings().results.local_storage_path).expanduser().resolve()
        if not key or base not in Path(key).expanduser().resolve().parents or not Path(key).is_file():
            raise ValueError(f"the cache record's result {key} is not readable under {base}: a cache miss")
        return content

    def read_path(self, path: str, _sync: bool | None = None) -> bytes:
        return self._checked(LocalFileSystem.read_path(self, path, _sync=True))

    async def aread_path(self, path: str) -> bytes:
        return self._checked(await LocalFileSystem.aread_path(self, path))


def by_inputs():
    """INPUTS + TASK_SOURCE, stored in the project's data folder (Prefect's DEFAULT is per flow run)."""
    return (INPUTS + TASK_SOURCE).configure(key_storage=CacheRecords(basepath=str(prefect_cache_dir())))


def by_file_content():
    return (CacheKeyFnPolicy(cache_key_fn=_file_content_key) + TASK_SOURCE).configure(
        key_storage=CacheRecords(basepath=str(prefect_cache_dir())))

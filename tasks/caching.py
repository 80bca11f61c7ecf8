"""Cache policies shared by the tasks: content-addressed, persisted under data/, valid across runs and servers."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from prefect.cache_policies import INPUTS, TASK_SOURCE, CacheKeyFnPolicy

from lvm.dataset import file_hash
from lvm.paths import prefect_cache_dir


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


def code_version(*modules: str) -> str:
    """Content hash of library modules (a package counts with all its files). Passed as a task input, it makes
    the cache follow changes to the library code a task calls, not only to the task's own source."""
    import importlib

    h = hashlib.sha256()
    for name in modules:
        mod = importlib.import_module(name)
        root = Path(mod.__file__)
        files = sorted(root.parent.rglob("*.py")) if root.name == "__init__.py" else [root]
        for f in files:
            h.update(f.read_bytes())
    return h.hexdigest()[:16]


def by_inputs():
    """INPUTS + TASK_SOURCE, stored in the project's data folder (Prefect's DEFAULT is per flow run)."""
    return (INPUTS + TASK_SOURCE).configure(key_storage=prefect_cache_dir())


def by_file_content():
    return (CacheKeyFnPolicy(cache_key_fn=_file_content_key) + TASK_SOURCE).configure(key_storage=prefect_cache_dir())

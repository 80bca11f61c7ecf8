"""Where the pipeline reads and writes by default: `data/` under the working directory, or $LVM_DATA_DIR."""

from __future__ import annotations

import os
from pathlib import Path


def data_dir() -> Path:
    return Path(os.environ.get("LVM_DATA_DIR", "data")).resolve()


def runs_dir() -> Path:
    return data_dir() / "runs"


def registry_dir() -> Path:
    return data_dir() / "registry"


def embedding_cache_dir() -> Path:
    return data_dir() / "cache" / "embeddings"


def prefect_cache_dir() -> Path:
    """Prefect's cache records and persisted task results: kept here so caching works across runs and servers."""
    return data_dir() / "cache" / "prefect"

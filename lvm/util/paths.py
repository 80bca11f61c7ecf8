"""Where the pipeline reads and writes by default: `data/` under the working directory, or $LVM_DATA_DIR.

Every default path of the CLI and the flows comes from here, so both use one data folder and one embedding cache.
`check_output` is the one rule every command with an output applies before it does any work."""

from __future__ import annotations

import os
from pathlib import Path


def data_dir() -> Path:
    """$LVM_DATA_DIR (or ./data), resolved. A path that exists but is not a folder is refused, naming it."""
    raw = os.environ.get("LVM_DATA_DIR") or "data"
    path = Path(raw).expanduser().resolve()
    if path.exists() and not path.is_dir():
        where = "LVM_DATA_DIR" if os.environ.get("LVM_DATA_DIR") else "the default data folder"
        raise NotADirectoryError(f"{where} {path} is a file, not a folder (rule: the data folder must be a folder)")
    return path


def runs_dir() -> Path:
    return data_dir() / "runs"


def registry_dir() -> Path:
    return data_dir() / "registry"


def embedding_cache_dir() -> Path:
    return data_dir() / "cache" / "embeddings"


def npz_cache_dir() -> Path:
    """Seed `.npz` files imported as sentence tables, keyed by the `.npz` file's content hash."""
    return data_dir() / "cache" / "npz"


def default_dataset_path() -> Path:
    """`lvm build-dataset`'s table when no --out is given."""
    return data_dir() / "dataset.parquet"


def prefect_cache_dir() -> Path:
    """Prefect's cache records and persisted task results: kept here so caching works across runs and servers."""
    return data_dir() / "cache" / "prefect"


def _same(a: Path, b: Path) -> bool:
    if a.resolve() == b.resolve():
        return True
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)  # hard links, bind mounts
    except OSError:
        return False


def check_output(out: str | Path, inputs=(), option: str = "--out", folder: bool = False) -> Path:
    """Refuse an output before any work: one that is an input (same resolved path or same inode, or an existing
    file inside an input folder), a file where a folder is meant (or a folder where a file is meant), or one
    under a folder that cannot be written. Raises ValueError/OSError naming the option and the path."""
    out = Path(out)
    for src in inputs:
        if src is None or str(src) == "builtin":
            continue
        src = Path(src)
        inside = src.is_dir() and out.is_file() and src.resolve() in out.resolve().parents
        if _same(out, src) or inside:
            raise ValueError(f"{option} {out} is the input {src} (rule: an output never overwrites its own input); "
                             "choose another output path")
    if folder and out.exists() and not out.is_dir():
        raise NotADirectoryError(f"{option} {out}: is a file, expected a folder")
    if not folder and out.is_dir():
        raise IsADirectoryError(f"{option} {out}: is a folder, expected a file path")
    parent = out.resolve().parent if not folder else out.resolve()
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise NotADirectoryError(f"{option} {out}: {parent} is a file, not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise PermissionError(f"{option} {out}: cannot write into {parent} (read-only or no permission)")
    return out


def new_model_folder(parent: Path, arch: str) -> Path:
    """A model folder name not used yet under `parent`: <arch>-<UTC time>, with -2, -3, ... on a clash (two runs
    in the same second). `lvm train` writes each run into a new one, never over an earlier model."""
    import time

    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    path, n = parent / f"{arch}-{stamp}", 1
    while path.exists():
        n += 1
        path = parent / f"{arch}-{stamp}-{n}"
    return path

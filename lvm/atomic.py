"""Write-then-rename: a reader (or a crash) never sees a half-written file, and a failed write keeps the old one."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Callable

from lvm.dataset import atomic_path


def write_atomic(path: Path, write: Callable[[str], None]) -> Path:
    """`write(tmp_path)` writes the content; it is renamed onto `path` only if it returns."""
    path = Path(path)
    tmp = atomic_path(path)
    try:
        write(str(tmp))
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def write_json(path: Path, data) -> Path:
    return write_atomic(path, lambda tmp: Path(tmp).write_text(json.dumps(data, indent=2, default=str) + "\n"))

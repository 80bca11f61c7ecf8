"""Write-then-rename: a reader (or a crash) never sees a half-written file, and a failed write keeps the old one."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Callable


def atomic_path(path: Path) -> Path:
    """A temporary path beside `path`; the caller writes it, then os.replace()s it into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; the renamed file should have the usual permissions
    return Path(tmp)


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

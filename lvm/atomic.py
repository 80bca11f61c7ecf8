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
    _usual_mode(tmp)
    return Path(tmp)


def _usual_mode(path) -> None:
    """mkstemp makes 0600 (and some writers recreate the file): every file we write gets 0666 & ~umask, like any
    other file the user creates; model folders and tables are not secrets, and a server may read them as another
    user."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, 0o666 & ~umask)


def write_atomic(path: Path, write: Callable[[str], None], fsync: bool = False) -> Path:
    """`write(tmp_path)` writes the content; it is renamed onto `path` only if it returns. fsync=True flushes the
    content to disk before the rename (files that must survive a power cut, not only a crash)."""
    path = Path(path)
    tmp = atomic_path(path)
    try:
        write(str(tmp))
        _usual_mode(tmp)
        if fsync:
            with open(tmp, "rb") as f:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def write_json(path: Path, data) -> Path:
    return write_atomic(path, lambda tmp: Path(tmp).write_text(json.dumps(data, indent=2, default=str) + "\n"))

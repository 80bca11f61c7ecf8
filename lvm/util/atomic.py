"""Write-then-rename: a reader (or a crash) never sees a half-written file, and a failed write keeps the old one."""

from __future__ import annotations

import errno
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable


def atomic_path(path: Path) -> Path:
    """A temporary path beside `path`; the caller writes it, then os.replace()s it into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    usual_mode(tmp)
    return Path(tmp)


def remove_stale_temporaries(folder: Path, pattern: str = ".*.tmp", older_than: float = 600.0) -> int:
    """Temporary files (`atomic_path`'s) and folders a killed writer left in `folder`, untouched for `older_than`
    seconds: a live writer's are seconds old at most, so a folder several processes share (an embedding cache) is
    cleaned without a lock. Returns how many were removed."""
    import time

    folder, removed = Path(folder), 0
    if not folder.is_dir():
        return 0
    now = time.time()
    for f in folder.glob(pattern):
        try:
            if now - f.stat().st_mtime <= older_than:
                continue
            if f.is_dir():  # a sharded table's folder in the making (lvm.data.shards)
                shutil.rmtree(f)
            else:
                f.unlink()
            removed += 1
        except OSError:
            pass  # gone already, or not ours to remove
    return removed


def usual_mode(path, folder: bool = False) -> None:
    """mkstemp makes 0600 and mkdtemp 0700 (and some writers recreate the file): every file we write gets
    0666 & ~umask (a folder 0777 & ~umask), like any other the user creates; model folders and tables are not
    secrets, and a server may read them as another user."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, (0o777 if folder else 0o666) & ~umask)


def fsync_dir(path: Path) -> None:
    """Flush a folder's entries (a rename into it) to disk; a no-op where the OS cannot open folders."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_atomic(path: Path, write: Callable[[str], None], fsync: bool = False) -> Path:
    """`write(tmp_path)` writes the content; it is renamed onto `path` only if it returns. fsync=True flushes the
    content to disk before the rename and the rename after it (files that must survive a power cut, not only a
    crash). A failure (a
    read-only or full disk, a folder in the way) is an OSError named by `path`, not by the temporary file, and an
    existing file at `path` is kept."""
    path = Path(path)
    if path.is_dir():
        raise _named(path, IsADirectoryError(errno.EISDIR, "is a folder, expected a file path"))
    try:
        tmp = atomic_path(path)
    except OSError as exc:
        raise _named(path, exc) from None
    try:
        try:
            write(str(tmp))
        except OSError:
            raise
        except Exception as exc:  # torch.save and pyarrow report a full disk in their own words
            if _disk_full(path.parent):
                raise OSError(errno.ENOSPC, "no space left on device: the disk is full") from exc
            raise
        usual_mode(tmp)
        if fsync:
            with open(tmp, "rb") as f:
                os.fsync(f.fileno())
        os.replace(tmp, path)
        if fsync:
            fsync_dir(path.parent)
    except OSError as exc:
        raise _named(path, exc) from None
    finally:
        tmp.unlink(missing_ok=True)
    return path


def _disk_full(folder: Path, spare: int = 16 << 20) -> bool:
    """Whether the disk holding `folder` has (almost) no room left: what a writer's own error means then."""
    try:
        return shutil.disk_usage(folder).free < spare
    except OSError:
        return False


def _named(path: Path, exc: OSError) -> OSError:
    named = OSError(f"{path}: cannot write ({exc.strerror or exc}); nothing written")
    named.errno = exc.errno
    return named


def write_json(path: Path, data, fsync: bool = False, sort_keys: bool = False) -> Path:
    text = json.dumps(data, indent=2, default=str, sort_keys=sort_keys) + "\n"
    return write_atomic(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"), fsync=fsync)


def read_json_object(path: Path, hint: str = "") -> dict:
    """A JSON object written by `write_json`; a damaged or foreign file is a ValueError naming it (and `hint`, what
    the user can do about it)."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{path}: not valid JSON ({e}){hint}") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: must hold a JSON object{hint}")
    return data

"""One writer per folder: a lock file that dies with its process, and a note of who holds it for the error message."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
from pathlib import Path
from typing import Iterator

from filelock import FileLock, Timeout

LOCK_NAME = ".lock"
OWNER_NAME = ".lock.owner"


class FolderBusy(RuntimeError):
    """Another live process holds the folder's lock."""


def _holder(folder: Path) -> str:
    try:
        who = json.loads((folder / OWNER_NAME).read_text())
        since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(float(who["since"])))
        return f"pid {who['pid']} on {who['host']} since {since}"
    except (OSError, ValueError, KeyError, TypeError):
        return "another process"


@contextlib.contextmanager
def folder_lock(folder: str | os.PathLike[str], what: str = "folder", error: type[FolderBusy] = FolderBusy
                ) -> Iterator[Path]:
    """Hold `folder`'s lock for the block, or raise `error` at once, naming the folder and the holder. The lock is
    an OS file lock (flock): it is released when the holder exits, however it dies, so a SIGKILL leaves no stale
    lock behind."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    lock = FileLock(folder / LOCK_NAME, timeout=0)
    try:
        lock.acquire()
    except Timeout:
        raise error(f"{folder}: this {what} is in use by {_holder(folder)}; wait for it to finish or choose "
                    f"another folder") from None
    try:
        (folder / OWNER_NAME).write_text(json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                                                     "since": time.time()}))
        yield folder
    finally:
        (folder / OWNER_NAME).unlink(missing_ok=True)
        lock.release()

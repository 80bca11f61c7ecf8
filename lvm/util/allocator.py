"""Keep freed tensor memory in the process (glibc malloc tuning) so that CPU training does not page-fault.

PyTorch's CPU tensors come from malloc. glibc serves blocks above M_MMAP_THRESHOLD (128 KiB at first) with a fresh
mmap and gives them back with munmap when freed, and trims the heap top above M_TRIM_THRESHOLD: every activation
of a training step (a [256, 5, 1056] float tensor is 5.4 MB) then starts as untouched pages, and the first write to
each 4 KiB page is a page fault. Raising both thresholds keeps those pages (BENCHMARKS.md has the measured effect).
This is what jemalloc/tcmalloc preloading does for PyTorch on CPU, without asking users to preload anything.

Effect: the process keeps up to its peak heap instead of returning it to the system between steps. Idempotent;
does nothing where the C library is not glibc (macOS, musl) or when LVM_MALLOC_TUNING=0.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 32 << 20   # glibc's largest accepted value (HEAP_MAX_SIZE / 2 on 64-bit): blocks below it reuse heap
TRIM_THRESHOLD = 1 << 30    # free heap top is only returned to the system beyond 1 GiB

_done: bool | None = None


def keep_freed_memory() -> bool:
    """Set the two glibc thresholds once per process; True when they are in effect."""
    global _done
    if _done is not None:
        return _done
    _done = False
    if os.environ.get("LVM_MALLOC_TUNING", "1") == "0" or not sys.platform.startswith("linux"):
        return _done
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc
        return _done
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    _done = bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
    return _done

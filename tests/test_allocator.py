"""lvm.util.allocator: the glibc thresholds are set once, and can be turned off."""

import platform
import subprocess
import sys
from pathlib import Path

import pytest

from lvm.util.allocator import keep_freed_memory

ROOT = Path(__file__).resolve().parents[1]
glibc = sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc"


@pytest.mark.skipif(not glibc, reason="the tuning applies to glibc only (elsewhere it must report False)")
def test_thresholds_set_once_on_glibc():
    assert keep_freed_memory() is True
    assert keep_freed_memory() is True  # idempotent


def test_off_switch_and_non_glibc_report_false():
    code = "from lvm.util.allocator import keep_freed_memory; print(keep_freed_memory())"
    out = subprocess.run([sys.executable, "-c", code], env={"LVM_MALLOC_TUNING": "0", "PATH": ""},
                         capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "False"

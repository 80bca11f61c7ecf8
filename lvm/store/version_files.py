"""What one registry version holds, read and checked without torch: its version.json and its weights (a
safetensors file with NaN or Infinity is refused), and the registry's errors, each meant for a person."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from lvm.util.errors import UserError

_FLOAT_DTYPES = {"F16": "<u2", "BF16": "<u2", "F32": "<u4", "F64": "<u8"}
# exponent bits of each float type: all ones means Infinity or NaN
_EXPONENT_MASK = {"F16": 0x7C00, "BF16": 0x7F80, "F32": 0x7F800000, "F64": 0x7FF0000000000000}
_CHECK_CHUNK = 1 << 22  # elements per finiteness check, to keep memory flat on big models


class RegistryError(UserError):
    """Any registry failure with a message meant for a person."""


class UnknownVersionError(RegistryError, LookupError):
    pass


class UnknownAliasError(RegistryError, LookupError):
    pass


def _read_json(path: Path) -> Any:
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)


def _read_registry_json(path: Path) -> dict:
    """A registry JSON file that must hold an object; any failure is a RegistryError naming the file."""
    try:
        data = _read_json(path)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError, bad UTF-8
        raise RegistryError(f"{path} is not valid JSON ({exc}); restore it from a backup or fix it by hand") from None
    except OSError as exc:
        raise RegistryError(f"cannot read {path}: {exc.strerror or exc}") from None
    if not isinstance(data, dict):
        raise RegistryError(f"{path} must hold a JSON object, got {type(data).__name__}")
    return data


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def read_version_info(path: Path) -> dict:
    """``version.json`` of one version folder, checked: an object whose version/dim/context are integers."""
    file = Path(path) / "version.json"
    info = _read_registry_json(file)
    for key in ("version", "dim", "context"):
        if key in info and not (_is_count(info[key]) and info[key] > 0):
            raise RegistryError(f"{file}: {key!r} must be a positive integer, got {info[key]!r}")
    for key in ("metrics",):
        if info.get(key) is not None and not isinstance(info[key], dict):
            raise RegistryError(f"{file}: {key!r} must be an object, got {type(info[key]).__name__}")
    return info


def check_weights(path: Path) -> None:
    """Refuse a ``model.safetensors`` that does not parse or holds NaN/Infinity (the server could only serve
    NaN from it). Reads the safetensors layout directly (u64 header length, JSON header, raw little-endian
    data), so it needs neither torch nor a loader that knows bfloat16."""
    import numpy as np  # here, not at the top: reading aliases stays as light as the standard library

    path = Path(path)
    try:
        size = path.stat().st_size
        with open(path, "rb") as fh:
            head = fh.read(8)
            n = int.from_bytes(head, "little") if len(head) == 8 else -1
            if not 2 <= n <= min(size - 8, 100 << 20):
                raise RegistryError(f"{path} is not a safetensors file (bad header length)")
            header = json.loads(fh.read(n))
    except (ValueError, UnicodeDecodeError) as exc:
        raise RegistryError(f"{path} is not a safetensors file (header is not JSON: {exc})") from None
    except OSError as exc:
        raise RegistryError(f"cannot read {path}: {exc.strerror or exc}") from None
    if not isinstance(header, dict):
        raise RegistryError(f"{path} is not a safetensors file (header is not an object)")
    data_start, data_len = 8 + n, size - 8 - n
    bad = []
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        offsets = entry.get("data_offsets") if isinstance(entry, dict) else None
        if (not isinstance(offsets, list) or len(offsets) != 2 or not all(_is_count(o) for o in offsets)
                or not offsets[0] <= offsets[1] <= data_len):
            raise RegistryError(f"{path} is not a safetensors file (tensor {name!r} has bad data_offsets)")
        dtype = entry.get("dtype")
        if dtype not in _FLOAT_DTYPES:
            continue
        word = np.dtype(_FLOAT_DTYPES[dtype])
        count = (offsets[1] - offsets[0]) // word.itemsize
        if count == 0:
            continue
        values = np.memmap(path, dtype=word, mode="r", offset=data_start + offsets[0], shape=(count,))
        mask = np.array(_EXPONENT_MASK[dtype], dtype=word)
        nonfinite = 0
        for i in range(0, count, _CHECK_CHUNK):
            nonfinite += int(np.count_nonzero((values[i:i + _CHECK_CHUNK] & mask) == mask))
        del values
        if nonfinite:
            bad.append(f"{name} ({nonfinite} of {count})")
    if bad:
        shown = ", ".join(bad[:5]) + (f" and {len(bad) - 5} more" if len(bad) > 5 else "")
        raise RegistryError(f"{path} holds non-finite weights (NaN or Infinity) in {shown}: refusing to register "
                            "a model that can only predict NaN")

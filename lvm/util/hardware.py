"""Where and how a model runs: the device, bf16 autocast where the hardware runs it natively, and the cores shared
among the trainings of one process."""

from __future__ import annotations

import os
import threading
import warnings

import torch


def resolve_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("device='cuda' but torch sees no CUDA device")
    return torch.device(name)


_BF16_CPU: bool | None = None


def bf16_supported(device: torch.device | str = "cpu") -> bool:
    """True when bf16 autocast runs natively (CUDA with bf16, or a CPU with AVX-512-bf16 / AMX) for the ops the models
    use. The CPU flags are not enough: oneDNN has no bf16 LSTM primitive on some builds and ISAs, so probe it too."""
    global _BF16_CPU
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if _BF16_CPU is None:
        cpu = torch.cpu
        native = any(getattr(cpu, f, lambda: False)() for f in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"))
        _BF16_CPU = native and _bf16_probe()
    return _BF16_CPU


def _bf16_probe() -> bool:
    """A bf16 matmul and a tiny LSTM forward + backward under CPU autocast, without touching the global RNG."""
    try:
        with torch.random.fork_rng(devices=[]):
            with torch.autocast("cpu", dtype=torch.bfloat16):
                out = torch.ones(4, 4) @ torch.ones(4, 4)
                lstm = torch.nn.LSTM(4, 4, batch_first=True)
                y, _ = lstm(torch.ones(2, 3, 4))
            y.float().sum().backward()
        return out.dtype == torch.bfloat16 and float(out[0, 0]) == 4.0
    except RuntimeError:  # e.g. "could not create a primitive descriptor for the LSTM forward propagation primitive"
        return False


def resolve_precision(precision: str, device: torch.device) -> str:
    if precision == "bf16" and not bf16_supported(device):
        warnings.warn(f"bf16 autocast is not supported natively on {device}: training in fp32", stacklevel=3)
        return "fp32"
    return precision


def autocast(device: torch.device, precision: str):
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")


class RunningFits:
    """How many fits with threads="auto" run in this process, to share the cores among them. torch's thread count
    is per OS thread (OpenMP), so each training thread sets its own at the start of every epoch."""

    def __init__(self):
        self._n = 0
        self._lock = threading.Lock()

    def enter(self) -> None:
        with self._lock:
            self._n += 1

    def leave(self) -> None:
        with self._lock:
            self._n -= 1

    def share(self) -> int:
        with self._lock:
            return max(1, (os.cpu_count() or 1) // max(1, self._n))


running_fits = RunningFits()

"""Which backend embeds, and loading an encoder on it.

Backends: `torch` (the exact sentence-transformers path), `torch-bf16` (the same under bf16 autocast), `onnx` and
`onnx-int8` (ONNX Runtime, lvm.ingest.onnx_backend). When none is named, the bundled model's backend is measured,
once per CPU and library versions, then remembered: ONNX Runtime fp32 (DEFAULT_BACKEND, exact to fp32 rounding)
unless, where the CPU runs bf16 natively (AVX-512-bf16 or AMX, lvm.util.hardware.bf16_supported), torch-bf16 is
both faithful (minimum cosine to the fp32 vectors >= FIDELITY on a real sample: prose of the built-in corpus) and at
least MIN_GAIN faster, so the choice is never slower than the default and never less faithful than the rule. The
result, with its measurements, is kept in ~/.cache/lvm-pipeline/backend-choice.json (XDG_CACHE_HOME honoured;
LVM_EMBED_BACKEND overrides it all).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

BACKENDS = ("torch", "torch-bf16", "onnx", "onnx-int8")
DEFAULT_BACKEND = "onnx"  # exact to fp32 rounding; onnx-int8 missed the fidelity rule (BENCHMARKS.md)
# the bundled model's backend when none is named: measured once per CPU (choose_backend below), DEFAULT_BACKEND
# unless torch-bf16 is faster there and faithful (minimum cosine to fp32 >= 0.9999 on a real sample)
FIDELITY = 0.9999
MIN_GAIN = 1.05
SAMPLE = 384


def resolve_backend(encoder_name: str | None, backend: str | None) -> str:
    """An explicit backend as given (checked); None or "auto": for the bundled model, the backend measured fastest
    and faithful on this CPU (choose_backend, once per CPU and versions); `torch` for
    every other model."""
    from lvm.ingest.encoders import is_bundled

    if backend not in (None, "auto"):
        if backend not in BACKENDS:
            raise ValueError(f"unknown encoder backend {backend!r}: choose one of auto, {', '.join(BACKENDS)}")
        return backend
    if not is_bundled(encoder_name) or (encoder_name or "").startswith("hash:"):
        return "torch"
    return choose_backend()


_ONNX: dict[tuple, object] = {}


def load_encoder(name: str | None = None, backend: str = "torch", device: str = "cpu"):
    """The encoder for a name on a backend, loaded once per process: torch is lvm.ingest.encoders.get_encoder (the
    exact sentence-transformers path, and hash:D whatever the backend); onnx and onnx-int8 are
    lvm.ingest.onnx_backend (CPU)."""
    from lvm.ingest.encoders import DEFAULT_ENCODER, get_encoder

    if backend in ("torch", "torch-bf16") or (name or "").startswith("hash:"):
        return get_encoder(name, device, "bf16" if backend == "torch-bf16" else "fp32")
    key = (name or DEFAULT_ENCODER, resolve_backend(name, backend))
    if key not in _ONNX:
        from lvm.ingest.onnx_backend import onnx_encoder

        _ONNX[key] = onnx_encoder(*key)
    return _ONNX[key]


def choice_file() -> Path:
    root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return root / "lvm-pipeline" / "backend-choice.json"


def cpu_signature() -> str:
    """CPU model, the flags that decide the kernels, and the versions of the two runtimes."""
    import onnxruntime
    import torch

    model, flags = "unknown", set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and model == "unknown":
                model = line.split(":", 1)[1].strip()
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                break
    except OSError:
        pass
    keep = sorted(flags & {"avx2", "avx512f", "avx512_bf16", "amx_tile", "amx_bf16"})
    return f"{model}|{','.join(keep)}|torch {torch.__version__}|onnxruntime {onnxruntime.__version__}"


def pick(measured: dict) -> str:
    """The rule, on measurements {backend: {"rate": sentences/s, "min_cosine": to fp32}}."""
    base = measured["onnx"]["rate"]
    bf16 = measured.get("torch-bf16")
    if bf16 and bf16["min_cosine"] >= FIDELITY and bf16["rate"] >= MIN_GAIN * base:
        return "torch-bf16"
    return "onnx"


def measure(sample: list[str]) -> dict:
    """Sentences/s (after one warm-up batch) and minimum cosine to ONNX fp32 for each candidate on this CPU."""
    import numpy as np

    from lvm.util.hardware import bf16_supported

    out, ref = {}, None
    for backend in ("onnx", "torch-bf16") if bf16_supported("cpu") else ("onnx",):
        enc = load_encoder(None, backend)
        enc.encode(sample[:32])
        t = time.perf_counter()
        vecs = enc.encode(sample)
        rate = len(sample) / (time.perf_counter() - t)
        ref = vecs if ref is None else ref
        out[backend] = {"rate": round(rate, 1), "min_cosine": float(np.min((vecs * ref).sum(1)))}
    return out


def _sample() -> list[str]:
    from lvm.ingest.corpus import read_builtin, sentencize

    sents = [s for d in read_builtin() for s in sentencize(d).sentences]
    step = max(1, len(sents) // SAMPLE)
    return sents[::step][:SAMPLE]


def choose_backend() -> str:
    """The bundled model's backend on this CPU (see the module docstring)."""
    forced = os.environ.get("LVM_EMBED_BACKEND")
    if forced:
        if forced not in BACKENDS:
            raise ValueError(f"LVM_EMBED_BACKEND={forced!r}: choose one of {', '.join(BACKENDS)}")
        return forced
    path, sig = choice_file(), cpu_signature()
    try:
        known = json.loads(path.read_text())
    except (OSError, ValueError):
        known = {}
    if sig in known and known[sig].get("backend") in ("onnx", "torch-bf16"):
        return known[sig]["backend"]
    measured = measure(_sample())
    known[sig] = {"backend": pick(measured), "measured": measured, "fidelity_rule": FIDELITY, "min_gain": MIN_GAIN}
    try:
        from lvm.util.atomic import write_atomic

        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, lambda tmp: Path(tmp).write_text(json.dumps(known, indent=2)))
    except OSError:
        pass  # measured again next time; the choice itself stands
    return known[sig]["backend"]

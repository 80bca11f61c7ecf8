"""Which backend embeds with the bundled model on this CPU: measured, once, then remembered.

Candidates: ONNX Runtime fp32 (DEFAULT_BACKEND, exact to fp32 rounding) and, where the CPU runs bf16 natively
(AVX-512-bf16 or AMX, lvm.util.hardware.bf16_supported), torch under bf16 autocast. Both encode the same real
sample (prose of the built-in corpus); torch-bf16 is chosen only when its minimum cosine to the fp32 vectors is at
least FIDELITY and it is at least MIN_GAIN faster, so the choice is never slower than the default and never less
faithful than the rule. The result, with its measurements, is kept per CPU model, CPU flags and library versions
in ~/.cache/lvm-pipeline/backend-choice.json (XDG_CACHE_HOME honoured; LVM_EMBED_BACKEND overrides it all).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

FIDELITY = 0.9999
MIN_GAIN = 1.05
SAMPLE = 384


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

    from lvm.ingest.embedding import load_encoder
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

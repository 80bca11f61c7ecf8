"""The line every benchmark prints first: which CPU (model, the flags that decide the kernels), cores, load, and
which of those features torch will really use here (an ISA cap through ONEDNN_MAX_CPU_ISA / ATEN_CPU_CAPABILITY /
MKL_ENABLE_INSTRUCTIONS is shown too, so an emulated AVX2 run is never mistaken for a real one)."""

from __future__ import annotations

import os
import platform

FLAGS = ("avx2", "fma", "avx512f", "avx512_bf16", "amx_tile", "amx_bf16")
CAPS = ("ONEDNN_MAX_CPU_ISA", "ATEN_CPU_CAPABILITY", "MKL_ENABLE_INSTRUCTIONS")


def cpu_facts() -> dict:
    model, flags = platform.processor() or "unknown", set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name") and model in ("", "unknown", platform.machine()):
                    model = line.split(":", 1)[1].strip()
                elif line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return {"model": model, "flags": {f: f in flags for f in FLAGS}, "cores": os.cpu_count(),
            "load": os.getloadavg() if hasattr(os, "getloadavg") else None,
            "caps": {k: os.environ[k] for k in CAPS if os.environ.get(k)}}


def describe_machine() -> str:
    f = cpu_facts()
    flags = " ".join(("+" if on else "-") + name for name, on in f["flags"].items())
    try:
        import torch

        kernels = f"; torch kernels {torch.backends.cpu.get_cpu_capability()}"
        from lvm.util.hardware import bf16_supported

        kernels += f", bf16 autocast {'native' if bf16_supported() else 'not available (fp32)'}"
    except ImportError:
        kernels = ""
    caps = f"; ISA capped by {' '.join(f'{k}={v}' for k, v in f['caps'].items())}" if f["caps"] else ""
    load = f"; load average {f['load'][0]:.2f} {f['load'][1]:.2f} {f['load'][2]:.2f}" if f["load"] else ""
    return f"CPU: {f['model']}, {f['cores']} cores, {flags}{kernels}{caps}{load}"


if __name__ == "__main__":
    print(describe_machine())

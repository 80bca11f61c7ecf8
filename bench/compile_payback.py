"""Does `torch.compile` pay back within one training? Compile time against the seconds it saves per epoch, for
each architecture, on the trainer's own epoch and validation code.

    .venv/bin/python bench/compile_payback.py                      # make run's data (built-in corpus, MiniLM), fp32
    MKL_ENABLE_INSTRUCTIONS=AVX2 ONEDNN_MAX_CPU_ISA=AVX2 \\
        .venv/bin/python bench/compile_payback.py --inductor-simdlen 256     # AVX2 kernels on an AVX-512 CPU
    .venv/bin/python bench/compile_payback.py --data data/heldout-bench/train.all-MiniLM-L6-v2.parquet \\
        --epochs 3 --train-epochs lstm=11,mamba2=6,transformer=14       # the protocol's training text

Each architecture runs --epochs epochs eagerly and then --epochs epochs with the model wrapped in `torch.compile`
(default mode, inductor, an empty compile cache), same config, seed and batches, both through
`lvm.train.trainer._train_epoch` and `_mean_cosine`, the functions `fit` runs every epoch (checkpoints are left
out: they are the same either way).
The compiled run's first epoch carries the compilation (the near-equal batches have two sizes, and the validation
pass is one more graph); its later epochs are the steady state. Payback = the first epoch's extra seconds over the
seconds saved per later epoch, against the epochs a training of this data really runs (--train-epochs: make run's
at patience 3 by default, bench/time_to_quality.py).

Before timing, the compiled model's outputs at the trainer's batch sizes are checked against the eager ones (max
|difference| printed; over 1e-4 the architecture is reported as wrong and not timed). Under ATEN_CPU_CAPABILITY=avx2
on an AVX-512 CPU, inductor generates AVX2 code whose training outputs here were wrong (torch 2.13; BENCHMARKS.md),
so the AVX2 runs cap oneDNN and MKL with their variables and give inductor its vector width itself
(--inductor-simdlen 256).
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import lvm.defaults as defaults  # noqa: E402
from bench.machine import describe_machine  # noqa: E402
from bench.time_to_quality import default_table  # noqa: E402
from lvm.data.dataset import read_table, split_articles  # noqa: E402
from lvm.data.table import article_so_far, window_targets  # noqa: E402
from lvm.train.config import TrainConfig  # noqa: E402
from lvm.train.schedule import LRSchedule  # noqa: E402
from lvm.train.trainer import _make_optimizer, _mean_cosine, _train_epoch, batch_bounds  # noqa: E402
from lvm.util.hardware import resolve_precision  # noqa: E402

ARCHS = defaults.ARCHITECTURES  # the train flow's (lvm.defaults)
MAKE_RUN_EPOCHS = {"lstm": 17, "mamba2": 13, "transformer": 15}  # patience 3 on make run's data (BENCHMARKS.md)


CACHE_ROOT = tempfile.TemporaryDirectory(prefix="lvm-inductor-")  # removed at exit


def fresh_compile_cache() -> None:
    """A new, empty inductor cache folder: every compilation timed here is a first one, as in a user's first
    training (later trainings of the same shapes would find their kernels in /tmp and compile faster)."""
    torch._dynamo.reset()
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = tempfile.mkdtemp(dir=CACHE_ROOT.name)


def compiled_error(cfg: TrainConfig, V: torch.Tensor, A, train_t: np.ndarray) -> float:
    """max |compiled - eager| of training-mode forwards at the trainer's batch sizes (near-equal batches: two sizes,
    rarely a multiple of the vector width), the weights moved off their zero init (a zero head would hide a wrong
    head)."""
    torch.manual_seed(cfg.seed)
    model = cfg.build(V.shape[1])
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.01)
    fresh_compile_cache()
    compiled = torch.compile(model)
    sizes = sorted(set(np.diff(batch_bounds(len(train_t), cfg.batch_size)).tolist()))
    err = 0.0
    for n in sizes:
        idx = torch.from_numpy(train_t[:n])
        args = (V[idx[:, None] + torch.arange(-cfg.context, 0)],) + (() if A is None else (A[idx],))
        err = max(err, float((model(*args) - compiled(*args)).detach().abs().max()))
    torch._dynamo.reset()
    return err


def run(cfg: TrainConfig, V: torch.Tensor, A, train_t: np.ndarray, val_t: np.ndarray, epochs: int, compiled: bool,
        precision: str) -> list[float]:
    """Seconds of each epoch (training pass + validation pass), eager or compiled."""
    device = torch.device("cpu")
    torch.manual_seed(cfg.seed)
    model = cfg.build(V.shape[1])
    opt = _make_optimizer(model, cfg)
    sched = LRSchedule(cfg, cfg.epochs * math.ceil(len(train_t) / cfg.batch_size))
    if compiled:
        fresh_compile_cache()
    net = torch.compile(model) if compiled else model
    loss_fn = cfg.loss_fn()
    offs = torch.arange(-cfg.context, 0)
    val = torch.from_numpy(val_t)
    seconds, step = [], 0
    for epoch in range(1, epochs + 1):
        t0 = time.perf_counter()
        step = _train_epoch(cfg, net, opt, sched, loss_fn, V, A, train_t, epoch, step, device, precision)["step"]
        net.eval()
        _mean_cosine(net, V, A, val, offs, device, precision, cfg.eval_batch_size)
        seconds.append(time.perf_counter() - t0)
    return seconds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=None, help="sentence table (default: make run's built-in table)")
    ap.add_argument("--archs", default=",".join(ARCHS))
    ap.add_argument("--epochs", type=int, default=4, help="epochs timed each way (the first compiled one compiles)")
    ap.add_argument("--train-epochs", default=None,
                    help="arch=N,... epochs a real training of this data runs (default: make run's at patience 3)")
    ap.add_argument("--precision", default="fp32", choices=("fp32", "bf16"))
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--inductor-simdlen", type=int, default=None,
                    help="inductor's vector width in bits (256 = its AVX2 code); default: picked from the CPU")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.inductor_simdlen:
        torch._inductor.config.cpp.simdlen = args.inductor_simdlen
    real_epochs = dict(MAKE_RUN_EPOCHS)
    if args.train_epochs:
        real_epochs.update({k: int(v) for k, v in (kv.split("=") for kv in args.train_epochs.split(","))})

    path = args.data or default_table()
    table = read_table(path)
    split = split_articles(table, (0.8, 0.1, 0.1), 0, method="permutation")
    precision = resolve_precision(args.precision, torch.device("cpu"))
    print(describe_machine(), flush=True)
    print(f"torch {torch.__version__}; data {path} ({len(table)} sentences, D={table.dim}); precision {precision}; "
          f"{args.threads} threads; inductor vector ISA {torch._inductor.cpu_vec_isa.pick_vec_isa()}", flush=True)
    V = torch.from_numpy(np.ascontiguousarray(table.vectors, dtype=np.float32))
    article_rows = torch.from_numpy(article_so_far(table.vectors, table.position))
    rows = []
    for arch in args.archs.split(","):
        cfg = TrainConfig(arch=arch, patience=None, precision=precision)
        tr, va = (window_targets(table.article_id, table.position, cfg.context, split.part(p))
                  for p in ("train", "val"))
        A = article_rows if cfg.article else None
        err = compiled_error(cfg, V, A, tr)
        if not err < 1e-4:
            print(f"  {arch}: compiled output differs from eager by {err:.3g}: wrong, not timed", flush=True)
            rows.append((arch, len(tr), math.ceil(len(tr) / cfg.batch_size)) + (None,) * 9 + (err,))
            continue
        eager = run(cfg, V, A, tr, va, args.epochs, False, precision)
        comp = run(cfg, V, A, tr, va, args.epochs, True, precision)
        torch._dynamo.reset()
        steady_e, steady_c = float(np.median(eager[1:])), float(np.median(comp[1:]))
        extra = comp[0] - eager[0]
        saved = steady_e - steady_c
        payback = extra / saved if saved > 0 else math.inf
        n = real_epochs.get(arch)
        net = n * saved - extra if n else None
        rows.append((arch, len(tr), math.ceil(len(tr) / cfg.batch_size), eager[0], steady_e, comp[0], steady_c,
                     extra, saved, payback, n, net, err))
        print(f"  {arch}: eager {['%.2f' % s for s in eager]}  compiled {['%.2f' % s for s in comp]}", flush=True)

    print("\n| model | train windows | steps/epoch | max abs diff | eager s/epoch | compiled: first epoch s "
          "| compiled s/epoch after | speed-up per epoch | compile cost s | pays back after | epochs of a training "
          "| compiled − eager, s per training |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for arch, nw, steps, e0, es, c0, cs, extra, saved, payback, n, net, err in rows:
        if e0 is None:
            print(f"| {arch} | {nw:,} | {steps} | {err:.3g} | wrong results: not timed |" + " |" * 7)
            continue
        pb = f"{payback:.0f} epochs" if math.isfinite(payback) else "never"
        print(f"| {arch} | {nw:,} | {steps} | {err:.1g} | {es:.2f} | {c0:.1f} | {cs:.2f} | {es / cs:.2f}x | "
              f"{extra:.1f} | {pb} | {n if n else '-'} | {f'{-net:+.1f}' if net is not None else '-'} |")


if __name__ == "__main__":
    main()

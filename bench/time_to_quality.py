"""Time to quality of the flow's trainings: how long until the best validation cosine, what each early-stopping
patience would cost and keep, and the trainings' achieved fraction of this machine's fp32 matmul rate.

    .venv/bin/python bench/time_to_quality.py                        # make run's data (built-in corpus, MiniLM), fp32
    .venv/bin/python bench/time_to_quality.py --data data/shared.all-MiniLM-L6-v2.parquet --precision bf16
    MKL_ENABLE_INSTRUCTIONS=AVX2 ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2 \\
        .venv/bin/python bench/time_to_quality.py
                                                                     # an AVX2-only CPU's kernels on an AVX-512 one

Each architecture trains once for --epochs epochs with early stopping off, the flow's default config otherwise
(lvm.train.TrainConfig, the flow's article split). After every epoch the callback scores that epoch's weights (read
back from the checkpoint the engine just wrote) on the test articles. The learning-rate schedule depends only on
--epochs, so the run up to any epoch is exactly what a run with early stopping would have done up to there: one run
gives the stop epoch, the seconds spent and the test cosine of the kept (best-validation) weights for every patience.

FLOPs per training sample are counted with torch.utils.flop_counter on one forward + backward step (recurrent
layers, which it does not see, from their shapes); achieved
GFLOP/s = FLOPs per sample x samples/s of the epochs' training part, against a 2048x2048 fp32 matmul timed in the
same process with the same threads.
"""

from __future__ import annotations

import argparse
import json
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
from lvm.data.dataset import read_table, split_articles  # noqa: E402
from lvm.data.table import article_so_far, window_targets  # noqa: E402
from lvm.evaluation.metrics import cosine  # noqa: E402
from lvm.evaluation.predictors import predict  # noqa: E402
from lvm.train.checkpoint import CHECKPOINT_DIR, CHECKPOINT_JSON
from lvm.train.config import TrainConfig
from lvm.train.trainer import fit
from lvm.util.hardware import resolve_precision

ARCHS = defaults.ARCHITECTURES  # the train flow's (lvm.defaults)
PATIENCES = (1, 2, 3, 4, 5)


def matmul_gflops(n: int = 2048, reps: int = 10) -> float:
    a, b = torch.randn(n, n), torch.randn(n, n)
    for _ in range(2):
        a @ b
    t = time.perf_counter()
    for _ in range(reps):
        a @ b
    return 2 * n ** 3 * reps / (time.perf_counter() - t) / 1e9


def flops_per_sample(cfg: TrainConfig, dim: int, batch: int = 64) -> float:
    """Training FLOPs (forward + backward) per sample. torch's FlopCounterMode sees matmuls, convolutions and
    attention but not the fused recurrent ops (aten::lstm / aten::gru): those are added from their shapes, as
    2 * gates * H * (I + H) per step and layer for the forward pass, times 3 for forward + backward."""
    from torch.utils.flop_counter import FlopCounterMode

    model = cfg.build(dim)
    ctx, tgt = torch.randn(batch, cfg.context, dim), torch.randn(batch, dim)
    args = (ctx, torch.randn(batch, dim)) if cfg.article else (ctx,)
    loss_fn = cfg.loss_fn()
    with FlopCounterMode(display=False) as fc:
        loss, _ = loss_fn(model(*args), tgt)
        loss.backward()
    recurrent = 0
    for m in model.modules():
        if isinstance(m, (torch.nn.LSTM, torch.nn.GRU)):
            gates = 4 if isinstance(m, torch.nn.LSTM) else 3
            for layer in range(m.num_layers):
                inp = m.input_size if layer == 0 else m.hidden_size
                recurrent += 3 * 2 * gates * m.hidden_size * (inp + m.hidden_size) * model.inputs
    return fc.get_total_flops() / batch + recurrent


def default_table() -> Path:
    from lvm.ingest.build import build_dataset
    from lvm.util.paths import data_dir

    path = data_dir() / "builtin.all-MiniLM-L6-v2.parquet"
    if not path.is_file():
        build_dataset("builtin", path, log=lambda m: print(m, file=sys.stderr))
    return path


def run_arch(arch: str, table, split, epochs: int, precision: str, threads: int, out: Path) -> dict:
    C = 5
    tr, va, te = (window_targets(table.article_id, table.position, C, split.part(p)) for p in ("train", "val", "test"))
    cfg = TrainConfig(arch=arch, epochs=epochs, patience=None, precision=precision, threads=threads)
    model = cfg.build(table.dim)
    ctx_te = table.vectors[te[:, None] + np.arange(-C, 0)]
    art_te = article_so_far(table.vectors, table.position)[te] if cfg.article else None
    tgt_te = table.vectors[te]
    test_cos = []

    def on_epoch(rec: dict) -> None:
        ck = out / CHECKPOINT_DIR
        state = json.loads((ck / CHECKPOINT_JSON).read_text())
        model.load_state_dict(torch.load(ck / state["state_file"], weights_only=True)["model"])
        test_cos.append(cosine(predict(model.eval(), ctx_te, article=art_te), tgt_te))

    fit(cfg, table.vectors, tr, va, out, callback=on_epoch, position=table.position)
    hist = json.loads((out / "history.json").read_text())
    return {"arch": arch, "history": hist, "test": test_cos, "flops": flops_per_sample(cfg, table.dim),
            "train_windows": len(tr)}


def with_patience(r: dict, patience: int | None) -> dict:
    """What early stopping with `patience` would have done in this run: stop epoch, seconds, the kept epoch."""
    best, best_e, bad, seconds = -np.inf, 0, 0, 0.0
    for i, h in enumerate(r["history"]):
        seconds += h["seconds"]
        if h["val_cosine"] > best:
            best, best_e, bad = h["val_cosine"], i, 0
        else:
            bad += 1
        if patience and bad >= patience:
            break
    return {"stop": i + 1, "seconds": seconds, "best_epoch": best_e + 1, "val": best, "test": r["test"][best_e],
            "to_best": sum(h["seconds"] for h in r["history"][:best_e + 1])}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=None, help="sentence table (default: make run's built-in table)")
    ap.add_argument("--archs", default=",".join(ARCHS))
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--precision", default="fp32", choices=("fp32", "bf16"))
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--json", type=Path, default=None, help="also write the raw per-epoch results here")
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    path = args.data or default_table()
    table = read_table(path)
    split = split_articles(table, (0.8, 0.1, 0.1), 0, method="permutation")
    precision = resolve_precision(args.precision, torch.device("cpu"))
    print(describe_machine(), flush=True)
    peak = matmul_gflops()
    print(f"data {path} ({len(table)} sentences, D={table.dim}); precision {precision}; {args.threads} threads; "
          f"fp32 2048^2 matmul {peak:.0f} GFLOP/s", flush=True)
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for arch in args.archs.split(","):
            results.append(run_arch(arch, table, split, args.epochs, precision, args.threads, Path(tmp) / arch))
            print(f"  {arch} done", flush=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, default=float))

    print("\n| model | GFLOP/sample | train samples/s | achieved GFLOP/s | of fp32 matmul | overhead s/epoch |")
    print("|---|---:|---:|---:|---:|---:|")
    for r in results:
        sps = float(np.median([h["samples_per_s"] for h in r["history"][1:]]))
        over = float(np.median([h["seconds"] - h["train_seconds"] for h in r["history"]]))
        print(f"| {r['arch']} | {r['flops'] / 1e9:.4f} | {sps:,.0f} | {r['flops'] * sps / 1e9:.0f} | "
              f"{r['flops'] * sps / 1e9 / peak:.0%} | {over:.2f} |")

    print("\n| model | patience | stops at epoch | best epoch | seconds | to best | val cosine | test cosine |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    totals = {}
    for r in results:
        for p in (*PATIENCES, None):
            w = with_patience(r, p)
            totals.setdefault(p, []).append(w)
            print(f"| {r['arch']} | {p or 'off'} | {w['stop']} | {w['best_epoch']} | {w['seconds']:.1f} | "
                  f"{w['to_best']:.1f} | {w['val']:.4f} | {w['test']:.4f} |")
    print("\n| patience | seconds, all models | mean test cosine of the kept weights |")
    print("|---:|---:|---:|")
    for p, ws in totals.items():
        print(f"| {p or 'off'} | {sum(w['seconds'] for w in ws):.1f} | {np.mean([w['test'] for w in ws]):.4f} |")


if __name__ == "__main__":
    main()

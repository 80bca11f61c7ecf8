"""Threads or processes for the flow's parallel trainings? Measured side by side in one run.

    .venv/bin/python bench/parallel_training.py              # lstm, mamba2, transformer at D=768, 8,106 pairs
    .venv/bin/python bench/parallel_training.py --epochs 1 --pairs 4000
    .venv/bin/python bench/parallel_training.py --epochs 20 --modes sequential,threads   # the issue's 3-minute target
    MKL_ENABLE_INSTRUCTIONS=AVX2 ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2 .venv/bin/python \\
        bench/parallel_training.py --dim 384 --pairs 2578 --epochs 10 --modes sequential,threads,threads-fixed,processes
                                                      # make run's sizes in fp32 on an AVX2-only CPU's kernels

Ways to train the three seed models on this machine's cores, each on the same data and config:
  sequential     one after another, every training using all cores (torch threads = cores);
  threads        what the flow's default threads runner does: min(3, cores) Python threads in one process, each
                 training with threads="auto" (the cores shared among the trainings still running, re-balanced
                 every epoch: the last one left gets them all);
  threads-fixed  the same with a fixed cores // workers torch threads each (the flow's behaviour before "auto");
  processes      a pool of min(3, cores) processes, each with torch threads = cores // workers (the flow's
                 processes runner).
Wall time for all three is what a user waits for; the ratio is against sequential.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import lvm.defaults as defaults  # noqa: E402
from bench.machine import describe_machine  # noqa: E402

ARCHS = defaults.ARCHITECTURES  # the train flow's (lvm.defaults)


def _data(pairs: int, dim: int, context: int):
    from bench.train_throughput import synthetic

    vectors, targets, _ = synthetic(pairs + pairs // 8, dim, context)
    return vectors, targets[:pairs], targets[pairs:]


def _train(arch: str, epochs: int, pairs: int, dim: int, context: int, threads, out: str) -> float:
    from lvm.train.config import TrainConfig
    from lvm.train.trainer import fit

    vectors, train_t, val_t = _data(pairs, dim, context)
    t = time.perf_counter()
    fit(TrainConfig(arch=arch, epochs=epochs, context=context, patience=None, threads=threads, article=False),
        vectors, train_t, val_t, Path(out) / arch)  # the seed models' shapes: the synthetic data has no articles
    return time.perf_counter() - t


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--pairs", type=int, default=8106)
    p.add_argument("--dim", type=int, default=768)
    p.add_argument("--context", type=int, default=5)
    p.add_argument("--modes", default="sequential,threads,processes",
                   help="comma-separated: sequential, threads, threads-fixed, processes")
    args = p.parse_args()
    modes = set(args.modes.split(","))
    print(describe_machine(), flush=True)
    cores = os.cpu_count() or 1
    job = (args.epochs, args.pairs, args.dim, args.context)
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        if "sequential" in modes:
            t = time.perf_counter()
            for a in ARCHS:
                print(f"  sequential {a}: {_train(a, *job, cores, f'{tmp}/seq'):.1f} s", flush=True)
            results["sequential"] = time.perf_counter() - t
        if "threads" in modes:
            results["threads"] = _threads(job, "auto", f"{tmp}/thr")
        if "threads-fixed" in modes:
            results["threads-fixed"] = _threads(job, max(1, cores // min(len(ARCHS), cores)), f"{tmp}/thf")
        if "processes" in modes:
            workers = min(len(ARCHS), cores)
            t = time.perf_counter()
            with ProcessPoolExecutor(max_workers=workers) as pool:
                list(pool.map(_train, ARCHS, *[[v] * len(ARCHS) for v in (*job, max(1, cores // workers),
                                                                         f"{tmp}/proc")]))
            results["processes"] = time.perf_counter() - t  # includes starting the worker processes

    print(f"\n3 trainings ({', '.join(ARCHS)}), {args.epochs} epochs x {args.pairs} pairs, D={args.dim}, "
          f"C={args.context}, {cores} cores, load before/after: {os.getloadavg()[0]:.2f}\n")
    first = next(iter(results))
    print(f"| mode | wall s | speed-up vs {first} |\n|---|---:|---:|")
    for k, v in results.items():
        print(f"| {k} | {v:.1f} | {results[first] / v:.2f}x |")


def _threads(job, threads, out: str) -> float:
    """As the flow's threads runner: min(3, cores) trainings at a time in one process, each in a Python thread with
    `threads` torch threads ("auto": the cores shared among the trainings still running, re-balanced every epoch)."""
    from concurrent.futures import ThreadPoolExecutor

    t = time.perf_counter()
    with ThreadPoolExecutor(max_workers=min(len(ARCHS), os.cpu_count() or 1)) as pool:
        list(pool.map(lambda a: _train(a, *job, threads, out), ARCHS))
    return time.perf_counter() - t


if __name__ == "__main__":
    main()

"""Peak memory of fitting the four baselines (tracemalloc: numpy's allocations, beyond the vectors themselves).

    .venv/bin/python bench/baselines_memory.py                  # 200k rows x 768, context 5
    .venv/bin/python bench/baselines_memory.py --rows 60000

Random unit vectors, every window a training window. The ridge's p x p float64 matrices (p = C*D = 3,840 at
D=768) are a fixed cost; what grows with the rows should stay in chunks.
"""

from __future__ import annotations

import argparse
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.machine import describe_machine  # noqa: E402
from lvm.evaluation.baselines import fit_baselines  # noqa: E402


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--rows", type=int, default=200_000)
    p.add_argument("--dim", type=int, default=768)
    p.add_argument("--context", type=int, default=5)
    args = p.parse_args(argv)
    print(describe_machine(), flush=True)
    vectors = np.random.default_rng(0).standard_normal((args.rows, args.dim), dtype=np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    targets = np.arange(args.context, args.rows, dtype=np.int64)
    tracemalloc.start()
    t = time.perf_counter()
    fit_baselines(vectors, targets, args.context)
    _, peak = tracemalloc.get_traced_memory()
    print(f"{args.rows:,} rows x {args.dim}, context {args.context}: peak {peak / 1e9:.2f} GB traced beyond the "
          f"{vectors.nbytes / 1e9:.2f} GB of vectors, {time.perf_counter() - t:.1f} s")


if __name__ == "__main__":
    main()

"""How far apart are "high cosine" and "high MRR"? Blends of the four baselines, on held-out articles.

    .venv/bin/python bench/cosine_vs_mrr.py --data data/shared.all-MiniLM-L6-v2.parquet

Cosine to the true next vector is best served by the conditional mean (ridge, context mean: they point at the
article's topic); retrieval (MRR over every sentence of the split) is best served by a prediction as specific as the
last sentence, whose nearest neighbours outside the context are its own neighbours in the text. This script maps
the trade-off without any training: predictions ridge + a*last + m*mean - g*global_mean over a grid, fitted on the
training articles only, scored on the validation articles (the grid is chosen there), and the Pareto front then
scored on the test articles. If no blend reaches ridge's cosine and last-context's MRR at once, a model must be
much better than linear to beat all four baselines on both.
"""

from __future__ import annotations

import argparse
import itertools
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.machine import describe_machine  # noqa: E402
from lvm.data.dataset import read_table, split_articles  # noqa: E402
from lvm.data.table import gather_windows, window_targets  # noqa: E402
from lvm.evaluation.baselines import fit_baselines  # noqa: E402
from lvm.evaluation.metrics import cosine, retrieval  # noqa: E402


def score(pred, targets, bank, vectors, context) -> tuple[float, float]:
    return cosine(pred, vectors[targets]), retrieval(pred, targets, bank, vectors, context)["mrr"]


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", default="data/shared.all-MiniLM-L6-v2.parquet")
    p.add_argument("--context", type=int, default=5)
    p.add_argument("--split-seed", type=int, default=0)
    args = p.parse_args(argv)
    print(describe_machine(), flush=True)
    table = read_table(args.data)
    V, C = table.vectors, args.context
    split = split_articles(table, (0.8, 0.1, 0.1), args.split_seed, method="permutation")
    windows = {part: window_targets(table.article_id, table.position, C, getattr(split, part))
               for part in ("train", "val", "test")}
    base = fit_baselines(V, windows["train"], C)
    g = V[windows["train"]].mean(0)

    def blends(part):
        ctx, _ = gather_windows(V, windows[part], C)
        return base["ridge"].predict(ctx), ctx[:, -1], ctx.mean(1)

    grid = list(itertools.product((0.0, 0.3, 0.6, 1.0, 2.0), (0.0, 0.5), (0.0, 0.3, 0.6)))
    R, L, M = blends("val")
    val = {w: score(R + w[0] * L + w[1] * M - w[2] * g, windows["val"], split.val, V, C) for w in grid}
    front = [w for w in grid if not any(o[0] >= val[w][0] and o[1] >= val[w][1] and o != val[w] for o in val.values())]
    front.sort(key=lambda w: -val[w][0])

    R, L, M = blends("test")
    print(f"# {args.data}: {len(windows['train'])} training windows; val {len(windows['val'])}, "
          f"test {len(windows['test'])} windows (bank = every sentence of the split)\n")
    print("| prediction (test articles) | cosine | MRR |\n|---|---:|---:|")
    refs = {}
    for name, b in base.items():
        refs[name] = score(b.predict(gather_windows(V, windows["test"], C)[0]), windows["test"], split.test, V, C)
        print(f"| {name} (baseline) | {refs[name][0]:.4f} | {refs[name][1]:.4f} |")
    best_cos = max(r[0] for r in refs.values())
    best_mrr = max(r[1] for r in refs.values())
    both = []
    for a, m, k in front:
        c, r = score(R + a * L + m * M - k * g, windows["test"], split.test, V, C)
        both.append(c > best_cos and r > best_mrr)
        print(f"| ridge + {a} last + {m} mean - {k} global_mean (Pareto front on val) | {c:.4f} | {r:.4f} |")
    print(f"\nbest baseline cosine {best_cos:.4f}, best baseline MRR {best_mrr:.4f}; "
          f"blends on the front that beat both: {sum(both)} of {len(both)}")


if __name__ == "__main__":
    main()

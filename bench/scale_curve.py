"""The quality-vs-data curve (issue #29): lead over the best baseline, with 95 % intervals, as the training windows
grow from 45k to all of gutenberg-large. One command (BENCHMARKS.md, "Scale"):

    PYTHONPATH=$PWD .venv/bin/python bench/scale_curve.py [--sizes 45000,90000,...,all] [--archs lstm]
    PYTHONPATH=$PWD .venv/bin/python bench/scale_curve.py --report      # the table and the PNG from what is done

Resumable: each (arch, size) model is trained in a child process into its own folder (killed, it resumes from its
checkpoint) and each size's scores are kept in `--out`/scores/; a re-run does only what is missing.

1. The table: gutenberg-large built by `lvm build-dataset` (a folder of shards, vectors memory-mapped), split by
   book with the flow's default (hash, seed 0, DEFAULT_FRACTIONS). The training books are put in one seeded order and
   a size N takes the first N training windows in that order (whole books, the last one cut), so every size holds
   every smaller one. Validation (early stopping) is always the whole validation split.
2. Each size trains `--archs` with TrainConfig defaults except the epochs: 20 at 45k (the default) and
   ceil(20 * 45,000 / N), at least 4, above it (as many optimizer steps as the 45k run, or more); patience 3. With two
   or more archs their ensemble is one more candidate, as in the flow. The six baselines are fitted on the same N
   training windows.
3. Scored (C = 5) with the one-pass evaluation layer, every model and baseline: gutenberg-large's test books, the
   protocol's held-out fiction (`bench/heldout_quality.py`'s fiction table: the four gutenberg/ books + brown ck..cr,
   none in gutenberg-large) and the protocol training table's wikitext2 and brown non-fiction test articles (never
   trained on here). Bootstrap groups: blocks of 100 consecutive sentences of a book, an article elsewhere.
   Lead = cosine minus the best baseline of that set, paired; and each model's forward margin (fiction).

Writes `--out` (default $LVM_DATA_DIR/bench/scale): models/, scores/N.json, scale_curve.json, scale_curve.png.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.heldout_quality import block_groups, corpus_of, load  # noqa: E402
from bench.machine import describe_machine  # noqa: E402

SIZES = "45000,90000,180000,360000,720000,all"
BASE_WINDOWS, BASE_EPOCHS, MIN_EPOCHS = 45_000, 20, 4
SETS = ("gutenberg-large test", "fiction (held out)", "wiki.valid test", "brown-nonfiction test")


def epochs_for(n: int) -> int:
    """20 epochs at 45k windows (TrainConfig's default), then as many optimizer steps (or more: at least 4 epochs)."""
    return BASE_EPOCHS if n <= BASE_WINDOWS else max(MIN_EPOCHS, math.ceil(BASE_EPOCHS * BASE_WINDOWS / n))


def open_large(path: Path):
    from lvm.data.dataset import DEFAULT_FRACTIONS, read_table, split_articles

    table = read_table(path, validate=False)
    split = split_articles(table, DEFAULT_FRACTIONS, 0, method="hash")
    return table, split


def ordered_train_targets(table, split, context: int) -> np.ndarray:
    """Every training window, its books in one seeded order (seed 0): a size N is the first N."""
    from lvm.data.table import window_targets

    t = window_targets(table.article_id, table.position, context, split.train)
    books = np.asarray(table.article_id)[t].astype(str)
    uniq = np.unique(books)
    rank = {b: i for i, b in enumerate(np.random.default_rng(0).permutation(uniq))}
    key = np.fromiter((rank[b] for b in books), np.int64, len(books))
    return t[np.argsort(key, kind="stable")]


def sizes_of(spec: str, total: int) -> list[int]:
    out = []
    for s in spec.split(","):
        n = total if s.strip() == "all" else int(s)
        if n > total:
            print(f"size {n:,} > the {total:,} training windows: skipped", flush=True)
            continue
        out.append(n)
    return sorted(set(out))


def model_folder(out: Path, arch: str, n: int) -> Path:
    from lvm.train.config import TrainConfig

    cfg = TrainConfig(arch=arch, epochs=epochs_for(n))
    digest = hashlib.sha256(json.dumps(cfg.to_dict(), sort_keys=True, default=str).encode()).hexdigest()[:8]
    return out / "models" / f"{arch}-n{n}-{digest}"


def train_one(table_path: Path, arch: str, n: int, out: Path) -> None:
    """In a child process: fit `arch` on the first n training windows, resuming a killed run; write
    bench_train.json with wall time, samples/s per epoch and this process's peak RSS."""
    from lvm.data.dataset import file_hash
    from lvm.data.table import DEFAULT_CONTEXT, window_targets
    from lvm.train.config import TrainConfig
    from lvm.train.trainer import fit

    table, split = open_large(table_path)
    C = DEFAULT_CONTEXT
    train_t = np.sort(ordered_train_targets(table, split, C)[:n])
    val_t = window_targets(table.article_id, table.position, C, split.val)
    cfg = TrainConfig(arch=arch, epochs=epochs_for(n))
    folder = model_folder(out, arch, n)
    t0, load0 = time.perf_counter(), load()
    s = fit(cfg, table.vectors, train_t, val_t, folder, resume=True, position=table.position,
            meta={"data_hash": file_hash(table_path), "encoder": table.meta.get("encoder"), "split": split.record(),
                  "dataset": str(table_path), "train_windows": int(n)})
    hist = json.loads((folder / "history.json").read_text())
    rec = {"arch": arch, "n": int(n), "model_dir": str(folder), "seconds": time.perf_counter() - t0,
           "load_start": load0, "load_end": load(), "val_cosine": s.get("best_val_cosine"),
           "best_epoch": s.get("best_epoch"), "epochs_run": s.get("epochs_run"), "epochs": cfg.epochs,
           "precision": s.get("precision"), "val_windows": int(len(val_t)),
           "samples_per_s": [h.get("samples_per_s") for h in hist],
           "epoch_seconds": [h.get("seconds") for h in hist],
           "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "train": cfg.to_dict()}
    (folder / "bench_train.json").write_text(json.dumps(rec, indent=2, default=str) + "\n")
    print(f"trained {arch} on {n:,} windows: val {rec['val_cosine']:.4f}, best epoch {rec['best_epoch']} of "
          f"{rec['epochs_run']}, {rec['seconds']:.0f} s, peak RSS {rec['peak_rss_mb']:.0f} MB", flush=True)


def trained(table_path: Path, arch: str, n: int, out: Path) -> dict:
    folder = model_folder(out, arch, n)
    done = folder / "bench_train.json"
    if not (done.is_file() and (folder / "model.safetensors").is_file()):
        print(f"training {arch} on {n:,} windows ({epochs_for(n)} epochs at most) -> {folder}; load {load()}",
              flush=True)
        subprocess.run([sys.executable, __file__, "--train-one", arch, str(n), "--table", str(table_path),
                        "--out", str(out)], check=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    return json.loads(done.read_text())


def eval_sets(table, split, protocol: Path, C: int) -> list:
    """(name, table, rows, groups, order_tests) of the four scored sets."""
    from lvm.data.dataset import DEFAULT_FRACTIONS, read_table, split_articles
    from lvm.evaluation.compare import check_compatible

    sets = [("gutenberg-large test", table, np.asarray(split.test), block_groups(table, 100, ("",)), True)]
    fic_path = next(protocol.glob("fiction.*.parquet"))
    fic = read_table(fic_path, validate=False)
    check_compatible(fic, fic_path, table.dim, table.meta.get("encoder"), "gutenberg-large")
    sets.append(("fiction (held out)", fic, np.arange(len(fic)), block_groups(fic, 100), True))
    tr_path = next(protocol.glob("train.*.parquet"))
    tr = read_table(tr_path, validate=False)
    check_compatible(tr, tr_path, table.dim, table.meta.get("encoder"), "gutenberg-large")
    test = np.asarray(split_articles(tr, DEFAULT_FRACTIONS, 0, method="permutation").test)  # the protocol's
    corpus = corpus_of(tr)
    for name, prefix in (("wiki.valid test", "wiki.valid"), ("brown-nonfiction test", "brown-nonfiction")):
        sets.append((name, tr, test[corpus[test] == prefix], block_groups(tr, 100, ()), False))
    return sets


def score_size(table, split, n: int, recs: dict, sets: list, out: Path, C: int) -> dict:
    from lvm.evaluation.baselines import best_baseline, fit_baselines
    from lvm.evaluation.compare import score_all
    from lvm.evaluation.heldout import HeldOutSet
    from lvm.evaluation.metrics import article_starts, on_context, paired_difference
    from lvm.evaluation.predictors import model_predictor
    from lvm.models.io import save_ensemble

    key = hashlib.sha256(json.dumps({a: r["model_dir"] for a, r in recs.items()}, sort_keys=True).encode()
                         ).hexdigest()[:8]
    path = out / "scores" / f"{n}-{key}.json"
    if path.is_file():
        return json.loads(path.read_text())
    dirs = {a: r["model_dir"] for a, r in recs.items()}
    if len(dirs) >= 2:
        dirs["ensemble"] = str(save_ensemble(dict(dirs), out / "models" / f"ensemble-n{n}-{key}"))
    t0 = time.perf_counter()
    train_t = np.sort(ordered_train_targets(table, split, C)[:n])
    fitted = fit_baselines(table.vectors, train_t, C, starts=article_starts(table.position))
    fit_s = time.perf_counter() - t0
    models = {a: on_context(model_predictor(d)) for a, d in dirs.items()}
    result = {"n": n, "models": dirs, "baseline_fit_seconds": fit_s, "sets": {}}
    for name, tab, rows, groups, order in sets:
        t1 = time.perf_counter()
        held = HeldOutSet.of(tab, rows, C, name, groups=groups)
        metrics, cosines = score_all({**models, **fitted}, held, order_tests=order,
                                     log=lambda m: print("  " + m, flush=True))
        base = {k: v for k, v in metrics.items() if k not in models}
        best = best_baseline(base)["name"]
        result["sets"][name] = {
            "windows": len(held), "groups": int(len(np.unique(held.target_groups))), "best_baseline": best,
            "cosine": {k: v["cosine"] for k, v in metrics.items()},
            "lead": {m: paired_difference(cosines[m], cosines[best], held.target_groups) for m in models},
            "forward_margin": {m: metrics[m]["forward"]["forward_margin"] for m in models},
            "forward_margin_served": {m: metrics[m]["forward"]["forward_margin_served"] for m in models},
            "seconds": time.perf_counter() - t1, "load": load()}
        s = result["sets"][name]
        print(f"n={n:,} {name}: {s['windows']:,} windows in {s['seconds']:.0f} s, " + ", ".join(
            f"{m} {s['lead'][m]['diff']:+.4f}" for m in models) + f" over {best}", flush=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2, default=str) + "\n")
    return result


def _ci(d: dict) -> str:
    from lvm.util.interval import Interval

    return str(Interval.of(d))


def report(out: Path) -> str:
    """The curve table (Markdown) and scale_curve.png from every scores/*.json."""
    rows = [json.loads(p.read_text()) for p in sorted((out / "scores").glob("*.json"))]
    rows.sort(key=lambda r: (r["n"], len(r["models"])))
    head = ("| training windows | model | " + " | ".join(f"{s}: lead [95 %]" for s in SETS)
            + " | fiction: forward margin [95 %] |\n|---:|---|" + "---:|" * (len(SETS) + 1) + "\n")
    lines = []
    for r in rows:
        for m in r["models"]:
            cells = [(_ci(r["sets"][s]["lead"][m]) + f" ({r['sets'][s]['best_baseline']})")
                     if s in r["sets"] else "-" for s in SETS]
            fm = r["sets"].get("fiction (held out)", {}).get("forward_margin", {}).get(m)
            lines.append(f"| {r['n']:,} | {m} | " + " | ".join(cells) + f" | {_ci(fm) if fm else '-'} |")
    md = head + "\n".join(lines)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2))
    for s, color in zip(SETS, ("C0", "C3", "C2", "C1")):
        pts = [(r["n"], r["sets"][s]["lead"][m]) for r in rows for m in r["models"]
               if s in r["sets"] and m == ("ensemble" if "ensemble" in r["models"] else next(iter(r["models"])))]
        if not pts:
            continue
        x = np.array([p[0] for p in pts])
        y = np.array([p[1]["diff"] for p in pts])
        lo = np.array([p[1]["ci95"][0] for p in pts])
        hi = np.array([p[1]["ci95"][1] for p in pts])
        ax.errorbar(x, y, yerr=[y - lo, hi - y], marker="o", capsize=3, color=color, label=s)
    ax.axhline(0, color="grey", lw=0.8)
    ax.axhline(0.02, color="grey", lw=0.8, ls="--", label="target +0.02 (fiction)")
    ax.set_xscale("log")
    ax.set_xlabel("training windows (gutenberg-large books)")
    ax.set_ylabel("cosine lead over the best baseline")
    ax.set_title("Lead over the best baseline as training data grows (95 % intervals)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "scale_curve.png", dpi=110)
    (out / "scale_curve.md").write_text(md + "\n")
    return md


def main(argv=None) -> None:
    from lvm.util.paths import data_dir

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--table", type=Path, default=None, help="default: $LVM_DATA_DIR/gutenberg-large.all-MiniLM-L6-v2")
    p.add_argument("--protocol", type=Path, default=None, help="bench/heldout_quality.py's tables; default: "
                   "$LVM_DATA_DIR/heldout-bench")
    p.add_argument("--sizes", default=SIZES, help=f"training windows, comma-separated; 'all' (default {SIZES})")
    p.add_argument("--archs", default="lstm", help="comma-separated (default lstm); two or more add their ensemble")
    p.add_argument("--out", type=Path, default=None, help="default: $LVM_DATA_DIR/bench/scale")
    p.add_argument("--report", action="store_true", help="only write the table and the PNG from what is done")
    p.add_argument("--train-one", nargs=2, metavar=("ARCH", "N"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    out = (args.out or data_dir() / "bench" / "scale").resolve()
    out.mkdir(parents=True, exist_ok=True)
    table_path = (args.table or data_dir() / "gutenberg-large.all-MiniLM-L6-v2").resolve()
    if args.train_one:
        train_one(table_path, args.train_one[0], int(args.train_one[1]), out)
        return
    if args.report:
        print(report(out))
        return
    from lvm.data.table import DEFAULT_CONTEXT

    print(describe_machine(), flush=True)
    C = DEFAULT_CONTEXT
    table, split = open_large(table_path)
    total = len(ordered_train_targets(table, split, C))
    print(f"{table_path.name}: {len(table):,} sentences, {len(np.unique(table.article_id))} books; split "
          f"{split.record()['articles']}; {total:,} training windows", flush=True)
    sets = eval_sets(table, split, (args.protocol or data_dir() / "heldout-bench").resolve(), C)
    for n in sizes_of(args.sizes, total):
        recs = {a: trained(table_path, a, n, out) for a in args.archs.split(",")}
        score_size(table, split, n, recs, sets, out, C)
        print(report(out), flush=True)
    summary = {"machine": describe_machine(), "command": " ".join(sys.argv), "table": str(table_path),
               "split": split.record(), "training_windows": total}
    (out / "scale_curve.json").write_text(json.dumps(summary, indent=2) + "\n")


if __name__ == "__main__":
    main()

"""Start from what was learned (issue #29 item 7): on small corpora, a model trained at scale and fine-tuned,
against the same architecture trained from scratch and against the untrained article blend, side by side.

    PYTHONPATH=$PWD .venv/bin/python bench/finetune_small.py --init data/bench/scale/models/lstm-n<N>-<hash>

For each small table (the built-in corpus; the State of the Union speeches), split by article with the flow's
default (hash, seed 0), trained and scored on the same windows:
- scratch: TrainConfig defaults (the lstm `make run` trains), from random weights;
- zero-shot: the `--init` model as it is, never trained on this corpus;
- fine-tuned: `--init` trained further here with TrainConfig defaults (lr 1e-3) and with lr 1e-4;
- article_blend: the untrained baseline (fitted weight) the models start from, and every other baseline.
Scored on each table's test articles with the one-pass layer: cosine, lead over the best baseline and over scratch,
paired 95 % intervals over the test articles. Tables are built with the ONNX backend (the embedding cache the
protocol tables used); the --init model's vectors came from the torch-bf16 backend of the same encoder (minimum
cosine to fp32 0.9999 on a real sample, lvm.ingest.backends). Writes finetune_small.json to --out.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.heldout_quality import load  # noqa: E402
from bench.machine import describe_machine  # noqa: E402

CORPUS = ROOT.parent / "shared" / "corpus"


def small_tables(out: Path) -> dict[str, Path]:
    from lvm.ingest.build import build_dataset
    from lvm.util.paths import embedding_cache_dir

    os.environ.setdefault("LVM_EMBED_BACKEND", "onnx")
    tables = {}
    for name, corpus in (("builtin", "builtin"), ("sotu", str(CORPUS / "sotu"))):
        path = out / f"{name}.all-MiniLM-L6-v2.parquet"
        if not path.is_file():
            build_dataset([corpus], path, cache_dir=embedding_cache_dir(), log=lambda m: None)
        tables[name] = path
    return tables


def run(name: str, path: Path, init: Path, out: Path) -> dict:
    from lvm.data.dataset import file_hash, read_table, save_split, split_articles
    from lvm.data.table import window_targets
    from lvm.evaluation.baselines import best_baseline, fit_baselines
    from lvm.evaluation.compare import score_all
    from lvm.evaluation.heldout import HeldOutSet
    from lvm.evaluation.metrics import article_starts, on_context, paired_difference
    from lvm.evaluation.predictors import model_predictor
    from lvm.train.config import TrainConfig
    from lvm.train.on_table import train_on_table

    table = read_table(path, validate=False)
    split = split_articles(table, seed=0)  # the flow's default: hash
    split_path = save_split(split, out / f"{name}.split.json")
    C = TrainConfig().context
    init_model = json.loads((init / "config.json").read_text())
    arch = init_model["arch"]
    variants = {"scratch": TrainConfig(arch=arch, model=dict(init_model["model"])),
                "fine-tuned": TrainConfig(arch=arch, init=str(init)),
                "fine-tuned lr 1e-4": TrainConfig(arch=arch, init=str(init), lr=1e-4)}
    dirs, train_s = {"zero-shot": str(init)}, {}
    for label, cfg in variants.items():
        folder = out / "models" / f"{name}-{label.replace(' ', '-')}-{file_hash(path)[:8]}"
        t0 = time.perf_counter()
        if not (folder / "model.safetensors").is_file():
            train_on_table(path, cfg, folder, split_path=split_path, baselines=False, held_out=False)
        train_s[label] = time.perf_counter() - t0
        dirs[label] = str(folder)
    train_t = window_targets(table.article_id, table.position, C, split.train)
    fitted = fit_baselines(table.vectors, train_t, C, starts=article_starts(table.position))
    held = HeldOutSet.of(table, split.test, C, "test")
    models = {k: on_context(model_predictor(d)) for k, d in dirs.items()}
    metrics, cosines = score_all({**models, **fitted}, held, order_tests=False)
    base = {k: metrics[k] for k in fitted}
    best = best_baseline(base)["name"]
    g = held.target_groups
    rows = {k: {"cosine": metrics[k]["cosine"], "forward_margin": metrics[k]["forward"]["forward_margin"],
                "lead_over_best_baseline": paired_difference(cosines[k], cosines[best], g),
                "minus_scratch": paired_difference(cosines[k], cosines["scratch"], g) if k != "scratch" else None,
                "train_seconds": train_s.get(k)} for k in models}
    return {"table": str(path), "windows": len(held), "test_articles": held.articles,
            "train_windows": int(len(train_t)), "best_baseline": best,
            "baselines": {k: v["cosine"] for k, v in base.items()}, "models": rows, "load": load()}


def markdown(results: dict) -> str:
    from lvm.util.interval import Interval

    out = ["| table (test windows) | model | cosine | − best baseline [95 %] | − scratch [95 %] |",
           "|---|---|---:|---:|---:|"]
    for name, r in results.items():
        for k, m in r["models"].items():
            out.append(f"| {name} ({r['windows']:,}) | {k} | {m['cosine']:.4f} | "
                       f"{Interval.of(m['lead_over_best_baseline'])} | {Interval.of(m['minus_scratch'])} |")
        out.append(f"| {name} | {r['best_baseline']} (baseline) | {r['baselines'][r['best_baseline']]:.4f} | | |")
    return "\n".join(out)


def main(argv=None) -> None:
    from lvm.util.paths import data_dir

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--init", type=Path, required=True, help="a model folder trained at scale (bench/scale_curve.py)")
    p.add_argument("--out", type=Path, default=None, help="default: $LVM_DATA_DIR/bench/finetune")
    args = p.parse_args(argv)
    out = (args.out or data_dir() / "bench" / "finetune").resolve()
    out.mkdir(parents=True, exist_ok=True)
    print(describe_machine(), flush=True)
    t0 = time.perf_counter()
    results = {name: run(name, path, args.init.resolve(), out) for name, path in small_tables(out).items()}
    md = markdown(results)
    print(md)
    (out / "finetune_small.json").write_text(json.dumps({"machine": describe_machine(), "init": str(args.init),
                                                         "command": " ".join(sys.argv), "results": results,
                                                         "wall_seconds": time.perf_counter() - t0}, indent=2,
                                                        default=str) + "\n")
    (out / "finetune_small.md").write_text(md + "\n")


if __name__ == "__main__":
    main()

"""Does it predict forward? The whole forward suite for the three seed models and every baseline on
../shared/corpus, plus one cross-corpus out-of-distribution row. One command (see BENCHMARKS.md):

    LVM_DATA_DIR=data/bench nice -n 19 .venv/bin/python bench/forward_suite.py

Builds (or reuses) the MiniLM tables under $LVM_DATA_DIR/forward-bench/: all = wikitext2 valid + sotu +
gutenberg; A = wikitext2 + sotu; B = gutenberg (the embedding cache makes A and B free after all). Trains (or
reuses) lstm, mamba2 and transformer on `all` (seed sizes, TrainConfig defaults), runs lvm.evaluation.compare
(every metric + the forward suite, test articles), prints the tables and what the default gates decide; then
trains an lstm on A and scores it on every article of B (baselines fitted on A's training split). Writes
everything to $LVM_DATA_DIR/forward-bench/forward_suite.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import lvm.defaults as defaults  # noqa: E402
from bench.machine import describe_machine  # noqa: E402

CORPUS = ROOT.parent / "shared" / "corpus"  # --corpus-root: another folder with the same layout
ARCHS = defaults.ARCHITECTURES  # the train flow's (lvm.defaults)


def protocol_split(path):
    """The split these numbers were published with: permutation, (0.8, 0.1, 0.1), seed 0."""
    from lvm.data.dataset import read_table, split_articles

    return split_articles(read_table(path, validate=False), (0.8, 0.1, 0.1), 0, method="permutation")


def table(name: str, corpora: list[Path], out_dir: Path, encoder: str | None) -> Path:
    from lvm.ingest.build import build_dataset
    from lvm.util.paths import embedding_cache_dir

    path = out_dir / f"{name}.{(encoder or 'all-MiniLM-L6-v2').replace(':', '')}.parquet"
    if not path.is_file():
        t0 = time.perf_counter()
        s = build_dataset([str(c) for c in corpora], path, encoder=encoder, cache_dir=embedding_cache_dir(),
                          log=print)
        print(f"built {path.name}: {s['articles']} articles, {s['sentences']} sentences "
              f"({s['encoded_documents']} documents encoded) in {time.perf_counter() - t0:.0f} s", flush=True)
    return path


def train(data: Path, split_path: Path, arch: str, out: Path, epochs: int) -> Path:
    from lvm.train.config import TrainConfig
    from lvm.train.on_table import train_on_table

    if (out / "model.safetensors").is_file() and (out / "metrics.json").is_file():
        print(f"reusing {out}", flush=True)
        return out
    t0 = time.perf_counter()
    cfg = TrainConfig(arch=arch, epochs=epochs, threads="auto")
    s = train_on_table(data, cfg, out, split_path=split_path, baselines=False)
    print(f"trained {arch} on {data.name}: val cosine {s['val_cosine']:.4f}, best epoch {s['best_epoch']}, "
          f"{time.perf_counter() - t0:.0f} s", flush=True)
    return out


def main(argv=None) -> dict:
    from lvm.data.dataset import save_split
    from lvm.decision import decide, gate_table
    from lvm.evaluation.compare import compare, evaluate_model, markdown_table
    from lvm.util.paths import data_dir

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--archs", default=",".join(ARCHS))
    p.add_argument("--skip-ood", action="store_true")
    p.add_argument("--corpus-root", type=Path, default=CORPUS)
    p.add_argument("--encoder", default=None, help="default: the bundled MiniLM; e.g. hash:32 for a smoke run")
    args = p.parse_args(argv)
    out = data_dir() / "forward-bench"
    out.mkdir(parents=True, exist_ok=True)
    machine = describe_machine()
    print(machine, flush=True)
    t_all = time.perf_counter()

    root = args.corpus_root
    wiki, sotu, gut = root / "wikitext2" / "wiki.valid.raw", root / "sotu", root / "gutenberg"
    full = table("shared", [wiki, sotu, gut], out, args.encoder)
    split = save_split(protocol_split(full), out / "shared.split.json")
    models = {a: str(train(full, split, a, out / "models" / f"{full.stem}-{a}", args.epochs))
              for a in args.archs.split(",")}
    t0 = time.perf_counter()
    comp = compare(str(full), str(split), models, 5)
    print(f"\nforward suite on the test articles of {full.name} ({comp['n']} windows): "
          f"{time.perf_counter() - t0:.0f} s\n", flush=True)
    print(markdown_table(comp), flush=True)
    d = decide(comp["models"], comp["baselines"])
    print(f"\nwith the default thresholds and gates: {d.branch.upper()}: {d.reason}\n\n{gate_table(d)}\n", flush=True)
    result = {"cpu": machine, "table": str(full), "comparison": comp, "decision": d.to_dict()}

    if not args.skip_ood:
        part_a = table("wikitext2-sotu", [wiki, sotu], out, args.encoder)
        part_b = table("gutenberg", [gut], out, args.encoder)
        split_a = save_split(protocol_split(part_a),
                             out / "wikitext2-sotu.split.json")
        m = train(part_a, split_a, "lstm", out / "models" / f"{part_a.stem}-lstm", args.epochs)
        same = evaluate_model(m, part_a, "test")
        ood = evaluate_model(m, part_b)
        print(f"\nOOD: lstm trained on {part_a.name}, its test articles ({same['n']} windows):\n")
        print(markdown_table({k: same[k] for k in ("models", "baselines")}).split("\n\n")[0])
        print(f"\nthe same lstm on every article of {part_b.name} ({ood['n']} windows; baselines fitted on "
              f"{part_a.name}'s training split):\n")
        print(markdown_table({k: ood[k] for k in ("models", "baselines")}).split("\n\n")[0])
        gap = same["models"]["lstm"]["cosine"] - ood["models"]["lstm"]["cosine"]
        print(f"\nlstm test − OOD cosine: {gap:+.4f}", flush=True)
        result["ood"] = {"train_table": str(part_a), "ood_table": str(part_b), "in_distribution": same, "ood": ood,
                         "test_minus_ood": gap}
    print(f"\nwhole benchmark: {time.perf_counter() - t_all:.0f} s; at the end: {describe_machine()}")
    (out / "forward_suite.json").write_text(json.dumps(result, indent=2, default=str) + "\n")
    print(f"numbers: {out / 'forward_suite.json'}")
    return result


if __name__ == "__main__":
    main()

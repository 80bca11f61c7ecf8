"""Held-out quality, the issue #15 protocol: in-domain test articles per corpus and a fiction set held out entirely.
One command (see BENCHMARKS.md, "Held-out quality (issue #15 protocol)"):

    PYTHONPATH=$PWD .venv/bin/python bench/heldout_quality.py [--quick] [--archs lstm] [--epochs N]

The levers tried on the way to today's defaults are bench/quality_levers.py's (on the same tables and split).

1. Builds (or reuses: the per-document embedding cache under $LVM_DATA_DIR/cache/embeddings makes a re-run
   instant) two tables through ``lvm.ingest.build.build_dataset`` with the default (ONNX) backend:
   train = wikitext2 (wiki.valid.raw) + sotu + brown non-fiction (files ca..cj, 374 samples);
   fiction = the four gutenberg books + brown fiction (files ck..cr, 126 samples). The brown subsets are folders of
   symlinks under the --out folder (the corpus is read in place, never copied).
2. Splits the training table by article (seed 0, DEFAULT_FRACTIONS), trains the flow's default architectures with
   today's TrainConfig defaults (or --epochs / --archs; --quick = lstm only, 6 epochs) and, as the flow does, adds
   their ensemble (lvm.models.ensemble) as one more model.
3. Scores every model and the six baselines (fitted on the same training articles) on: the test articles of
   each training corpus separately (the retrieval bank = that corpus's test sentences), and every article of the
   fiction table (bank = all its sentences; out of distribution). Bootstrap groups: the article, except that a
   gutenberg book is cut into blocks of --block (100) consecutive sentences, so four books are not four giant
   groups. The fiction's two corpora are scored again on their own, without the order tests (ablations,
   rollout) the whole fiction already has. Reported: cosine, MRR, the forward margin [95 %] (the sentence before
   the window unseen) and the served one, contrastive accuracy, and each model's cosine lead over the best
   baseline of that set [95 %] (lvm.evaluation.metrics.paired_difference with the same groups).

Prints the CPU line (bench/machine.py) with the load, wall times, Markdown tables; writes heldout_quality.json
to --out (default $LVM_DATA_DIR/heldout-bench, git-ignored).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import lvm.defaults as defaults  # noqa: E402
from bench.machine import describe_machine  # noqa: E402

CORPUS = ROOT.parent / "shared" / "corpus"
ARCHS = defaults.ARCHITECTURES  # the train flow's (lvm.defaults)
NONFICTION = tuple("abcdefghij")              # brown ca..cj
FICTION = tuple("klmnopqr")                   # brown ck..cr
BLOCK = 100


def load() -> str:
    a = os.getloadavg()
    return f"{a[0]:.2f} {a[1]:.2f} {a[2]:.2f}"


def brown_subset(root: Path, letters: tuple, folder: Path) -> Path:
    """A folder of symlinks to the brown files c<letter>NN.txt (the corpus reader takes a folder)."""
    folder.mkdir(parents=True, exist_ok=True)
    files = sorted(p for p in (root / "brown").glob("c*.txt") if p.name[1] in letters)
    want = {p.name for p in files}
    for old in folder.iterdir():
        if old.name not in want:
            old.unlink()
    for p in files:
        link = folder / p.name
        if not link.is_symlink():
            link.symlink_to(p.resolve())
    return folder


def build(name: str, corpora: list[Path], out_dir: Path, encoder: str | None) -> Path:
    from lvm.ingest.build import build_dataset
    from lvm.util.paths import embedding_cache_dir

    path = out_dir / f"{name}.{(encoder or 'all-MiniLM-L6-v2').replace(':', '')}.parquet"
    t0 = time.perf_counter()
    s = build_dataset([str(c) for c in corpora], path, encoder=encoder, cache_dir=embedding_cache_dir(),
                      log=lambda m: print("  " + m, flush=True))
    print(f"built {path.name}: {s['articles']} articles, {s['sentences']} sentences ({s['encoded_documents']} "
          f"documents encoded, {s['cached_documents']} cached) in {time.perf_counter() - t0:.0f} s; load {load()}",
          flush=True)
    return path


def tables(root: Path, out: Path, encoder: str | None) -> tuple[Path, Path]:
    nonfic = brown_subset(root, NONFICTION, out / "corpora" / "brown-nonfiction")
    fic = brown_subset(root, FICTION, out / "corpora" / "brown-fiction")
    train = build("train", [root / "wikitext2" / "wiki.valid.raw", root / "sotu", nonfic], out, encoder)
    fiction = build("fiction", [root / "gutenberg", fic], out, encoder)
    return train, fiction


def block_groups(table, block: int, prefixes=("gutenberg/",)) -> np.ndarray:
    """Bootstrap group of every row: its article, or for an article from a `prefixes` corpus (a whole book) its
    block of `block` consecutive sentences."""
    aid = np.asarray(table.article_id).astype(str)
    pos = np.asarray(table.position, dtype=np.int64)
    labels = aid.astype(object)
    cut = np.zeros(len(aid), bool)
    for pre in prefixes:
        cut |= np.char.startswith(aid, pre)
    labels[cut] = [f"{a}#{b}" for a, b in zip(aid[cut], pos[cut] // block)]
    return np.unique(labels.astype(str), return_inverse=True)[1]


def corpus_of(table) -> np.ndarray:
    return np.array([a.split("/", 1)[0] for a in np.asarray(table.article_id).astype(str)])


def train(train_path: Path, split_path: Path, arch: str, epochs: int | None, out: Path) -> dict:
    """Train (or reuse) one model with TrainConfig defaults; validation only (the protocol scores the test set)."""
    from lvm.train.config import TrainConfig
    from lvm.train.on_table import train_on_table

    cfg = TrainConfig(arch=arch) if epochs is None else TrainConfig(arch=arch, epochs=epochs)
    digest = hashlib.sha256(json.dumps(cfg.to_dict(), sort_keys=True, default=str).encode()).hexdigest()[:8]
    folder = out / "models" / f"{arch}-e{cfg.epochs}-{digest}"  # another default config trains afresh
    done = folder / "bench_train.json"
    if done.is_file() and (folder / "model.safetensors").is_file():
        rec = json.loads(done.read_text())
        print(f"reusing {folder} (trained in {rec['seconds']:.0f} s)", flush=True)
        return rec
    t0, load0 = time.perf_counter(), load()
    s = train_on_table(train_path, cfg, folder, split_path=split_path, baselines=False, held_out=False)
    rec = {"arch": arch, "model_dir": str(folder), "seconds": time.perf_counter() - t0, "load_start": load0,
           "load_end": load(), "val_cosine": s.get("cosine"), "best_epoch": s.get("best_epoch"),
           "epochs_run": s.get("epochs_run", s.get("epochs")), "train": cfg.to_dict()}
    done.write_text(json.dumps(rec, indent=2, default=str) + "\n")
    print(f"trained {arch}: val cosine {rec['val_cosine']:.4f}, best epoch {rec['best_epoch']}, "
          f"{rec['seconds']:.0f} s (load {load0} -> {rec['load_end']})", flush=True)
    return rec


def score_set(name: str, fns: dict, model_names: list, table, rows: np.ndarray, C: int, groups: np.ndarray,
              order_tests: bool = True) -> dict:
    """Every predictor on the windows whose target is in `rows` (bank = `rows`), forward suite with the given
    bootstrap groups (`order_tests` False for a subset of a set already scored: no ablations, no rollout), and
    each model's lead over the best baseline of this set."""
    from lvm.evaluation.baselines import best_baseline
    from lvm.evaluation.compare import score_all
    from lvm.evaluation.heldout import HeldOutSet
    from lvm.evaluation.metrics import paired_difference

    t0 = time.perf_counter()
    held = HeldOutSet.of(table, rows, C, name, groups=groups)
    metrics, cosines = score_all(fns, held, order_tests=order_tests, log=lambda m: print("  " + m, flush=True))
    baselines = {k: v for k, v in metrics.items() if k not in model_names}
    best = best_baseline(baselines)["name"]
    lead = {m: paired_difference(cosines[m], cosines[best], held.target_groups) for m in model_names}
    out = {"set": name, "n": len(held), "articles": held.articles,
           "groups": int(len(np.unique(held.target_groups))), "bank": int(len(rows)),
           "models": {k: metrics[k] for k in model_names}, "baselines": baselines, "best_baseline": best,
           "lead_over_best_baseline": lead, "seconds": time.perf_counter() - t0, "load": load()}
    print(f"scored {name}: {out['n']} windows, {out['articles']} articles, {out['groups']} bootstrap groups, "
          f"{out['seconds']:.0f} s (load {out['load']})", flush=True)
    return out


def _ci(d: dict | None) -> str:
    if not d or d.get("diff") is None:
        return "-"
    from lvm.util.interval import Interval

    return str(Interval.of(d))


def set_table(s: dict) -> str:
    head = (f"**{s['set']}** ({s['n']:,} windows, {s['articles']} articles, {s['groups']} bootstrap groups)\n\n"
            "| | cosine | MRR | forward margin [95 %] | served forward margin [95 %] | contrastive acc. | cosine − "
            f"best baseline ({s['best_baseline']}) [95 %] |\n|---|---:|---:|---:|---:|---:|---:|\n")
    rows = []
    for kind in ("models", "baselines"):
        for name, m in sorted(s[kind].items(), key=lambda kv: -kv[1]["cosine"]):
            lead = _ci(s["lead_over_best_baseline"].get(name)) if kind == "models" else ""
            label = f"**{name}**" if kind == "models" else f"{name} (baseline)"
            f = m["forward"]
            rows.append(f"| {label} | {m['cosine']:.4f} | {m['mrr']:.4f} | {_ci(f['forward_margin'])} | "
                        f"{_ci(f['forward_margin_served'])} | {m['contrastive_accuracy']:.4f} | {lead} |")
    return head + "\n".join(rows)


def headline(sets: list) -> str:
    head = ("| set | windows | best model | cosine | best baseline | cosine | lead [95 %] | model's forward margin "
            "[95 %] | model's served forward margin [95 %] | contrastive acc. model / best of baselines |\n"
            "|---|---:|---|---:|---|---:|---:|---:|---:|---:|\n")
    rows = []
    for s in sets:
        m = max(s["models"], key=lambda k: s["models"][k]["cosine"])
        b = s["best_baseline"]
        ca = max(v["contrastive_accuracy"] for v in s["baselines"].values())
        rows.append(f"| {s['set']} | {s['n']:,} | {m} | {s['models'][m]['cosine']:.4f} | {b} | "
                    f"{s['baselines'][b]['cosine']:.4f} | {_ci(s['lead_over_best_baseline'][m])} | "
                    f"{_ci(s['models'][m]['forward']['forward_margin'])} | "
                    f"{_ci(s['models'][m]['forward']['forward_margin_served'])} | "
                    f"{s['models'][m]['contrastive_accuracy']:.4f} / {ca:.4f} |")
    return head + "\n".join(rows)


def run_protocol(train_path: Path, fiction_path: Path, archs: list, epochs: int | None, block: int,
                 out: Path) -> dict:
    from lvm.data.dataset import DEFAULT_FRACTIONS, file_hash, read_table, save_split, split_articles
    from lvm.data.table import DEFAULT_CONTEXT, window_targets
    from lvm.evaluation.baselines import cached_baselines
    from lvm.evaluation.compare import check_compatible
    from lvm.evaluation.metrics import article_starts, on_context
    from lvm.evaluation.predictors import model_predictor

    C = DEFAULT_CONTEXT
    table = read_table(train_path, validate=False)
    split = split_articles(table, DEFAULT_FRACTIONS, 0, method="permutation")  # the protocol, as published
    split_path = save_split(split, out / "train.split.json")
    trained = {a: train(train_path, split_path, a, epochs, out) for a in archs}
    t0 = time.perf_counter()
    train_t = window_targets(table.article_id, table.position, C, split.train)
    fitted = cached_baselines(table.vectors, train_t, C, file_hash(train_path), split.record(),
                              article_starts(table.position))
    print(f"baselines fitted on {len(train_t):,} training windows in {time.perf_counter() - t0:.0f} s "
          f"(article_blend {fitted['article_blend'].info})", flush=True)
    dirs = {a: r["model_dir"] for a, r in trained.items()}
    if len(dirs) >= 2:  # the flow's default: their ensemble is one more candidate (lvm.models.ensemble)
        from lvm.models.io import save_ensemble

        digest = hashlib.sha256(json.dumps(dirs, sort_keys=True).encode()).hexdigest()[:8]
        dirs["ensemble"] = str(save_ensemble({a: dirs[a] for a in trained}, out / "models" / f"ensemble-{digest}"))
    models = {a: on_context(model_predictor(d)) for a, d in dirs.items()}
    fns = {**models, **fitted}
    sets = []
    corpus = corpus_of(table)
    groups = block_groups(table, block)
    test = np.asarray(split.test)
    for name in sorted(set(corpus[test]), key=lambda c: ("wiki" not in c, c)):
        rows = test[corpus[test] == name]
        sets.append(score_set(f"{name} test", fns, list(models), table, rows, C, groups))
    fic = read_table(fiction_path, validate=False)
    check_compatible(fic, fiction_path, table.dim, table.meta.get("encoder"), "the training table")
    fic_groups = block_groups(fic, block)
    sets.append(score_set("fiction (held out: gutenberg + brown ck..cr)", fns, list(models), fic,
                          np.arange(len(fic)), C, fic_groups))
    fc = corpus_of(fic)
    for name in sorted(set(fc)):
        rows = np.flatnonzero(fc == name)
        sets.append(score_set(f"fiction: {name}", fns, list(models), fic, rows, C, fic_groups, order_tests=False))
    print("\n" + headline(sets) + "\n", flush=True)
    for s in sets:
        print(set_table(s) + "\n", flush=True)
    return {"machine": describe_machine(), "train_table": str(train_path), "fiction_table": str(fiction_path),
            "split": split.record(), "context": C, "block": block, "training": trained,
            "baseline_fit": {k: b.info for k, b in fitted.items()}, "sets": sets}


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--archs", default=None, help=f"comma-separated (default {','.join(ARCHS)}; --quick: lstm)")
    p.add_argument("--epochs", type=int, default=None, help="default: TrainConfig's (--quick: 6)")
    p.add_argument("--quick", action="store_true", help="lstm only, 6 epochs")
    p.add_argument("--block", type=int, default=BLOCK, help="sentences per bootstrap block of a gutenberg book")
    p.add_argument("--corpus-root", type=Path, default=CORPUS)
    p.add_argument("--encoder", default=None, help="default: the bundled MiniLM; e.g. hash:32 for a smoke run")
    p.add_argument("--out", type=Path, default=None, help="default: $LVM_DATA_DIR/heldout-bench")
    p.add_argument("--build-only", action="store_true")
    args = p.parse_args(argv)
    from lvm.util.paths import data_dir

    out = (args.out or data_dir() / "heldout-bench").resolve()
    out.mkdir(parents=True, exist_ok=True)
    print(describe_machine(), flush=True)
    t_all = time.perf_counter()
    train_path, fiction_path = tables(args.corpus_root, out, args.encoder)
    t_build = time.perf_counter() - t_all
    if args.build_only:
        print(f"tables built in {t_build:.0f} s; load {load()}")
        return {}
    archs = (args.archs or ("lstm" if args.quick else ",".join(ARCHS))).split(",")
    epochs = args.epochs or (6 if args.quick else None)
    result = run_protocol(train_path, fiction_path, archs, epochs, args.block, out)
    result.update(build_seconds=t_build, wall_seconds=time.perf_counter() - t_all, machine_end=describe_machine(),
                  command=" ".join(sys.argv))
    print(f"\nwall time {result['wall_seconds']:.0f} s (tables {t_build:.0f} s); {describe_machine()}")
    (out / "heldout_quality.json").write_text(json.dumps(result, indent=2, default=str) + "\n")
    print(f"numbers: {out / 'heldout_quality.json'}")
    return result


if __name__ == "__main__":
    main()

"""The lever search of issue #15: each lever trained on the protocol's training articles and judged on its
validation articles only; the held-out fiction is scored beside it for the record, never used to choose.

    PYTHONPATH=$PWD .venv/bin/python bench/quality_levers.py [--levers plain,article,...] [--list]

Reads the tables and the split that bench/heldout_quality.py writes (run it first, or with --build-only). Each
lever is a set of TrainConfig fields (LEVERS below) or an ensemble of levers already trained (ENSEMBLES: the mean
of the members' unit predictions). Every row is paired, window for window, with the reference lever (`plain`, the
flow's default before this search) and with the best of the baselines fitted on the same training windows, with
95 % intervals from resampling articles (validation) or articles / 100-sentence book blocks (fiction). A lever
with a longer context has fewer windows (a target needs C sentences before it): its rows compare on its own
windows. Compute is the training wall time on this machine, printed with the load.

Writes one JSON per lever under --out/levers/ (trained models stay there: a re-run only scores) and
quality_levers.json with the table.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.heldout_quality import block_groups, load  # noqa: E402
from bench.machine import describe_machine  # noqa: E402

#: lever name -> TrainConfig fields over the defaults (arch lstm unless given)
LEVERS: dict[str, dict] = {
    "plain": {},
    "article": {"article": True},
    "article_c12": {"article": True, "context": 12},
    "article_dropout": {"article": True, "model": {"dropout": 0.2}, "weight_decay": 0.05},
    "article_infonce": {"article": True, "loss": "cosine_infonce"},
    "article_infonce01": {"article": True, "loss": {"cosine": 1.0, "infonce": 0.01, "temperature": 0.07}},
    "article_infonce03": {"article": True, "loss": {"cosine": 1.0, "infonce": 0.03, "temperature": 0.07}},
    # InfoNCE whose negatives include the 4 sentences after the target and the 4 before the context: the neighbours
    # the forward margin and contrastive accuracy compare the next sentence with
    "article_infonce01_hard": {"article": True, "loss": {"cosine": 1.0, "infonce": 0.01, "temperature": 0.07,
                                                         "hard_negatives": 4}},
    "article_infonce03_hard": {"article": True, "loss": {"cosine": 1.0, "infonce": 0.03, "temperature": 0.07,
                                                         "hard_negatives": 4}},
    "article_infonce10_hard": {"article": True, "loss": {"cosine": 1.0, "infonce": 0.1, "temperature": 0.07,
                                                         "hard_negatives": 4}},
    "article_wide": {"article": True, "model": {"hidden": 1024}},
    "article_deep": {"article": True, "model": {"layers": 4}},       # depth: 4 LSTM layers against 2
    "article_shallow": {"article": True, "model": {"layers": 1}},
    "article_shallow_seed1": {"article": True, "model": {"layers": 1}, "seed": 1},  # against article_seed1
    "article_shallow_seed2": {"article": True, "model": {"layers": 1}, "seed": 2},
    "article_lr3e-4": {"article": True, "lr": 3e-4},
    "article_batch64": {"article": True, "batch_size": 64},
    "article_transformer": {"arch": "transformer", "article": True},
    "article_mamba2": {"arch": "mamba2", "article": True},
    "article_mamba2_dropout": {"arch": "mamba2", "article": True, "model": {"dropout": 0.2}, "weight_decay": 0.05},
    "article_gru": {"arch": "gru", "article": True},
    # the embedding space normalised per dimension with statistics of the training rows (bench-only, as Meta's LCM
    # does): trained and predicting in that space, scored after mapping the predictions back
    "article_robust": {"article": True, "normalise": "robust"},   # (x - median) / IQR
    "article_center": {"article": True, "normalise": "center"},   # x - mean
    # data scale: the same model on a seeded share of the training articles (validation and baselines unchanged)
    "article_data25": {"article": True, "train_fraction": 0.25},
    "article_data50": {"article": True, "train_fraction": 0.5},
    "article_seed1": {"article": True, "seed": 1},
    "article_seed2": {"article": True, "seed": 2},
    "article_c8": {"article": True, "context": 8},
}
#: ensemble name -> member levers (scored on the windows they share)
ENSEMBLES: dict[str, tuple] = {
    "ensemble_article_3": ("article", "article_transformer", "article_mamba2"),
    "ensemble_article_seeds": ("article", "article_seed1", "article_seed2"),
    # every C = 5 article lever that is level with the default or better on validation
    "ensemble_article_9": ("article", "article_transformer", "article_mamba2", "article_dropout", "article_seed1",
                           "article_seed2", "article_lr3e-4", "article_batch64", "article_infonce01_hard"),
}


def _ci(d: dict | None) -> str:
    if not d or d.get("diff") is None:
        return "-"
    from lvm.util.interval import Interval

    return str(Interval.of(d))


class Data:
    """The protocol's tables, split, baselines (C = 5, fitted on the training windows) and bootstrap groups."""

    def __init__(self, bench: Path):
        from lvm.data.dataset import file_hash, load_split, read_table
        from lvm.data.table import DEFAULT_CONTEXT, window_targets
        from lvm.evaluation.baselines import cached_baselines
        from lvm.evaluation.metrics import article_starts

        self.train_path = next(bench.glob("train.*.parquet"))
        self.fiction_path = next(bench.glob("fiction.*.parquet"))
        self.table = read_table(self.train_path, validate=False)
        self.fiction = read_table(self.fiction_path, validate=False)
        self.split = load_split(bench / "train.split.json")
        self.C0 = DEFAULT_CONTEXT
        self.starts = article_starts(self.table.position)
        self.fic_starts = article_starts(self.fiction.position)
        t0 = time.perf_counter()
        train_t = window_targets(self.table.article_id, self.table.position, self.C0, self.split.train)
        self.baselines = cached_baselines(self.table.vectors, train_t, self.C0, file_hash(self.train_path),
                                          self.split.record(), self.starts)
        print(f"baselines fitted in {time.perf_counter() - t0:.0f} s", flush=True)
        self.val_groups = np.unique(np.asarray(self.table.article_id).astype(str), return_inverse=True)[1]
        self.fic_groups = block_groups(self.fiction, 100)

    def windows(self, C: int) -> dict:
        """Validation and fiction target rows of context C."""
        from lvm.data.table import window_targets

        return {"val": window_targets(self.table.article_id, self.table.position, C, self.split.val),
                "fiction": window_targets(self.fiction.article_id, self.fiction.position, C)}

    def where(self, part: str):
        return (self.table, self.starts, self.val_groups) if part == "val" else \
            (self.fiction, self.fic_starts, self.fic_groups)


NORMALISER = "normaliser.npz"


class Normaliser:
    """x -> (x - center) / scale per dimension, and back; `robust`: median and interquartile range, `center`: mean
    and 1. The models' losses compare directions only, so a prediction is mapped back at the median length of the
    normalised training rows (`radius`)."""

    def __init__(self, center: np.ndarray, scale: np.ndarray, radius: float = 1.0):
        self.center, self.scale, self.radius = center.astype(np.float32), scale.astype(np.float32), float(radius)

    @classmethod
    def fit(cls, rows: np.ndarray, kind: str) -> "Normaliser":
        rows = np.asarray(rows, np.float64)
        if kind == "robust":
            q25, q50, q75 = np.percentile(rows, [25, 50, 75], axis=0)
            norm = cls(q50, np.maximum(q75 - q25, 1e-6))
        elif kind == "center":
            norm = cls(rows.mean(0), np.ones(rows.shape[1]))
        else:
            raise ValueError(f"unknown normaliser {kind!r}")
        norm.radius = float(np.median(np.linalg.norm(norm.forward(rows), axis=1)))
        return norm

    @classmethod
    def load(cls, path: Path) -> "Normaliser":
        z = np.load(path)
        return cls(z["center"], z["scale"], float(z["radius"]))

    def save(self, path: Path) -> None:
        np.savez(path, center=self.center, scale=self.scale, radius=self.radius)

    def forward(self, x: np.ndarray) -> np.ndarray:
        return ((np.asarray(x, np.float32) - self.center) / self.scale).astype(np.float32)

    def windows(self, w):
        """Windows in the normalised space (the article summary is a sum over before_n rows)."""
        from lvm.evaluation.metrics import Windows

        before = None if w.before_sum is None else (w.before_sum - w.before_n[:, None] * self.center) / self.scale
        return Windows(self.forward(w.ctx), before, w.before_n)

    def back(self, p: np.ndarray) -> np.ndarray:
        p = np.asarray(p, np.float32)
        unit = p / np.maximum(np.linalg.norm(p, axis=1, keepdims=True), 1e-12)
        return unit * self.radius * self.scale + self.center


def lever_predictor(folder: Path):
    """The lever's model as a Windows predictor in the table's own space."""
    from lvm.evaluation.predictors import model_predictor

    fn = model_predictor(folder)
    if not (folder / NORMALISER).is_file():
        return fn
    norm = Normaliser.load(folder / NORMALISER)

    def normalised(w):
        return norm.back(fn(norm.windows(w)))
    normalised.needs_article, normalised.model = fn.needs_article, fn.model
    return normalised


def train_lever(name: str, data: Data, out: Path) -> dict:
    from lvm.data.table import window_targets
    from lvm.train.config import TrainConfig
    from lvm.train.trainer import fit

    folder = out / "levers" / name
    done = folder / "bench_train.json"
    if done.is_file() and (folder / "model.safetensors").is_file():
        return json.loads(done.read_text())
    fields = {"arch": "lstm", **LEVERS[name]}
    fraction = fields.pop("train_fraction", 1.0)  # bench-only: train on this share of the training articles
    kind = fields.pop("normalise", None)
    cfg = TrainConfig(**fields)
    t = data.table
    train_rows = np.asarray(data.split.train)
    vectors = t.vectors
    if kind:
        norm = Normaliser.fit(t.vectors[train_rows], kind)
        vectors = norm.forward(t.vectors)
        folder.mkdir(parents=True, exist_ok=True)
        norm.save(folder / NORMALISER)
    if fraction < 1.0:
        arts = np.asarray(t.article_id)[train_rows]
        names = np.unique(arts)
        keep = np.random.default_rng(0).permutation(names)[:max(1, round(fraction * len(names)))]
        train_rows = train_rows[np.isin(arts, keep)]
    train_t = window_targets(t.article_id, t.position, cfg.context, train_rows)
    val_t = window_targets(t.article_id, t.position, cfg.context, data.split.val)
    t0, load0 = time.perf_counter(), load()
    s = fit(cfg, vectors, train_t, val_t, folder, position=t.position)
    rec = {"lever": name, "fields": LEVERS[name], "train_windows": int(len(train_t)),
           "seconds": time.perf_counter() - t0, "load_start": load0,
           "load_end": load(), "val_cosine": s["best_val_cosine"], "best_epoch": s["best_epoch"],
           "epochs_run": s["epochs_run"], "parameters": s["parameters"], "context": cfg.context}
    done.write_text(json.dumps(rec, indent=2) + "\n")
    print(f"trained {name}: val {rec['val_cosine']:.4f}, best epoch {rec['best_epoch']}/{rec['epochs_run']}, "
          f"{rec['seconds']:.0f} s (load {load0} -> {rec['load_end']})", flush=True)
    return rec


def predictions(name: str, data: Data, out: Path, part: str, targets: np.ndarray, cache: dict,
                unseen: bool = False) -> np.ndarray:
    """Unit predictions of a lever (or an ensemble: the normalised mean of its members') on `targets` of `part`;
    `unseen`: with the sentence before each window left out of the article (the forward margin's predictions)."""
    from lvm.evaluation.forward import without_before
    from lvm.evaluation.metrics import predict_rows, window_batch

    key = (name, part, targets.tobytes(), unseen)
    if key in cache:
        return cache[key]
    table, starts, _ = data.where(part)
    if name in ENSEMBLES:
        p = sum(predictions(m, data, out, part, targets, cache, unseen) for m in ENSEMBLES[name])
        p = p / np.maximum(np.linalg.norm(p, axis=1, keepdims=True), 1e-12)
    elif unseen:
        fn = lever_predictor(out / "levers" / name)
        if not fn.needs_article:
            return predictions(name, data, out, part, targets, cache)
        C, p = fn.model.context, []
        for s in range(0, len(targets), 4096):
            t = targets[s:s + 4096]
            p.append(fn(without_before(window_batch(table.vectors, t, C, starts), table.vectors, t, C, starts)))
        p = np.concatenate(p)
    else:
        fn = lever_predictor(out / "levers" / name)
        p = predict_rows(fn, table.vectors, targets, fn.model.context, starts)
    cache[key] = p.astype(np.float32)
    return cache[key]


def banks(data: Data, part: str) -> np.ndarray:
    """The retrieval bank of contrastive accuracy: every validation sentence, or every fiction sentence."""
    return np.asarray(data.split.val) if part == "val" else np.arange(len(data.fiction))


def score_lever(name: str, data: Data, out: Path, cache: dict) -> dict:
    from lvm.evaluation.forward import contrastive_accuracy, sentence_before
    from lvm.evaluation.metrics import paired_difference, per_example_cosine, predict_rows

    members = ENSEMBLES.get(name, (name,))
    C = max(json.loads((out / "levers" / m / "bench_train.json").read_text())["context"] for m in members)
    row = {"lever": name, "context": C}
    for part, targets in data.windows(C).items():
        table, starts, groups = data.where(part)
        tgt = table.vectors[targets]
        pred = predictions(name, data, out, part, targets, cache)
        mine = per_example_cosine(pred, tgt)
        ref = per_example_cosine(predictions("plain", data, out, part, targets, cache), tgt)
        art = per_example_cosine(predictions("article", data, out, part, targets, cache), tgt)
        bkey = ("baselines", part, targets.tobytes())  # the same for every lever of this context length
        if bkey not in cache:
            cache[bkey] = {k: predict_rows(b, table.vectors, targets, data.C0, starts)
                           for k, b in data.baselines.items()}
        bpred = cache[bkey]
        bl = {k: per_example_cosine(v, tgt) for k, v in bpred.items()}
        best = max(bl, key=lambda k: bl[k].mean())
        g = groups[targets]
        ca_key = ("ca", part, targets.tobytes())
        if ca_key not in cache:
            cache[ca_key] = {k: contrastive_accuracy(v, targets, banks(data, part), table.vectors, C)
                             for k, v in bpred.items()}
        ca_base = cache[ca_key]
        ca_best = max(ca_base, key=ca_base.get)
        before, ok = sentence_before(targets, C, starts)     # the forward margin's other sentence
        unseen = predictions(name, data, out, part, targets, cache, unseen=True)
        row[part] = {"n": int(len(targets)), "groups": int(len(np.unique(g))), "cosine": float(mine.mean()),
                     "contrastive_accuracy": contrastive_accuracy(pred, targets, banks(data, part), table.vectors,
                                                                  C),
                     "best_baseline_contrastive": ca_best, "best_baseline_contrastive_accuracy": ca_base[ca_best],
                     "minus_plain": paired_difference(mine, ref, g) if name != "plain" else None,
                     "minus_article": paired_difference(mine, art, g) if name not in ("plain", "article") else None,
                     "best_baseline": best, "best_baseline_cosine": float(bl[best].mean()),
                     "minus_best_baseline": paired_difference(mine, bl[best], g),
                     "forward_margin_served": paired_difference(mine[ok], per_example_cosine(
                         pred[ok], table.vectors[before[ok]]), g[ok]),
                     "forward_margin": paired_difference(per_example_cosine(unseen[ok], tgt[ok]), per_example_cosine(
                         unseen[ok], table.vectors[before[ok]]), g[ok])}
    return row


def fiction_ceiling(data: Data, out: Path) -> dict:
    """Not a lever: how far can the default model lead article_blend on fiction when it is TRAINED on fiction?
    The fiction's bootstrap groups (brown samples, 100-sentence book blocks) are split at random, seed 0: 45 % for
    training, 5 % for early stopping, 50 % to score; the baselines are fitted on the same training windows. Blocks
    of one book share its characters and plot, so this is an optimistic, in-domain ceiling for what a model trained
    elsewhere can reach there."""
    from lvm.data.table import window_targets
    from lvm.evaluation.baselines import fit_baselines
    from lvm.evaluation.metrics import paired_difference, per_example_cosine, predict_rows
    from lvm.evaluation.predictors import model_predictor
    from lvm.train.config import TrainConfig
    from lvm.train.trainer import fit

    fic, C = data.fiction, data.C0
    t_all = window_targets(fic.article_id, fic.position, C)
    g = data.fic_groups[t_all]
    order = np.random.default_rng(0).permutation(np.unique(g))
    n = len(order)
    part = {"train": order[:int(0.45 * n)], "val": order[int(0.45 * n):n // 2], "test": order[n // 2:]}
    t = {k: t_all[np.isin(g, v)] for k, v in part.items()}
    folder = out / "levers" / "fiction_ceiling"
    done = folder / "bench_train.json"
    cfg = TrainConfig(arch="lstm")
    if done.is_file():
        rec = json.loads(done.read_text())
    else:
        t0, load0 = time.perf_counter(), load()
        s = fit(cfg, fic.vectors, t["train"], t["val"], folder, position=fic.position)
        rec = {"seconds": time.perf_counter() - t0, "load_start": load0, "load_end": load(),
               "val_cosine": s["best_val_cosine"], "best_epoch": s["best_epoch"], "epochs_run": s["epochs_run"],
               "train_windows": int(len(t["train"]))}
        done.write_text(json.dumps(rec, indent=2) + "\n")
    base = fit_baselines(fic.vectors, t["train"], C, starts=data.fic_starts)
    tgt, groups = fic.vectors[t["test"]], data.fic_groups[t["test"]]
    model = per_example_cosine(predict_rows(model_predictor(folder), fic.vectors, t["test"], C, data.fic_starts), tgt)
    bl = {k: per_example_cosine(predict_rows(b, fic.vectors, t["test"], C, data.fic_starts), tgt)
          for k, b in base.items()}
    best = max(bl, key=lambda k: bl[k].mean())
    res = {"train_windows": int(len(t["train"])), "test_windows": int(len(t["test"])),
           "test_groups": int(len(np.unique(groups))), "model": float(model.mean()), "best_baseline": best,
           "baselines": {k: float(v.mean()) for k, v in bl.items()},
           "lead": paired_difference(model, bl[best], groups), "training": rec}
    print(f"\nfiction ceiling: the default lstm TRAINED on {res['train_windows']:,} fiction windows, scored on "
          f"{res['test_windows']:,} others ({res['test_groups']} groups): {res['model']:.4f}; best baseline "
          f"fitted there {best} {bl[best].mean():.4f}; lead {_ci(res['lead'])}; training {rec['seconds']:.0f} s",
          flush=True)
    return res


def _margins(part: dict) -> str:
    served = part.get("forward_margin_served")
    return f"{_ci(part.get('forward_margin'))} ({served['diff']:+.4f})" if served else "-"


def markdown(rows: list, trained: dict) -> str:
    head = ("| lever | C | val cosine | − plain [95 %] | − article [95 %] | − best baseline (val) [95 %] | val "
            "contrastive acc. (best baseline's) | val forward margin [95 %] (served) | training s | fiction cosine | "
            "fiction − article [95 %] | fiction − best baseline [95 %] | fiction contrastive acc. (best baseline's) | "
            "fiction forward margin [95 %] (served) |\n"
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
    out = []
    for r in rows:
        v, f = r["val"], r["fiction"]
        secs = sum(trained[m]["seconds"] for m in ENSEMBLES.get(r["lever"], (r["lever"],)))
        out.append(f"| {r['lever']} | {r['context']} | {v['cosine']:.4f} | {_ci(v['minus_plain'])} | "
                   f"{_ci(v.get('minus_article'))} | {_ci(v['minus_best_baseline'])} ({v['best_baseline']}) | "
                   f"{v['contrastive_accuracy']:.4f} ({v['best_baseline_contrastive_accuracy']:.4f}) | "
                   f"{_margins(v)} | {secs:.0f} | "
                   f"{f['cosine']:.4f} | {_ci(f.get('minus_article'))} | {_ci(f['minus_best_baseline'])} "
                   f"({f['best_baseline']}) | {f['contrastive_accuracy']:.4f} "
                   f"({f['best_baseline_contrastive_accuracy']:.4f}) | {_margins(f)} |")
    return head + "\n".join(out)


def main(argv=None) -> list:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--levers", default=",".join([*LEVERS, *ENSEMBLES]))
    p.add_argument("--out", type=Path, default=None, help="bench/heldout_quality.py's folder (its default)")
    p.add_argument("--list", action="store_true", help="print the levers and exit")
    p.add_argument("--fiction-ceiling", action="store_true",
                   help="also the in-domain ceiling: the default model trained and scored on fiction")
    args = p.parse_args(argv)
    if args.list:
        for k, v in {**LEVERS, **ENSEMBLES}.items():
            print(f"{k}: {v}")
        return []
    from lvm.util.paths import data_dir

    out = (args.out or data_dir() / "heldout-bench").resolve()
    names = args.levers.split(",")
    unknown = [n for n in names if n not in LEVERS and n not in ENSEMBLES]
    if unknown:
        raise SystemExit(f"unknown levers {unknown}; --list shows them")
    print(describe_machine(), flush=True)
    t_all = time.perf_counter()
    data = Data(out)
    need = ["plain", "article"] + [m for n in names for m in ENSEMBLES.get(n, (n,))]
    trained = {n: train_lever(n, data, out) for n in dict.fromkeys(need)}
    cache: dict = {}
    rows = [score_lever(n, data, out, cache) for n in dict.fromkeys(["plain", "article", *names])]
    table = markdown(rows, trained)
    print("\n" + table + f"\n\nwall time {time.perf_counter() - t_all:.0f} s; {describe_machine()}", flush=True)
    res = out / "quality_levers.json"
    old = json.loads(res.read_text()) if res.is_file() else {}
    old.update({r["lever"]: {**r, "training": trained.get(r["lever"])} for r in rows})
    if args.fiction_ceiling:
        old["fiction_ceiling"] = fiction_ceiling(data, out)
    res.write_text(json.dumps(old, indent=2, default=str) + "\n")
    return rows


if __name__ == "__main__":
    main()

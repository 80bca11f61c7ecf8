"""Models against baselines on held-out articles: the table the decision and the people read.

Every model and every baseline goes through the same two steps on the same windows: the held-out metrics
(``lvm.evaluation.metrics.score``) and the forward-prediction suite (``lvm.evaluation.forward``), whose flat columns
join the metrics
and whose detail sits under ``"forward"``. Out of distribution (``ood``): a table the models never saw, every
article of it, scored with the baselines fitted on the models' own training split.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from lvm.data.dataset import file_hash, load_split, read_table, split_from_record
from lvm.data.table import window_targets
from lvm.evaluation.baselines import best_baseline, cached_baselines
from lvm.evaluation.heldout import HeldOutSet
from lvm.evaluation.metrics import (
    article_starts,
    on_context,
    paired_difference,
    per_example_cosine,
    predict_rows,
)
from lvm.evaluation.predictors import model_predictor
from lvm.evaluation.suite import score_predictors
from lvm.models.io import read_config
from lvm.util.interval import Interval

BASELINES = ("global_mean", "last_context", "context_mean", "ridge", "article_mean", "article_blend")
COLUMNS = ("cosine", "hit@1", "hit@5", "mrr", "direction_margin", "forward_margin", "shuffle_drop",
           "contrastive_accuracy", "paraphrase_ratio", "rollout@5")


def score_all(predictors: dict, held: HeldOutSet, seed: int = 0, order_tests: bool = True, log=None
              ) -> tuple[dict, dict]:
    """(metrics {name: flat dict + "forward"}, cosines {name: cos(prediction, next) per window}) for ``Windows``
    predictors on a held-out set: lvm.evaluation.suite.score_predictors."""
    return score_predictors(predictors, held, seed=seed, order_tests=order_tests, log=log)


def check_compatible(table, path, dim: int, encoder: str | None, what: str) -> None:
    """A table scored by a model must have the model's D and encoder (when both name one)."""
    if table.dim != int(dim):
        raise ValueError(f"{path} has D={table.dim} but {what} expects D={dim}: score it with a table embedded "
                         f"by the same encoder")
    other = table.meta.get("encoder")
    if encoder and other and str(other) != str(encoder):
        raise ValueError(f"{path} was embedded with encoder {other!r} but {what} was trained on {encoder!r}: "
                         f"vectors of different encoders are not comparable")


def _ood(table_path, model_fns: dict, fitted: dict, context: int, dim: int, encoder, val_cosine: dict,
         log=None) -> dict:
    table = read_table(table_path, validate=False)
    check_compatible(table, table_path, dim, encoder, "the trained models")
    try:
        held = HeldOutSet.of(table, None, context, str(table_path))
    except ValueError:
        raise ValueError(f"{table_path} has no window of context {context}") from None
    metrics, _ = score_all({**model_fns, **fitted}, held, log=log)
    gap = {k: val_cosine[k] - metrics[k]["cosine"] for k in val_cosine if k in metrics}
    return {"data": str(table_path), "data_hash": file_hash(table_path), "n": len(held),
            "articles": int(len(np.unique(held.starts))), "models": {k: metrics[k] for k in model_fns},
            "baselines": {k: metrics[k] for k in fitted}, "val_minus_ood": gap}


def compare(table_path: str, split_path: str, model_dirs: dict[str, str], context: int, part: str = "test",
            ood_path: str | None = None, log=None) -> dict:
    """Every model and baseline (fitted on the train part only) evaluated on `part`, forward suite included; the
    bank for retrieval is every sentence of that part. With `ood_path`, also every article of that table, and
    each predictor's validation cosine minus its OOD cosine. `log(str)`: what it is doing, as it goes."""
    say = log or (lambda m: None)
    table = read_table(table_path, validate=False)
    split = load_split(split_path)
    held = HeldOutSet.of(table, split.part(part), context, part)
    train_t = window_targets(table.article_id, table.position, context, split.train)
    say(f"fitting the baselines on {len(train_t):,} training windows")
    fitted = cached_baselines(table.vectors, train_t, context, file_hash(table_path), split.record(), held.starts)
    model_fns = {arch: on_context(model_predictor(d)) for arch, d in model_dirs.items()}
    say(f"scoring {len(model_fns)} models and {len(fitted)} baselines on {len(held):,} {part} windows "
        f"({held.articles} articles)")
    metrics, cosines = score_all({**model_fns, **fitted}, held, log=say)
    models = {k: metrics[k] for k in model_fns}
    baselines = {k: metrics[k] for k in fitted}
    out = {"part": part, "n": len(held), "context": context, "models": models, "baselines": baselines,
           "baseline_fit": {k: b.info for k, b in fitted.items()}}
    if models:
        out["vs_best_baseline"] = paired_vs_best(cosines, models, baselines, held)
    if ood_path:
        val_t = window_targets(table.article_id, table.position, context, split.val)
        val = {}
        if len(val_t):
            for name, fn in {**model_fns, **fitted}.items():
                val[name] = float(per_example_cosine(predict_rows(fn, table.vectors, val_t, context, held.starts),
                                                     table.vectors[val_t]).mean())
        say(f"scoring every article of {ood_path} (out of distribution)")
        out["ood"] = _ood(ood_path, model_fns, fitted, context, table.dim, table.meta.get("encoder"), val, say)
    return out


def paired_vs_best(cosines: dict, models: dict, baselines: dict, held: HeldOutSet) -> dict:
    """Each model's cosine minus the best baseline's, window by window, with its 95 % article-bootstrap interval
    (cosines: per-window cos(prediction, next) of every predictor, from score_all)."""
    return _lead(cosines, models, best_baseline(baselines)["name"], held.target_groups)


def _lead(cosines: dict, models, name: str, groups: np.ndarray) -> dict:
    """{"baseline", "metric", "models": {model: paired difference to baseline `name`}} from per-window cosines."""
    return {"baseline": name, "metric": "cosine",
            "models": {a: paired_difference(cosines[a], cosines[name], groups) for a in models}}


def held_out_scores(fn, table, split, context: int, parts=("val", "test"), baselines=None, arch: str = "model",
                    log=None) -> dict:
    """Model (and baselines, when given, with the model's paired difference to the best) on each part, through the
    one-pass suite (forward columns included; the order tests on the test part only); the retrieval bank is the
    part's rows. `fn` maps a ``Windows`` batch to predictions (a network's, through
    ``lvm.evaluation.predictors.windows_predict``: it may read the article before each window)."""
    out = {}
    for part in parts:
        try:
            held = HeldOutSet.of(table, split.part(part), context, part)
        except ValueError:  # no window in this part
            continue
        metrics, cosines = score_all({arch: fn, **(baselines or {})}, held, order_tests=part == "test", log=log)
        m = metrics[arch]
        out[part] = {"model": m}
        if baselines:
            b = {k: metrics[k] for k in baselines}
            best = best_baseline(b)
            out[part].update(baselines=b, best_baseline=best, margin_over_best_baseline=m["cosine"] - best["cosine"],
                             beats_all_baselines=all(m["cosine"] > v["cosine"] for v in b.values()),
                             vs_best_baseline=_lead(cosines, [arch], best["name"], held.target_groups))
    return out


def evaluate_model(model_dir, data_path, part: str = "test", train_data=None, log=None) -> dict:
    """`lvm evaluate`: a saved model against every baseline, forward suite included.

    The table the model was trained on (same content hash as config.json records): the `part` of its split.
    Any other table (same encoder and D, else a clear error): every article of it, out of distribution, with
    the baselines fitted on the model's own training split, read from `train_data` or the path config.json
    records (it must still have the recorded content)."""
    if part not in ("train", "val", "test"):
        raise ValueError(f"part must be train, val or test, got {part!r}")
    config = read_config(model_dir)  # the weights are loaded once, by model_predictor below
    data_path = Path(data_path)
    table = read_table(data_path)
    C, arch = int(config["context"]), config["arch"]
    check_compatible(table, data_path, config["dim"], config.get("encoder"), f"the model in {model_dir}")
    data_hash = file_hash(data_path)
    same = data_hash == config.get("data_hash")
    rec = config.get("split") or {}
    fn = {arch: on_context(model_predictor(model_dir))}
    if same:
        train_table, train_path = table, data_path
    else:
        train_path = Path(train_data or config.get("dataset") or "")
        if not str(train_path) or not train_path.is_file():
            raise ValueError(f"{data_path} is not the model's training table, and the training table "
                             f"{str(train_path) or '(not recorded)'} in {model_dir}/config.json is not there: the "
                             f"baselines must be fitted on the model's own training split (pass --train-data)")
        if file_hash(train_path) != config.get("data_hash"):
            raise ValueError(f"{train_path} does not have the content the model in {model_dir} was trained on "
                             f"(data_hash {config.get('data_hash')}): pass --train-data with that table")
        train_table = read_table(train_path)
    split = split_from_record(train_table, rec)
    same_split = bool(rec) and rec.get("article_ids_sha256") == split.record()["article_ids_sha256"]
    train_starts = article_starts(train_table.position)
    train_t = window_targets(train_table.article_id, train_table.position, C, split.train)
    fitted = cached_baselines(train_table.vectors, train_t, C, file_hash(train_path), split.record(), train_starts)
    if same:
        try:
            held = HeldOutSet.of(table, split.part(part), C, part)
        except ValueError:
            raise ValueError(f"the {part} split of {data_path} has no windows of context {C}") from None
    else:
        part = "all"
        try:
            held = HeldOutSet.of(table, None, C, part)
        except ValueError:
            raise ValueError(f"{data_path} has no window of context {C}") from None
    metrics, cosines = score_all({**fn, **fitted}, held, log=log)
    models, baselines = {arch: metrics[arch]}, {k: metrics[k] for k in fitted}
    best = best_baseline(baselines)
    return {"part": part, "model_dir": str(model_dir), "arch": arch, "n": len(held), "data": str(data_path),
            "model": models[arch], "models": models, "baselines": baselines,
            "vs_best_baseline": paired_vs_best(cosines, models, baselines, held),
            "beats_all_baselines": all(models[arch]["cosine"] > b["cosine"] for b in baselines.values()),
            "best_baseline": best, "margin_over_best_baseline": models[arch]["cosine"] - best["cosine"],
            "data_hash": data_hash, "same_data": same, "out_of_distribution": not same,
            "train_data": str(train_path), "same_split": same_split}


def _cell(v) -> str:
    return "-" if v is None or (isinstance(v, float) and not np.isfinite(v)) else f"{v:.4f}"


def compact_table(comparison: dict) -> str:
    """Five columns that fit a page (the decision artifact): cosine, the lead over the best baseline and the forward
    margin with their intervals, the shuffle drop; every other number is in markdown_table and table_rows."""
    paired = (comparison.get("vs_best_baseline") or {}).get("models", {})
    rows = ["| | cosine | − best baseline [95 %] | forward margin [95 %] | shuffle drop |", "|---|---:|---:|---:|---:|"]
    for kind in ("models", "baselines"):
        for name, m in sorted(comparison[kind].items(), key=lambda kv: -kv[1]["cosine"]):
            f = m.get("forward") or {}
            lead = str(Interval.of(paired.get(name))) if kind == "models" else ""
            rows.append(f"| {f'**{name}**' if kind == 'models' else name + ' (baseline)'} | {_cell(m['cosine'])} | "
                        f"{lead} | {Interval.of(f.get('forward_margin'))} | {_cell(m.get('shuffle_drop'))} |")
    return "\n".join(rows)


def markdown_table(comparison: dict) -> str:
    """Models first, then baselines, each row with every metric; then the forward detail."""
    head = "| | " + " | ".join(COLUMNS) + " |\n|---|" + "---:|" * len(COLUMNS) + "\n"
    rows = []
    for kind in ("models", "baselines"):
        for name, m in sorted(comparison[kind].items(), key=lambda kv: -kv[1]["cosine"]):
            label = f"**{name}**" if kind == "models" else f"{name} (baseline)"
            rows.append(f"| {label} | " + " | ".join(_cell(m.get(c)) for c in COLUMNS) + " |")
    paired = comparison.get("vs_best_baseline")
    if paired and paired.get("models"):
        diffs = ", ".join(f"{arch} {Interval.of(p)}"
                          for arch, p in sorted(paired["models"].items(), key=lambda kv: -kv[1]["diff"]))
        groups = next(iter(paired["models"].values()))["groups"]
        rows.append(f"\ncosine minus {paired['baseline']} (the best baseline), 95% interval from resampling the "
                    f"{groups} held-out articles: {diffs}")
    out = head + "\n".join(rows)
    fwd = forward_table(comparison)
    if fwd:
        out += "\n\n" + fwd
    ood = comparison.get("ood")
    if ood:
        out += (f"\n\nOut of distribution: `{ood['data']}` ({ood['articles']} articles, {ood['n']} windows; "
                "baselines fitted on the training split)\n\n" + markdown_table(
                    {k: ood[k] for k in ("models", "baselines")}).split("\n\n")[0])
        if ood.get("val_minus_ood"):
            out += "\n\nvalidation − OOD cosine: " + ", ".join(
                f"{k} {v:+.4f}" for k, v in sorted(ood["val_minus_ood"].items(), key=lambda kv: kv[1]))
    return out


def forward_table(comparison: dict) -> str:
    """The forward suite's detail: margins with intervals, ablation drops, rollout cosines (empty without it)."""
    items = [(n, m["forward"], kind) for kind in ("models", "baselines")
             for n, m in comparison[kind].items() if m.get("forward")]
    if not items:
        return ""
    steps = items[0][1]["rollout"]["steps"]
    head = ("| forward suite | forward margin [95%] | served forward margin [95%] | direction margin (vs last input) "
            "[95%] | shuffled drop | reversed drop | mean drop | " + " | ".join(f"rollout {s}" for s in steps)
            + " |\n|---|" + "---:|" * (6 + len(steps)) + "\n")

    def ci(d):
        if d.get("diff") is None:
            return "-"
        return str(Interval.of(d))

    rows = []
    for name, f, kind in items:
        label = f"**{name}**" if kind == "models" else f"{name} (baseline)"
        ab = f["ablations"]
        roll = f["rollout"]["cosine"] or [None] * len(steps)
        rows.append(f"| {label} | {ci(f['forward_margin'])} | {ci(f['forward_margin_served'])} | "
                    f"{ci(f['direction_margin'])} | "
                    + " | ".join(f"{ab[k]['drop']:+.4f}" for k in ("shuffled", "reversed", "mean")) + " | "
                    + " | ".join(_cell(v) for v in roll) + " |")
    return head + "\n".join(rows)


def table_rows(comparison: dict) -> list[dict]:
    """Rows for a Prefect table artifact."""
    def r(v):
        return None if v is None or not np.isfinite(v) else round(float(v), 4)
    out = [{"name": name, "kind": kind[:-1], **{c: r(m.get(c)) for c in COLUMNS}}
           for kind in ("models", "baselines") for name, m in comparison[kind].items()]
    ood = comparison.get("ood")
    if ood:
        out += [{"name": name, "kind": f"{kind[:-1]} (OOD)", **{c: r(m.get(c)) for c in COLUMNS}}
                for kind in ("models", "baselines") for name, m in ood[kind].items()]
    return out

"""Models against baselines on one part of a split: the table the decision and the people read."""

from __future__ import annotations

import numpy as np

from lvm.checkpoint import load_model
from lvm.dataset import load_split, read_table, window_targets
from lvm.metrics import (evaluate_baselines, fit_baselines, paired_difference, per_example_cosine,
                         predict_windows, score)

BASELINES = ("global_mean", "last_context", "context_mean", "ridge")
COLUMNS = ("cosine", "hit@1", "hit@5", "mrr", "direction_margin")


def predictor(model_dir: str):
    """A numpy ctx → unit-vector function for a saved model (fp32 inference on CPU)."""
    import torch

    model, _ = load_model(model_dir)

    def predict(ctx: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            out = model(torch.from_numpy(ctx)).float()
            return torch.nn.functional.normalize(out, dim=-1).numpy()

    return predict


def compare(table_path: str, split_path: str, model_dirs: dict[str, str], context: int, part: str = "test") -> dict:
    """Every model and baseline (fitted on the train part only) evaluated on `part`; the bank for retrieval is
    every sentence of that part."""
    table = read_table(table_path, validate=False)
    split = load_split(split_path)
    train_t = window_targets(table.article_id, table.position, context, split.train)
    rows = split.part(part)
    eval_t = window_targets(table.article_id, table.position, context, rows)
    if len(eval_t) == 0:
        raise ValueError(f"the {part} split of {table_path} has no windows of context {context}")
    fitted = fit_baselines(table.vectors, train_t, context)
    baselines = evaluate_baselines(fitted, table.vectors, eval_t, rows, context)
    preds = {arch: predict_windows(predictor(d), table.vectors, eval_t, context) for arch, d in model_dirs.items()}
    models = {arch: score(p, table.vectors, eval_t, rows, context) for arch, p in preds.items()}
    out = {"part": part, "n": int(len(eval_t)), "context": context, "models": models, "baselines": baselines}
    if models:
        out["vs_best_baseline"] = vs_best_baseline(preds, fitted, baselines, table, eval_t, context)
    return out


def vs_best_baseline(preds: dict[str, np.ndarray], fitted: dict, baselines: dict, table, eval_t,
                     context: int) -> dict:
    """Each model's cosine (its predictions `preds[arch]` for windows `eval_t`) minus the best baseline's, window by
    window, with a 95% interval from resampling the evaluation articles: is "beats the baseline" more than the luck
    of which articles were held out?"""
    name = max(baselines, key=lambda k: baselines[k]["cosine"])
    tgt = table.vectors[eval_t]
    base = per_example_cosine(predict_windows(fitted[name].predict, table.vectors, eval_t, context), tgt)
    groups = np.asarray(table.article_id)[eval_t]
    return {"baseline": name, "metric": "cosine",
            "models": {arch: paired_difference(per_example_cosine(p, tgt), base, groups) for arch, p in preds.items()}}


def markdown_table(comparison: dict) -> str:
    """Models first, then baselines, each row with every metric."""
    head = "| | " + " | ".join(COLUMNS) + " |\n|---|" + "---:|" * len(COLUMNS) + "\n"
    rows = []
    for kind in ("models", "baselines"):
        for name, m in sorted(comparison[kind].items(), key=lambda kv: -kv[1]["cosine"]):
            label = f"**{name}**" if kind == "models" else f"{name} (baseline)"
            rows.append(f"| {label} | " + " | ".join(f"{m[c]:.4f}" for c in COLUMNS) + " |")
    paired = comparison.get("vs_best_baseline")
    if paired:
        diffs = ", ".join(f"{arch} {p['diff']:+.4f} [{p['ci95'][0]:+.4f}, {p['ci95'][1]:+.4f}]"
                          for arch, p in sorted(paired["models"].items(), key=lambda kv: -kv[1]["diff"]))
        groups = next(iter(paired["models"].values()))["groups"]
        rows.append(f"\ncosine minus {paired['baseline']} (the best baseline), 95% interval from resampling the "
                    f"{groups} held-out articles: {diffs}")
    return head + "\n".join(rows)


def table_rows(comparison: dict) -> list[dict]:
    """Rows for a Prefect table artifact."""
    return [{"name": name, "kind": kind[:-1], **{c: round(float(m[c]), 4) for c in COLUMNS}}
            for kind in ("models", "baselines") for name, m in comparison[kind].items()]

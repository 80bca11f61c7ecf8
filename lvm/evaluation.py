"""Models against baselines on one part of a split: the table the decision and the people read."""

from __future__ import annotations

import numpy as np

from lvm.checkpoint import load_model
from lvm.dataset import load_split, read_table, window_targets
from lvm.metrics import evaluate, evaluate_baselines, fit_baselines

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
    baselines = evaluate_baselines(fit_baselines(table.vectors, train_t, context), table.vectors, eval_t, rows, context)
    models = {arch: evaluate(predictor(d), table.vectors, eval_t, rows, context) for arch, d in model_dirs.items()}
    return {"part": part, "n": int(len(eval_t)), "context": context, "models": models, "baselines": baselines}


def markdown_table(comparison: dict) -> str:
    """Models first, then baselines, each row with every metric."""
    head = "| | " + " | ".join(COLUMNS) + " |\n|---|" + "---:|" * len(COLUMNS) + "\n"
    rows = []
    for kind in ("models", "baselines"):
        for name, m in sorted(comparison[kind].items(), key=lambda kv: -kv[1]["cosine"]):
            label = f"**{name}**" if kind == "models" else f"{name} (baseline)"
            rows.append(f"| {label} | " + " | ".join(f"{m[c]:.4f}" for c in COLUMNS) + " |")
    return head + "\n".join(rows)


def table_rows(comparison: dict) -> list[dict]:
    """Rows for a Prefect table artifact."""
    return [{"name": name, "kind": kind[:-1], **{c: round(float(m[c]), 4) for c in COLUMNS}}
            for kind in ("models", "baselines") for name, m in comparison[kind].items()]

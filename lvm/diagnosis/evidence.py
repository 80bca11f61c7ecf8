"""The evidence of a finished training run, recomputed on the very split it was trained and scored on.

`diagnose(run_dir)` reads a training run folder (docs/ARCHITECTURE.md: run.json pointing at the dataset, the split
and every trained model folder) and returns a `Diagnosis` (`lvm.diagnosis.rules` names what the numbers mean):

- data: articles, sentences, D, mean-vector norm (anisotropy: 0 = directions spread evenly, 1 = all alike),
  duplicate rate, windows and articles per split (`lvm.data.dataset.table_stats`);
- baselines, fitted on the train split only, scored on the test split (val when test has no window);
- per model: test cosine; eval-mode cosine of the saved model on (a sample of) the train windows and on the val
  windows, whose difference is the train-validation gap; learning curves from history.json (when validation
  peaked and whether training cosine kept rising after it); prediction spread (collapse); the direction margin
  cos(pred, next) - cos(pred, last context) and cos(pred, last context);
- the forward suite (`lvm.evaluation.forward`) for every model and baseline on the same windows.

It writes nothing: `lvm.diagnosis.render.write_report` does, so a diagnosis can be read, tested or rendered
elsewhere without touching the run folder.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from lvm.data.dataset import DEFAULT_FRACTIONS, file_hash, load_split, read_table, split_articles, table_stats
from lvm.data.table import gather_windows, window_targets
from lvm.diagnosis.rules import (
    EARLY_PEAK_FRACTION,
    MAX_TRAIN_EVAL,
    STILL_IMPROVING_TOL,
    TRAIN_RISE,
    Diagnosis,
    ModelReport,
    finite,
    judge,
)
from lvm.evaluation.baselines import best_baseline, cached_baselines
from lvm.evaluation.compare import score_all
from lvm.evaluation.heldout import HeldOutSet
from lvm.evaluation.metrics import article_starts, per_example_cosine, predict_rows
from lvm.evaluation.predictors import model_predictor
from lvm.store.runs import read_decision, read_run


def _read_history(model_dir: Path) -> list[dict]:
    """history.json of a model folder as a list of epochs; [] when it is missing or unreadable (the curves are
    then skipped, the rest of the diagnosis stands)."""
    path = model_dir / "history.json"
    if not path.is_file():
        return []
    try:
        hist = json.loads(path.read_text())
    except json.JSONDecodeError:
        return []
    if isinstance(hist, dict):  # tolerate {"epochs": [...]} or {"history": [...]}
        hist = hist.get("history") or hist.get("epochs") or []
    return [h for h in hist if isinstance(h, dict)]


def history_summary(hist: list[dict]) -> dict:
    """Best-val epoch, train/val at it and at the end, and the two trend flags."""
    rows = [(h, finite(h.get("train_cosine")), finite(h.get("val_cosine"))) for h in hist]
    rows = [(h, t, v) for h, t, v in rows if v is not None]
    if not rows:
        return {}
    n = len(rows)
    vals = np.array([v for _, _, v in rows])
    trains = [t for _, t, _ in rows]
    ib = int(np.argmax(vals))
    best_h, best_t, best_v = rows[ib]
    last_h, last_t, last_v = rows[-1]
    out = {"epochs": n, "best_epoch": int(best_h.get("epoch", ib + 1)), "best_val_cosine": best_v,
           "train_cosine_at_best": best_t, "final_train_cosine": last_t, "final_val_cosine": last_v,
           "final_gap": (last_t - last_v) if last_t is not None else None,
           "gap_at_best": (best_t - best_v) if best_t is not None else None}
    rise = None
    if best_t is not None and any(t is not None for t in trains[ib:]):
        rise = max(t for t in trains[ib:] if t is not None) - best_t
    out["train_rise_after_best"] = rise
    out["peaked_early"] = bool(n >= 4 and (ib + 1) <= EARLY_PEAK_FRACTION * n and rise is not None
                               and rise >= TRAIN_RISE)
    tail = vals[-3:]
    out["still_improving"] = bool(n >= 3 and vals[-1] >= vals.max() - STILL_IMPROVING_TOL
                                  and np.all(np.diff(tail) > 0))
    return out


def _spread(pred: np.ndarray, tgt: np.ndarray) -> dict:
    """Collapse measures over the evaluation windows (unit vectors): mean pairwise cosine of predictions and of
    targets, and the ratio of their mean per-dimension standard deviations."""
    def unit(x):
        x = np.asarray(x, dtype=np.float64)
        return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)

    def pairwise(u):
        n = len(u)
        if n < 2:
            return float("nan")
        s = u.sum(0)
        return float((s @ s - (u * u).sum()) / (n * (n - 1)))

    p, t = unit(pred), unit(tgt)
    ps, ts = float(p.std(0).mean()), float(t.std(0).mean())
    return {"pred_pairwise_cosine": pairwise(p), "target_pairwise_cosine": pairwise(t),
            "pred_dim_std": ps, "target_dim_std": ts, "spread_ratio": ps / max(ts, 1e-12)}


def _run_scores(run_dir: Path, part: str, n: int, data_changed: bool) -> dict | None:
    """The run's own comparison.json (what its decision read: the same windows, bootstrap draws and numbers), when
    it scored this part of unchanged data; None otherwise."""
    path = run_dir / "comparison.json"
    if data_changed or not path.is_file():
        return None
    try:
        comp = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    ok = comp.get("part") == part and comp.get("n") == n and all(
        "forward" in v for kind in ("models", "baselines") for v in (comp.get(kind) or {}).values())
    return {"models": comp.get("models") or {}, "baselines": comp.get("baselines") or {}} if ok else None


def _loadable(model_dirs: dict) -> dict:
    """{arch: predictor} of the models that load; one that does not is reported by the per-model loop."""
    out = {}
    for arch, d in model_dirs.items():
        try:
            out[arch] = model_predictor(d)
        except (FileNotFoundError, ValueError):
            pass
    return out


def diagnose(run_dir, log=None) -> Diagnosis:
    """Diagnose a finished training run folder: the evidence, judged by `lvm.diagnosis.rules`. Writes nothing.
    `log(str)`: what it is doing, as it goes."""
    say = log or (lambda m: None)
    run_dir = Path(run_dir)
    run = read_run(run_dir)
    run_name = str(run.get("run_name") or run_dir.name)
    context = int(run["context"])
    data_path = Path(run["data_path"])
    table = read_table(data_path, validate=False)
    data_changed = bool(run.get("data_sha256")) and file_hash(data_path) != run["data_sha256"]
    split_path = run.get("split_path")
    if split_path and Path(split_path).is_file():
        split = load_split(split_path)
    else:  # an older run: the flow's default split
        split = split_articles(table, DEFAULT_FRACTIONS, 0, method="permutation")  # what older runs used
    data = table_stats(table, context, split)
    data.pop("meta", None)
    data["encoder"] = run.get("encoder") or table.meta.get("encoder", "unknown")
    vecs = table.vectors
    targets = {p: window_targets(table.article_id, table.position, context, split.part(p))
               for p in ("train", "val", "test")}
    if len(targets["train"]) == 0:
        raise ValueError(f"{run_dir}: the train split has no windows of context {context}")
    eval_part = "test" if len(targets["test"]) else "val"
    eval_t = targets[eval_part]
    if len(eval_t) == 0:
        raise ValueError(f"{run_dir}: neither the test nor the val split has a window of context {context}")
    ctx, tgt = gather_windows(vecs, eval_t, context)
    last = ctx[:, -1]
    rng = np.random.default_rng(0)
    train_s = targets["train"]
    if len(train_s) > MAX_TRAIN_EVAL:
        train_s = np.sort(rng.choice(train_s, MAX_TRAIN_EVAL, replace=False))

    per_example: dict[str, np.ndarray] = {}
    starts = article_starts(table.position)
    held = HeldOutSet.of(table, split.part(eval_part), context, eval_part)
    fitted = cached_baselines(vecs, targets["train"], context, file_hash(data_path), split.record(), starts)
    scored = _run_scores(run_dir, eval_part, len(eval_t), data_changed)
    say(f"diagnosis of {run_name}: the {eval_part} part's {len(eval_t):,} windows; " + (
        "the run's own scores (comparison.json)" if scored else "no usable comparison.json: scoring them here"))
    if scored is None:  # an older run, or its data changed: score here, the one way the flow scores
        metrics, _ = score_all({**_loadable(run["models"]), **fitted}, held)
        scored = {"models": {k: v for k, v in metrics.items() if k not in fitted},
                  "baselines": {k: v for k, v in metrics.items() if k in fitted}}
    forward = {**{f"{k} (baseline)": v["forward"] for k, v in scored["baselines"].items()},
               **{k: v["forward"] for k, v in scored["models"].items()}}
    baselines = {k: {"cosine": v["cosine"], "direction_margin": v["direction_margin"]}
                 for k, v in scored["baselines"].items()}
    for name, b in fitted.items():
        per_example[f"{name} (baseline)"] = per_example_cosine(predict_rows(b, vecs, eval_t, context, starts), tgt)
    best_base = best_baseline(baselines)
    if best_base is None:
        raise ValueError(f"{run_dir}: no baseline has a finite cosine on the {eval_part} windows "
                         "(non-finite vectors in the table?)")

    models: dict[str, ModelReport] = {}
    curves = {}
    for arch, mdir in run["models"].items():
        mdir = Path(mdir)
        m = ModelReport(arch, str(mdir))
        hist = _read_history(mdir)
        curves[arch] = hist
        m.history = history_summary(hist)
        try:
            predict = model_predictor(mdir)
        except (FileNotFoundError, ValueError) as e:
            m.error = str(e)
            models[arch] = m
            continue
        say(f"diagnosis: {arch}'s predictions on the {eval_part}, training and validation windows")
        m.parameters = predict.parameters
        m.residual = bool(predict.config.get("residual", False))
        m.loss = dict(predict.config.get("loss") or {})
        batch = (predict.config.get("train") or {}).get("batch_size")
        if isinstance(batch, int):  # the largest batch of the run's models: one step an epoch when >= the windows
            data["batch_size"] = max(batch, data.get("batch_size") or 0)
        # unit vectors: every measure below is a cosine or a spread of unit vectors
        pred = predict_rows(predict, vecs, eval_t, context, starts)
        pe = per_example_cosine(pred, tgt)
        per_example[arch] = pe
        cl = per_example_cosine(pred, last)
        m.cos_to_last_context = float(cl.mean())
        saved = scored["models"].get(arch) or {}
        m.test_cosine = float(saved.get("cosine", pe.mean()))  # the run's own number, which the decision read
        m.direction_margin = float(saved.get("direction_margin", (pe - cl).mean()))
        m.spread = _spread(pred, tgt)
        m.train_cosine = float(per_example_cosine(predict_rows(predict, vecs, train_s, context, starts),
                                                  vecs[train_s]).mean())
        if len(targets["val"]):
            m.val_cosine = float(per_example_cosine(predict_rows(predict, vecs, targets["val"], context, starts),
                                                    vecs[targets["val"]]).mean())
        else:
            m.val_cosine = m.test_cosine
        m.gap = m.train_cosine - m.val_cosine
        models[arch] = m

    thresholds = {k: run[k] for k in ("baseline_threshold", "deploy_threshold") if k in run}
    failed = dict(run.get("failed") or {})
    verdict, best, findings, summary = judge(models, baselines, best_base, data, forward, eval_part, thresholds,
                                             failed, data_changed, gates=run.get("gates") or {})
    return Diagnosis(run_name=run_name, run_dir=str(run_dir), verdict=verdict, summary=summary, eval_part=eval_part,
                     best_model=best, data=data, baselines=baselines, models=models, findings=findings, failed=failed,
                     thresholds=thresholds, decision=read_decision(run_dir), curves=curves, per_example=per_example,
                     forward=forward)

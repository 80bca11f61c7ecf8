"""The investigate branch: a diagnosis of a finished training run that a person can act on, with plots.

`diagnose(run_dir)` reads a training run folder (docs/ARCHITECTURE.md: run.json pointing at the dataset, the split
and every trained model folder), recomputes the evidence on the very same split, and returns a `Diagnosis`:

- data: articles, sentences, D, mean-vector norm (anisotropy: 0 = directions spread evenly, 1 = all alike),
  duplicate rate, windows and articles per split (`lvm.dataset.table_stats`);
- baselines, fitted on the train split only, scored on the test split (val when test has no window);
- per model: test cosine; eval-mode cosine of the saved model on (a sample of) the train windows and on the val
  windows, whose difference is the train-validation gap; learning curves from history.json (when validation
  peaked and whether training cosine kept rising after it); prediction spread (collapse); the direction margin
  cos(pred, next) - cos(pred, last context) and cos(pred, last context);
- findings, ranked, each with the numbers behind it and what to try; `verdict` names the main cause.

Verdict rules (for the BEST model by test cosine; the first rule that holds wins):

1. ``no_model``      no model finished training.
2. ``collapse``      spread ratio < COLLAPSE_SPREAD_RATIO: the mean per-dimension std of the (unit) predictions
                     over the evaluation windows is under a quarter of the targets' - the model predicts nearly the
                     same vector whatever the context.
3. ``memorisation``  train-val gap >= MEMORISATION_GAP (eval-mode cosine of the saved model on train windows minus
                     on val windows), or the last epoch's history gap is that large while validation peaked in the
                     first EARLY_PEAK_FRACTION of the epochs and training cosine rose by >= TRAIN_RISE after it.
4. ``copying``       direction margin < COPY_MARGIN and the model gains < COPY_GAIN over the better of the two
                     input-copying baselines (last_context, context_mean). A negative margin alone is not enough:
                     where consecutive sentences are alike the best possible predictor sits near its input.
5. ``underfitting``  the model does not beat the best baseline and does not even fit its own training windows
                     better than that baseline does on the test windows (+ UNDERFIT_MARGIN).
6. ``below_baselines`` the model fits its training windows, generalises with a small gap, and still loses to a
                     baseline (typically ridge or context_mean).
7. ``healthy``       it beats every baseline on the test split with a gap under MEMORISATION_GAP.

Other models' problems and data notes (small data, anisotropy, duplicates, tiny test split, thresholds that even
the baselines cannot reach, training still improving) are listed as further findings.

Forward evidence (``lvm.evaluation.forward``, for every model and baseline on the same windows): the offset-sweep plot, the
ablation table, and per model a ``backward_bias`` finding (forward margin or its interval's low end <= 0) or an
``order_blind`` finding (shuffling the context costs under ``lvm.decision.MIN_SHUFFLE_DROP`` cosine, or its
interval reaches 0), with the numbers; these are findings, not verdicts.

Files (in ``out_dir``, default ``run_dir/report/``): report.md, report.html (standalone, images embedded),
learning_curves_<arch>.png, cosine_hist.png, offset_sweep.png. `markdown_with_images(d)` gives report.md with the images as data:
URIs (for a Prefect markdown artifact). This module never imports prefect.
"""

from __future__ import annotations

import base64
import html
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from lvm.dataset import file_hash, load_split, read_table, split_articles, table_stats
from lvm.table import window_targets
from lvm.decision import MIN_SHUFFLE_DROP
from lvm.evaluation.forward import forward_suite
from lvm.evaluation.metrics import article_starts, fit_baselines, gather, on_context, per_example_cosine, predict_rows

# ------------------------------------------------------------------------------------------------- thresholds

#: train-minus-val cosine at or above which a model is said to memorise (seed: 0.50 train vs 0.027 val).
MEMORISATION_GAP = 0.10
#: validation "peaked early" when its best epoch falls in this first fraction of the epochs run ...
EARLY_PEAK_FRACTION = 0.5
#: ... while training cosine rose by at least this much after that epoch.
TRAIN_RISE = 0.05
#: mean per-dimension std of unit predictions / that of unit targets below this: collapse.
COLLAPSE_SPREAD_RATIO = 0.25
#: below this ratio (but above COLLAPSE_SPREAD_RATIO) predictions are reported as "narrow" (a note, not a verdict).
NARROW_SPREAD_RATIO = 0.5
#: direction margin below this counts towards "copying" ...
COPY_MARGIN = 0.0
#: ... when the model also gains less than this over the best input-copying baseline.
COPY_GAIN = 0.01
#: training-window cosine must exceed the best baseline's test cosine by this much not to be "underfitting".
UNDERFIT_MARGIN = 0.02
#: fewer training windows than this: a data note (the seed memorised ~7k pairs).
SMALL_DATA_WINDOWS = 10_000
#: mean-vector norm at or above this: anisotropic embeddings (the global-mean baseline is strong).
ANISOTROPY_NORM = 0.5
#: duplicate-row rate at or above this: a data note.
DUPLICATE_RATE = 0.05
#: fewer evaluation windows than this: scores are noisy (a data note).
TINY_EVAL_WINDOWS = 100
#: validation cosine within this of its best over the last epochs and still rising: "still improving".
STILL_IMPROVING_TOL = 0.005
#: at most this many training windows are scored to measure the gap (a seeded sample).
MAX_TRAIN_EVAL = 4000

VERDICTS = ("no_model", "collapse", "memorisation", "copying", "underfitting", "below_baselines", "healthy")
COPY_BASELINES = ("last_context", "context_mean")
PLOT_DPI = 80


# ------------------------------------------------------------------------------------------------- results

@dataclass
class Finding:
    """One ranked finding: `kind` (a verdict name or a note such as "small_data"), the model it concerns
    (None: the run or the data), a one-line `title`, the supporting numbers and what to try."""
    kind: str
    title: str
    evidence: dict
    recommendations: list[str] = field(default_factory=list)
    model: str | None = None
    problem: bool = True  # False: an informational note

    def to_dict(self) -> dict:
        return {"kind": self.kind, "model": self.model, "title": self.title, "problem": self.problem,
                "evidence": self.evidence, "recommendations": list(self.recommendations)}


@dataclass
class ModelReport:
    arch: str
    model_dir: str
    parameters: int = 0
    residual: bool = False
    loss: dict = field(default_factory=dict)
    test_cosine: float | None = None
    direction_margin: float | None = None
    cos_to_last_context: float | None = None
    train_cosine: float | None = None  # eval mode, saved model, sample of train windows
    val_cosine: float | None = None  # eval mode, saved model, val windows
    gap: float | None = None  # train_cosine - val_cosine
    history: dict = field(default_factory=dict)  # summary of history.json
    spread: dict = field(default_factory=dict)  # collapse measures
    error: str | None = None  # why the model could not be evaluated

    def to_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass
class Diagnosis:
    run_name: str
    run_dir: str
    out_dir: str
    verdict: str
    summary: str
    eval_part: str
    best_model: str | None
    data: dict
    baselines: dict  # name -> {"cosine", "direction_margin"}
    models: dict  # arch -> ModelReport
    findings: list  # [Finding], ranked
    failed: dict = field(default_factory=dict)
    thresholds: dict = field(default_factory=dict)  # run.json baseline/deploy thresholds
    decision: dict = field(default_factory=dict)  # decision.json of the run, when there is one
    files: dict = field(default_factory=dict)  # name -> path of written files
    curves: dict = field(default_factory=dict, repr=False)  # arch -> history list
    per_example: dict = field(default_factory=dict, repr=False)  # label -> per-example test cosines
    forward: dict = field(default_factory=dict, repr=False)  # label -> lvm.evaluation.forward suite on the eval windows

    def to_dict(self) -> dict:
        return {"run_name": self.run_name, "run_dir": self.run_dir, "verdict": self.verdict, "summary": self.summary,
                "eval_part": self.eval_part, "best_model": self.best_model, "data": self.data,
                "baselines": self.baselines, "models": {k: m.to_dict() for k, m in self.models.items()},
                "findings": [f.to_dict() for f in self.findings], "failed": self.failed,
                "thresholds": self.thresholds, "decision": self.decision, "files": self.files,
                "forward": self.forward}

    def to_markdown(self, images: str = "link") -> str:
        """The report as markdown; images "link" (relative file names), "embed" (data: URIs) or "none"."""
        return _render_markdown(_blocks(self, images), images)

    def to_html(self) -> str:
        """A standalone HTML page, images embedded as base64."""
        return _render_html(_blocks(self, "embed"), f"LVM diagnosis: {self.run_name}")


def markdown_with_images(diagnosis: Diagnosis) -> str:
    """report.md with every PNG embedded as a data: URI (for a Prefect markdown artifact)."""
    return diagnosis.to_markdown(images="embed")


# ------------------------------------------------------------------------------------------------- evidence

def _load_run(run_dir: Path) -> dict:
    path = run_dir / "run.json"
    if not path.is_file():
        raise FileNotFoundError(f"{run_dir} is not a training run folder: it has no run.json")
    try:
        run = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path} is not valid JSON ({e})") from None
    for key in ("data_path", "context"):
        if key not in run:
            raise ValueError(f"{path} lacks {key!r}")
    return run


def _resolve(run_dir: Path, p: str) -> Path:
    q = Path(p)
    return q if q.is_absolute() or q.exists() else run_dir / q


def _read_history(model_dir: Path) -> list[dict]:
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


def _num(x) -> float | None:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v if np.isfinite(v) else None


def _history_summary(hist: list[dict]) -> dict:
    """Best-val epoch, train/val at it and at the end, and the two trend flags."""
    rows = [(h, _num(h.get("train_cosine")), _num(h.get("val_cosine"))) for h in hist]
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


def _predictor(model_dir: Path):
    import torch

    from lvm.models.io import load_model
    from lvm.models import count_parameters

    model, config = load_model(model_dir)

    def predict(ctx: np.ndarray, batch: int = 2048) -> np.ndarray:
        outs = []
        with torch.inference_mode():
            for s in range(0, len(ctx), batch):
                outs.append(model(torch.from_numpy(np.ascontiguousarray(ctx[s:s + batch], np.float32))).float().numpy())
        return np.concatenate(outs) if outs else np.zeros((0, config["dim"]), np.float32)

    return predict, config, count_parameters(model)


# ------------------------------------------------------------------------------------------------- findings

def _loss_label(loss: dict) -> str:
    active = {k: v for k, v in (loss or {}).items() if k != "temperature" and isinstance(v, (int, float)) and v > 0}
    return " + ".join(f"{v:g}·{k}" for k, v in active.items()) or "unknown"


def _infonce_led(loss: dict) -> bool:
    w = {k: float(v) for k, v in (loss or {}).items() if isinstance(v, (int, float))}
    return w.get("infonce", 0) > 0 and w.get("infonce", 0) >= max(w.get("cosine", 0), w.get("mse", 0))


def _model_findings(m: ModelReport, best_base: tuple[str, float], baselines: dict, data: dict) -> list[Finding]:
    """Problem findings for one model, in verdict priority order."""
    out: list[Finding] = []
    if m.error or m.test_cosine is None:
        return out
    base_name, base_cos = best_base
    train_windows = data.get("windows_per_split", {}).get("train")
    common = {"test_cosine": m.test_cosine, "best_baseline": base_name, "best_baseline_cosine": base_cos}

    # collapse
    ratio = m.spread.get("spread_ratio")
    if ratio is not None and ratio < COLLAPSE_SPREAD_RATIO:
        out.append(Finding(
            "collapse", f"{m.arch}: predictions have collapsed - nearly the same vector for every context",
            {"spread_ratio": ratio, "threshold": COLLAPSE_SPREAD_RATIO,
             "pred_pairwise_cosine": m.spread["pred_pairwise_cosine"],
             "target_pairwise_cosine": m.spread["target_pairwise_cosine"], **common},
            ["add the anti-collapse variance term (e.g. loss {'cosine': 1, 'variance': 0.5}) or moment matching",
             "lower the learning rate (collapse often follows an early blow-up) and check the loss curve for it",
             "train with residual=True: the prediction then starts at the context mean and depends on the input"],
            model=m.arch))

    # memorisation
    h = m.history
    hist_gap = h.get("final_gap")
    by_model = m.gap is not None and m.gap >= MEMORISATION_GAP
    by_trend = bool(h.get("peaked_early")) and hist_gap is not None and hist_gap >= MEMORISATION_GAP
    if by_model or by_trend:
        recs = []
        if _infonce_led(m.loss):
            recs.append(f"make cosine or MSE the main loss (preset 'cosine') instead of {_loss_label(m.loss)}: "
                        "InfoNCE with in-batch negatives rewards telling training pairs apart, and memorised ~7k "
                        "pairs in the seed (train 0.50 / val 0.027 cosine)")
        recs += [f"more data: {train_windows} training windows" + (" is small" if train_windows and
                                                                       train_windows < SMALL_DATA_WINDOWS else ""),
                 f"a smaller model ({m.parameters:,} parameters" +
                 (f", {m.parameters / train_windows:.0f} per training window)" if train_windows else ")"),
                 "more regularisation: dropout, weight decay, early stopping on validation cosine (patience)"]
        if not _infonce_led(m.loss):
            recs.append("keep cosine/MSE as the main loss; drop or down-weight any InfoNCE term")
        if not m.residual:
            recs.append("residual=True (predict a correction to the context mean)")
        out.append(Finding(
            "memorisation", f"{m.arch}: memorises its training windows (train-val cosine gap "
                            f"{(m.gap if m.gap is not None else hist_gap):.3f})",
            {"train_cosine": m.train_cosine, "val_cosine": m.val_cosine, "gap": m.gap, "threshold": MEMORISATION_GAP,
             "history_final_gap": hist_gap, "best_epoch": h.get("best_epoch"), "epochs": h.get("epochs"),
             "val_peaked_early": h.get("peaked_early"), "train_rise_after_best": h.get("train_rise_after_best"),
             "parameters": m.parameters, "train_windows": train_windows, "loss": _loss_label(m.loss), **common},
            recs, model=m.arch))

    # copying
    copy_best = max((baselines[b]["cosine"] for b in COPY_BASELINES if b in baselines), default=None)
    if (m.direction_margin is not None and m.direction_margin < COPY_MARGIN and copy_best is not None
            and m.test_cosine < copy_best + COPY_GAIN):
        out.append(Finding(
            "copying", f"{m.arch}: mostly copies its input (direction margin {m.direction_margin:+.3f}, no gain over "
                       "copying the context)",
            {"direction_margin": m.direction_margin, "cos_to_last_context": m.cos_to_last_context,
             "best_copy_baseline_cosine": copy_best, "gain_over_copying": m.test_cosine - copy_best,
             "min_gain": COPY_GAIN, **common},
            ["residual=True: the network then spends its capacity on the change from the context mean, not on "
             "reproducing it",
             "a loss that rewards the change: cosine/MSE to the target (not to a smoothed context), optionally "
             "with the variance term",
             f"check the data: duplicate rate {data.get('duplicate_rate', float('nan')):.3f}; repeated or "
             "near-identical consecutive sentences make copying a local optimum"],
            model=m.arch))

    # below baselines: underfitting or not
    if m.test_cosine <= base_cos:
        under = m.train_cosine is not None and m.train_cosine < base_cos + UNDERFIT_MARGIN
        kind = "underfitting" if under else "below_baselines"
        title = (f"{m.arch}: underfits - it fits even its training windows no better than {base_name} does "
                 "the test windows" if under else
                 f"{m.arch}: generalises but loses to the {base_name} baseline")
        recs = (["train longer or with a higher learning rate (see the learning curves: is validation still "
                 "rising?)", "a bigger model (hidden, layers)"] if under else
                ["more training data (the baselines need none of the capacity a network needs)",
                 "tune lr / epochs against validation cosine"])
        if not m.residual:
            recs.insert(0, "residual=True: the model starts from the context mean (itself a strong baseline) "
                           "and learns the correction")
        recs.append("check the loss: cosine is the main term that measured best; an InfoNCE-led loss does not "
                    "optimise cosine directly" if _infonce_led(m.loss) else
                    "the ridge baseline is linear: if it wins, the data may be close to linear - compare with it")
        out.append(Finding(kind, title, {"train_cosine": m.train_cosine, "val_cosine": m.val_cosine,
                                         "margin_to_best_baseline": m.test_cosine - base_cos,
                                         "underfit_margin": UNDERFIT_MARGIN, **common}, recs, model=m.arch))
    return out


def _notes(models: dict, data: dict, baselines: dict, best: str | None, eval_part: str, thresholds: dict,
           data_changed: bool) -> list[Finding]:
    notes = []
    tw = data.get("windows_per_split", {}).get("train")
    if tw is not None and tw < SMALL_DATA_WINDOWS:
        notes.append(Finding("small_data", f"small training set: {tw} windows",
                             {"train_windows": tw, "threshold": SMALL_DATA_WINDOWS,
                              "articles": data.get("articles_per_split", {}).get("train")},
                             ["more articles (a bigger corpus): networks of seed size need far more than this"],
                             problem=False))
    ew = data.get("windows_per_split", {}).get(eval_part)
    if ew is not None and ew < TINY_EVAL_WINDOWS:
        notes.append(Finding("tiny_eval", f"only {ew} {eval_part} windows: held-out scores are noisy",
                             {f"{eval_part}_windows": ew, "threshold": TINY_EVAL_WINDOWS},
                             ["a larger test fraction or more articles"], problem=False))
    if data.get("mean_vector_norm", 0) >= ANISOTROPY_NORM:
        notes.append(Finding("anisotropy", "anisotropic embeddings: the vectors share a strong common direction",
                             {"mean_vector_norm": data["mean_vector_norm"], "threshold": ANISOTROPY_NORM,
                              "global_mean_cosine": baselines.get("global_mean", {}).get("cosine")},
                             ["read cosines against the global_mean baseline, not against 0",
                              "consider centring the vectors (subtract the training mean) before training"],
                             problem=False))
    if data.get("duplicate_rate", 0) >= DUPLICATE_RATE:
        notes.append(Finding("duplicates", f"{data['duplicate_rate']:.1%} of the rows repeat an earlier vector",
                             {"duplicate_rate": data["duplicate_rate"], "duplicate_rows": data.get("duplicate_rows"),
                              "threshold": DUPLICATE_RATE},
                             ["deduplicate boilerplate sentences, or check the sentence splitter"], problem=False))
    if baselines:
        bname = max(baselines, key=lambda k: baselines[k]["cosine"])
        bt = thresholds.get("baseline_threshold")
        if bt is not None and baselines[bname]["cosine"] < bt:
            notes.append(Finding(
                "thresholds", f"even the best baseline ({bname}) is below the baseline threshold {bt:.2f}",
                {"best_baseline": bname, "best_baseline_cosine": baselines[bname]["cosine"],
                 "baseline_threshold": bt, "deploy_threshold": thresholds.get("deploy_threshold")},
                ["the 0.48/0.55 thresholds come from GTR-T5 768-D data: set them for this encoder and corpus "
                 "(e.g. relative to the best baseline)"], problem=False))
    for arch, m in models.items():
        if m.history.get("still_improving"):
            notes.append(Finding("still_improving", f"{arch}: validation cosine was still rising at the last epoch",
                                 {"final_val_cosine": m.history.get("final_val_cosine"),
                                  "epochs": m.history.get("epochs")},
                                 ["train for more epochs"], model=arch, problem=False))
        r = m.spread.get("spread_ratio")
        if r is not None and COLLAPSE_SPREAD_RATIO <= r < NARROW_SPREAD_RATIO:
            notes.append(Finding("narrow", f"{arch}: predictions are narrower than the targets (not collapsed)",
                                 {"spread_ratio": r, "collapse_below": COLLAPSE_SPREAD_RATIO},
                                 ["expected with cosine/MSE on hard data (predictions shrink to the conditional "
                                  "mean); a variance term widens them if retrieval matters"], model=arch,
                                 problem=False))
    if data_changed:
        notes.append(Finding("data_changed", "the dataset file changed since the run (sha256 differs from run.json)",
                             {}, ["re-run training: these numbers are on the current file"], problem=False))
    return notes


# ------------------------------------------------------------------------------------------------- diagnose

def diagnose(run_dir, out_dir=None, write: bool = True) -> Diagnosis:
    """Diagnose a finished training run folder; writes report.md, report.html and the PNGs into `out_dir`
    (default run_dir/report/) unless write=False."""
    run_dir = Path(run_dir)
    run = _load_run(run_dir)
    run_name = str(run.get("run_name") or run_dir.name)
    context = int(run["context"])
    data_path = _resolve(run_dir, run["data_path"])
    table = read_table(data_path, validate=False)
    data_changed = bool(run.get("data_sha256")) and file_hash(data_path) != run["data_sha256"]
    split_path = run.get("split_path")
    if split_path and _resolve(run_dir, split_path).is_file():
        split = load_split(_resolve(run_dir, split_path))
    else:  # an older run: the flow's default split
        split = split_articles(table, (0.8, 0.1, 0.1), 0)
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
    ctx, tgt = gather(vecs, eval_t, context)
    last = ctx[:, -1]
    rng = np.random.default_rng(0)
    train_s = targets["train"]
    if len(train_s) > MAX_TRAIN_EVAL:
        train_s = np.sort(rng.choice(train_s, MAX_TRAIN_EVAL, replace=False))

    per_example: dict[str, np.ndarray] = {}
    forward: dict[str, dict] = {}
    starts = article_starts(table.position)
    groups = np.unique(np.asarray(table.article_id).astype(str), return_inverse=True)[1]
    bank = split.part(eval_part)

    def suite(fn, pred):
        return forward_suite(fn, vecs, eval_t, bank, context, starts, groups=groups, pred=pred, n_boot=1000)

    baselines = {}
    for name, b in fit_baselines(vecs, targets["train"], context, starts=starts).items():
        pred = predict_rows(b, vecs, eval_t, context, starts)
        pe = per_example_cosine(pred, tgt)
        per_example[f"{name} (baseline)"] = pe
        forward[f"{name} (baseline)"] = suite(b, pred)
        baselines[name] = {"cosine": float(pe.mean()),
                           "direction_margin": float((pe - per_example_cosine(pred, last)).mean())}

    models: dict[str, ModelReport] = {}
    curves = {}
    for arch, mdir in (run.get("models") or {}).items():
        mdir = _resolve(run_dir, mdir)
        m = ModelReport(arch, str(mdir))
        hist = _read_history(mdir)
        curves[arch] = hist
        m.history = _history_summary(hist)
        try:
            predict, config, m.parameters = _predictor(mdir)
        except (FileNotFoundError, ValueError) as e:
            m.error = str(e)
            models[arch] = m
            continue
        m.residual = bool(config.get("residual", False))
        m.loss = dict(config.get("loss") or {})
        pred = predict(ctx)
        pe = per_example_cosine(pred, tgt)
        per_example[arch] = pe
        cl = per_example_cosine(pred, last)
        m.test_cosine, m.cos_to_last_context = float(pe.mean()), float(cl.mean())
        m.direction_margin = float((pe - cl).mean())
        m.spread = _spread(pred, tgt)
        forward[arch] = suite(on_context(predict), pred)
        tc, tt = gather(vecs, train_s, context)
        m.train_cosine = float(per_example_cosine(predict(tc), tt).mean())
        if len(targets["val"]):
            vc, vt = gather(vecs, targets["val"], context)
            m.val_cosine = float(per_example_cosine(predict(vc), vt).mean())
        else:
            m.val_cosine = m.test_cosine
        m.gap = m.train_cosine - m.val_cosine
        models[arch] = m

    thresholds = {k: run[k] for k in ("baseline_threshold", "deploy_threshold") if k in run}
    decision = {}
    if (run_dir / "decision.json").is_file():
        try:
            decision = json.loads((run_dir / "decision.json").read_text())
        except json.JSONDecodeError:
            decision = {}
    best_base = max(((k, v["cosine"]) for k, v in baselines.items()), key=lambda kv: kv[1])
    scored = {k: m for k, m in models.items() if m.test_cosine is not None}
    best = max(scored, key=lambda k: scored[k].test_cosine) if scored else None

    per_model = {k: _model_findings(m, best_base, baselines, data) for k, m in scored.items()}
    findings: list[Finding] = []
    if best is None:
        verdict = "no_model"
        errs = {k: m.error for k, m in models.items() if m.error}
        findings.append(Finding("no_model", "no model finished training or could be loaded",
                                {"failed": dict(run.get("failed") or {}), "unloadable": errs},
                                ["read the failed tasks' errors (run.json 'failed') and fix them first"]))
    elif per_model[best]:
        verdict = per_model[best][0].kind
        findings += per_model[best]
    else:
        verdict = "healthy"
        m = scored[best]
        findings.append(Finding(
            "healthy", f"{best} beats every baseline with a small train-val gap",
            {"test_cosine": m.test_cosine, "best_baseline": best_base[0], "best_baseline_cosine": best_base[1],
             "gain_over_best_baseline": m.test_cosine - best_base[1], "gap": m.gap, "gap_limit": MEMORISATION_GAP,
             "spread_ratio": m.spread.get("spread_ratio"), "direction_margin": m.direction_margin},
            ["if the run still went to investigate, the deploy/baseline thresholds may not suit this encoder and "
             "corpus; otherwise more data or epochs are the next lever"], model=best, problem=False))
    for k in sorted(per_model, key=lambda k: -scored[k].test_cosine):
        if k != best:
            findings += per_model[k]
    findings += _forward_findings(forward, scored, best)
    findings += _notes(models, data, baselines, best, eval_part, thresholds, data_changed)

    summary = _summary(verdict, best, scored, best_base, findings)
    out = Path(out_dir) if out_dir is not None else run_dir / "report"
    d = Diagnosis(run_name=run_name, run_dir=str(run_dir), out_dir=str(out), verdict=verdict, summary=summary,
                  eval_part=eval_part, best_model=best, data=data, baselines=baselines, models=models,
                  findings=findings, failed=dict(run.get("failed") or {}), thresholds=thresholds, decision=decision,
                  curves=curves, per_example=per_example, forward=forward)
    if write:
        write_report(d, out)
    return d


def _forward_findings(forward: dict, scored: dict, best: str | None) -> list[Finding]:
    """Backward bias and order blindness, per model (the best first), with the numbers; a note when neither."""
    out = []
    for arch in sorted(scored, key=lambda k: (k != best, -scored[k].test_cosine)):
        f = forward.get(arch)
        if not f:
            continue
        fm, sh = f["forward_margin"], f["ablations"]["shuffled"]
        sweep = dict(zip(f["offsets"]["k"], f["offsets"]["cosine"]))
        C = f["context"]
        base = {"forward_margin": fm["diff"], "forward_margin_ci95": fm["ci95"], "cos_next": sweep.get(0),
                "cos_before_window": sweep.get(-(C + 1)), "cos_last_input": sweep.get(-1),
                "shuffle_drop": sh["drop"], "shuffle_drop_ci95": sh["ci95"]}
        base = {k: v for k, v in base.items() if not isinstance(v, list)} | {
            k: f"[{v[0]:+.4f}, {v[1]:+.4f}]" for k, v in base.items()
            if isinstance(v, list) and None not in v}
        found = False
        if fm["diff"] is not None and (fm["diff"] <= 0 or fm["ci95"][0] <= 0):
            found = True
            out.append(Finding("backward_bias", f"{arch} leans backwards: forward margin {fm['diff']:+.4f} "
                               f"(95% [{fm['ci95'][0]:+.4f}, {fm['ci95'][1]:+.4f}]); its prediction is as close "
                               "to the sentence before its context as to the next one", base,
                               ["train on targets further ahead or penalise similarity to the inputs; check the "
                                "offset-sweep plot for where the predictions peak"], model=arch))
        if sh["drop"] < MIN_SHUFFLE_DROP or sh["ci95"][0] <= 0:
            found = True
            out.append(Finding("order_blind", f"{arch} is order-blind: shuffling its context costs "
                               f"{sh['drop']:+.4f} cosine (95% [{sh['ci95'][0]:+.4f}, {sh['ci95'][1]:+.4f}], "
                               f"needs >= {MIN_SHUFFLE_DROP:g}): a bag of sentences", base,
                               ["an order-aware architecture or loss; compare with the context_mean and "
                                "article_blend baselines, which ignore order by construction"], model=arch))
        if not found:
            out.append(Finding("forward", f"{arch} predicts forward: margin {fm['diff']:+.4f}, shuffle cost "
                               f"{sh['drop']:+.4f}", base, [], model=arch, problem=False))
    return out


def _summary(verdict: str, best: str | None, scored: dict, best_base: tuple, findings: list) -> str:
    if best is None:
        return "No model finished training: nothing to diagnose but the failures."
    m = scored[best]
    head = (f"Best model {best}: {m.test_cosine:.4f} held-out cosine against {best_base[1]:.4f} for the best "
            f"baseline ({best_base[0]}); train-val gap {m.gap:+.3f}.")
    main = findings[0]
    return f"Verdict: {verdict.upper()}. {head} {main.title}."


# ------------------------------------------------------------------------------------------------- plots

def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)


def _figure(size):
    """A matplotlib Figure on the Agg canvas, without pyplot (no global state: safe in threads and servers)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=size, dpi=PLOT_DPI)
    FigureCanvasAgg(fig)
    return fig


def _plot_curves(d: Diagnosis, arch: str, path: Path) -> Path | None:
    hist = d.curves.get(arch) or []
    if not hist:
        return None
    ep = [h.get("epoch", i + 1) for i, h in enumerate(hist)]
    fig = _figure((9, 3.6))
    a1, a2 = fig.subplots(1, 2)
    for key, style in (("train_cosine", "-o"), ("val_cosine", "-s")):
        ys = [_num(h.get(key)) for h in hist]
        if any(y is not None for y in ys):
            a1.plot(ep, [np.nan if y is None else y for y in ys], style, ms=3, label=key.replace("_", " "))
    if d.baselines:
        bname = max(d.baselines, key=lambda k: d.baselines[k]["cosine"])
        a1.axhline(d.baselines[bname]["cosine"], color="grey", ls="--", lw=1,
                   label=f"best baseline ({bname}, {d.eval_part})")
    mh = d.models[arch].history if arch in d.models else {}
    be = mh.get("best_epoch")
    if be is not None:
        a1.axvline(be, color="tab:green", ls=":", lw=1, label=f"best val epoch ({be})")
    if mh.get("final_gap") is not None:
        a1.annotate(f"final gap {mh['final_gap']:+.2f}", xy=(0.98, 0.04), xycoords="axes fraction", ha="right",
                    fontsize=8, bbox={"boxstyle": "round", "fc": "white", "ec": "0.7"})
    a1.set_xlabel("epoch")
    a1.set_ylabel("cosine")
    a1.set_title("cosine to the next vector")
    a1.legend(fontsize=7)
    a1.grid(alpha=0.3)

    series = {"train_loss": [_num(h.get("train_loss")) for h in hist]}
    if any(_num(h.get("val_loss")) is not None for h in hist):
        series["val_loss"] = [_num(h.get("val_loss")) for h in hist]
    for prefix in ("terms", "val_terms"):
        keys = sorted({k for h in hist for k in (h.get(prefix) or {}) if _num((h.get(prefix) or {}).get(k)) is not None})
        for k in keys:
            label = k if prefix == "terms" else f"val {k}"
            series[f"{label} (term)"] = [_num((h.get(prefix) or {}).get(k)) for h in hist]
    terms = [k for k in series if k.endswith("(term)") and not k.startswith("val ")]
    if len(terms) == 1 and np.allclose(np.array(series[terms[0]], dtype=float),
                                       np.array(series["train_loss"], dtype=float), equal_nan=True):
        series[f"train_loss (= {terms[0].replace(' (term)', '')} term)"] = series.pop("train_loss")
        del series[terms[0]]
    allv = [v for ys in series.values() for v in ys if v is not None]
    for label, ys in series.items():
        if any(y is not None for y in ys):
            a2.plot(ep, [np.nan if y is None else y for y in ys], "-", lw=1.5 if label.startswith("train_loss") else 1,
                    label=label.replace("_", " "))
    if allv and min(allv) > 0 and max(allv) / min(allv) > 20:
        a2.set_yscale("log")
    a2.set_xlabel("epoch")
    a2.set_ylabel("loss (unweighted terms)")
    a2.set_title("training loss and its terms")
    a2.legend(fontsize=7)
    a2.grid(alpha=0.3)
    fig.suptitle(f"run {d.run_name} - model {arch}: learning curves", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=PLOT_DPI)
    return path


def _plot_hist(d: Diagnosis, path: Path) -> Path | None:
    if not d.per_example:
        return None
    allv = np.concatenate(list(d.per_example.values()))
    lo, hi = float(np.floor(allv.min() * 10) / 10), float(np.ceil(allv.max() * 10) / 10)
    n_min = min(len(v) for v in d.per_example.values())
    bins = np.linspace(lo, max(hi, lo + 0.1), int(np.clip(n_min // 5, 10, 40)) + 1)
    fig = _figure((7.5, 4))
    ax = fig.subplots()
    for label, pe in d.per_example.items():
        is_base = label.endswith("(baseline)")
        ax.hist(pe, bins=bins, histtype="step", lw=1 if is_base else 2, ls="--" if is_base else "-",
                label=f"{label}: mean {pe.mean():.3f}")
    ax.set_xlabel(f"cosine(prediction, true next vector), per {d.eval_part} window")
    ax.set_ylabel("windows")
    ax.set_title(f"run {d.run_name}: per-example {d.eval_part} cosine, models and baselines", fontsize=10)
    ax.legend(fontsize=7, loc="best", framealpha=0.8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=PLOT_DPI)
    return path


def _plot_offsets(d: Diagnosis, path: Path) -> Path | None:
    """Cosine of each predictor's prediction to the sentence at offset k from the target; inputs shaded."""
    if not d.forward:
        return None
    fig = _figure((10.5, 4.6))
    ax = fig.subplots()
    any_f = next(iter(d.forward.values()))
    C = any_f["context"]
    ax.axvspan(-C - 0.5, -0.5, color="0.92", label=f"the {C} inputs")
    ax.axvline(0, color="0.5", lw=0.8, ls=":")
    order = sorted(d.forward, key=lambda k: k.endswith("(baseline)"))  # models first: the strong colours
    for label in order:
        f = d.forward[label]
        is_base = label.endswith("(baseline)")
        ks, ys = f["offsets"]["k"], [np.nan if y is None else y for y in f["offsets"]["cosine"]]
        fm = f["forward_margin"]["diff"]
        ax.plot(ks, ys, "--" if is_base else "-o", lw=1 if is_base else 2, ms=4,
                label=f"{label} (fwd margin {_f(fm, 3)})")
    ax.set_xticks(any_f["offsets"]["k"])
    ax.set_xlabel("offset k from the target (0 = the true next sentence, -1 = the last input)")
    ax.set_ylabel("mean cosine(prediction, sentence at k)")
    models = ", ".join(k for k in d.forward if not k.endswith("(baseline)")) or "no model"
    ax.set_title(f"run {d.run_name}: offset sweep, models {models} and baselines ({d.eval_part})", fontsize=10)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=PLOT_DPI)
    return path


def write_report(d: Diagnosis, out_dir) -> dict:
    """Write the PNGs, report.md, report.html and diagnosis.json into out_dir; returns {name: path}."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    d.out_dir = str(out)
    files = {}
    for arch in d.models:
        p = _plot_curves(d, arch, out / f"learning_curves_{_safe(arch)}.png")
        if p:
            files[f"learning_curves_{arch}"] = str(p)
    p = _plot_hist(d, out / "cosine_hist.png")
    if p:
        files["cosine_hist"] = str(p)
    p = _plot_offsets(d, out / "offset_sweep.png")
    if p:
        files["offset_sweep"] = str(p)
    d.files = files
    (out / "report.md").write_text(d.to_markdown(images="link"))
    (out / "report.html").write_text(d.to_html())
    (out / "diagnosis.json").write_text(json.dumps(d.to_dict(), indent=2, default=str) + "\n")
    d.files = {**files, "report.md": str(out / "report.md"), "report.html": str(out / "report.html"),
               "diagnosis.json": str(out / "diagnosis.json")}
    return d.files


# ------------------------------------------------------------------------------------------------- rendering
# The report is a list of blocks rendered to markdown or HTML: ("h", level, text), ("p", text),
# ("ul", [items]), ("table", header, rows), ("img", path, alt). Inline `code` and **bold** only.

def _f(x, nd=4) -> str:
    if x is None:
        return "-"
    if isinstance(x, bool):
        return "yes" if x else "no"
    if isinstance(x, float):
        return "nan" if not np.isfinite(x) else f"{x:.{nd}f}"
    if isinstance(x, int):
        return f"{x:,}"
    return str(x)


def _evidence(ev: dict) -> str:
    return ", ".join(f"{k} = {_f(v, 3)}" for k, v in ev.items() if v is not None and not isinstance(v, dict)) + \
        "".join(f", {k} = {json.dumps(v)}" for k, v in ev.items() if isinstance(v, dict) and v)


def _blocks(d: Diagnosis, images: str) -> list:
    b: list = [("h", 1, f"LVM diagnosis: run {d.run_name}"), ("p", f"**{d.summary}**")]
    b.append(("p", f"Run folder `{d.run_dir}`; held-out part: **{d.eval_part}**; verdicts are documented in "
                   "`lvm/report.py` with their thresholds."))
    if d.decision.get("branch"):
        b.append(("p", f"The run's decision: **{d.decision['branch']}** - {d.decision.get('reason', '')}"))
    b.append(("h", 2, "Findings (most important first)"))
    for i, f in enumerate(d.findings, 1):
        tag = f.kind if f.problem or f.kind == "healthy" else f"{f.kind} (note)"
        b.append(("p", f"**{i}. [{tag}] {f.title}**"))
        items = [f"evidence: {_evidence(f.evidence)}"] if f.evidence else []
        items += [f"try: {r}" for r in f.recommendations]
        if items:
            b.append(("ul", items))
    if d.failed:
        b.append(("h", 2, "Failed trainings"))
        b.append(("ul", [f"`{k}`: {v}" for k, v in d.failed.items()]))

    b.append(("h", 2, f"Models and baselines ({d.eval_part} split)"))
    rows = []
    for k, m in sorted(d.models.items(), key=lambda kv: -(kv[1].test_cosine or -9)):
        if m.error:
            rows.append([f"**{k}**", "error: " + m.error.replace("|", "/")] + [""] * 7)
            continue
        rows.append([f"**{k}**", _f(m.test_cosine), _f(m.train_cosine), _f(m.val_cosine), _f(m.gap, 3),
                     _f(m.direction_margin, 3), _f(m.cos_to_last_context, 3), _f(m.spread.get("spread_ratio"), 3),
                     _f(m.spread.get("pred_pairwise_cosine"), 3)])
    for k, v in sorted(d.baselines.items(), key=lambda kv: -kv[1]["cosine"]):
        rows.append([f"{k} (baseline)", _f(v["cosine"]), "", "", "", _f(v["direction_margin"], 3), "", "", ""])
    b.append(("table", ["", "test cosine", "train cosine", "val cosine", "gap", "direction margin",
                        "cos(pred, last ctx)", "spread ratio", "pred pairwise cos"], rows))
    tpc = next((m.spread.get("target_pairwise_cosine") for m in d.models.values() if m.spread), None)
    b.append(("p", "train/val cosine: the saved model in eval mode (train: up to "
                   f"{MAX_TRAIN_EVAL:,} sampled windows). Spread ratio: mean per-dimension std of the unit "
                   f"predictions over that of the targets (collapse below {COLLAPSE_SPREAD_RATIO}). "
                   f"Targets' mean pairwise cosine: {_f(tpc, 3)}."))

    if d.forward:
        b.append(("h", 2, f"Does it predict forward? ({d.eval_part} split)"))
        rows = []
        for k in sorted(d.forward, key=lambda k: k.endswith("(baseline)")):  # models first
            f = d.forward[k]
            ab, fm, lg = f["ablations"], f["forward_margin"], f["gain_over_last_input"]
            roll = f["rollout"]["cosine"]
            rows.append([k if k.endswith("(baseline)") else f"**{k}**", _f(f["cosine"]),
                         _f(fm["diff"]) + (f" [{fm['ci95'][0]:+.3f}, {fm['ci95'][1]:+.3f}]"
                                           if fm["diff"] is not None else ""),
                         _f(lg["diff"]), _f(ab["shuffled"]["drop"]), _f(ab["reversed"]["drop"]),
                         _f(ab["mean"]["drop"]), _f(roll[-1] if roll else None),
                         _f(f["contrastive_accuracy"]), _f(f["paraphrase_ratio"], 3)])
        b.append(("table", ["", "cosine", "forward margin [95%]", "gain over last input", "shuffled drop",
                            "reversed drop", "mean drop", f"rollout {len(roll) if roll else ''}",
                            "contrastive acc.", "paraphrase ratio"], rows))
        b.append(("p", "Forward margin: cos(pred, next) - cos(pred, the sentence before the context), both unseen "
                       "(about 0 for a topic-only predictor). Drops: cosine lost when the context is shuffled, "
                       "reversed or replaced by its mean (0 = order plays no part). Rollout: cosine to the true "
                       "k-th next sentence with the predictions fed back. Contrastive accuracy: 0.5 = chance; "
                       "paraphrase ratio above 1: nearer its input than real next sentences are."))

    b.append(("h", 2, "Training"))
    rows = []
    for k, m in d.models.items():
        h = m.history
        rows.append([f"**{k}**", _f(m.parameters), "yes" if m.residual else "no", _loss_label(m.loss),
                     _f(h.get("epochs")), _f(h.get("best_epoch")), _f(h.get("best_val_cosine")),
                     _f(h.get("final_train_cosine")), _f(h.get("final_val_cosine")),
                     _f(h.get("peaked_early")), _f(h.get("still_improving"))])
    b.append(("table", ["model", "parameters", "residual", "loss", "epochs", "best epoch", "best val cos",
                        "final train cos", "final val cos", "val peaked early", "still improving"], rows))

    b.append(("h", 2, "Data"))
    ds = d.data
    wps, aps = ds.get("windows_per_split", {}), ds.get("articles_per_split", {})
    b.append(("table", ["articles", "sentences", "D", "encoder", "mean-vector norm", "duplicate rate",
                        "train windows", "val windows", "test windows"],
              [[_f(ds.get("articles")), _f(ds.get("sentences")), _f(ds.get("dim")), _f(ds.get("encoder")),
                _f(ds.get("mean_vector_norm"), 3), _f(ds.get("duplicate_rate"), 3),
                f"{_f(wps.get('train'))} ({aps.get('train', '-')} art.)",
                f"{_f(wps.get('val'))} ({aps.get('val', '-')} art.)",
                f"{_f(wps.get('test'))} ({aps.get('test', '-')} art.)"]]))

    if images != "none" and d.files:
        b.append(("h", 2, "Plots"))
        for name, path in d.files.items():
            if path.endswith(".png"):
                b.append(("img", path, name.replace("_", " ")))
    return b


def _img_src(path: str, images: str) -> str:
    if images == "embed":
        return "data:image/png;base64," + base64.b64encode(Path(path).read_bytes()).decode()
    return Path(path).name


def _render_markdown(blocks: list, images: str = "link") -> str:
    out = []
    for blk in blocks:
        kind = blk[0]
        if kind == "h":
            out.append("#" * blk[1] + " " + blk[2])
        elif kind == "p":
            out.append(blk[1])
        elif kind == "ul":
            out.append("\n".join(f"- {i}" for i in blk[1]))
        elif kind == "table":
            head, rows = blk[1], blk[2]
            lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
            lines += ["| " + " | ".join(r) + " |" for r in rows]
            out.append("\n".join(lines))
        elif kind == "img":
            out.append(f"![{blk[2]}]({_img_src(blk[1], images)})")
    return "\n\n".join(out) + "\n"


def _inline(text: str) -> str:
    t = html.escape(text, quote=False)
    t = re.sub(r"`([^`]+)`", r"<code>\1</code>", t)
    return re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", t)


def _render_html(blocks: list, title: str) -> str:
    body = []
    for blk in blocks:
        kind = blk[0]
        if kind == "h":
            body.append(f"<h{blk[1]}>{_inline(blk[2])}</h{blk[1]}>")
        elif kind == "p":
            body.append(f"<p>{_inline(blk[1])}</p>")
        elif kind == "ul":
            body.append("<ul>" + "".join(f"<li>{_inline(i)}</li>" for i in blk[1]) + "</ul>")
        elif kind == "table":
            head = "".join(f"<th>{_inline(h)}</th>" for h in blk[1])
            rows = "".join("<tr>" + "".join(f"<td>{_inline(c)}</td>" for c in r) + "</tr>" for r in blk[2])
            body.append(f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>")
        elif kind == "img":
            body.append(f'<figure><img src="{_img_src(blk[1], "embed")}" alt="{html.escape(blk[2])}">'
                        f"<figcaption>{html.escape(blk[2])}</figcaption></figure>")
    style = ("body{font-family:system-ui,sans-serif;max-width:70em;margin:2em auto;padding:0 1em;line-height:1.4}"
             "table{border-collapse:collapse;margin:1em 0;font-size:90%}td,th{border:1px solid #ccc;padding:.25em .5em;"
             "text-align:right}td:first-child,th:first-child{text-align:left}code{background:#f4f4f4;padding:0 .2em}"
             "img{max-width:100%}")
    return (f"<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{html.escape(title)}</title>"
            f"<style>{style}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n")

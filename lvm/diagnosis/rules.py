"""What the evidence of a run means: the thresholds, the findings and the verdict, with what to try for each.

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

Forward evidence (the run's own forward suite): per model a ``backward_bias`` finding (forward margin or its low end
at or below the run's ``min_forward_margin``) or an ``order_blind`` one (shuffling costs under its
``min_shuffle_drop``, or the interval reaches 0), with the numbers: findings, not verdicts. Nothing here reads a
file or runs a model: the rules can be tested on numbers alone.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from lvm.decision import MIN_FORWARD_MARGIN, MIN_SHUFFLE_DROP
from lvm.diagnosis.data_notes import data_size_verdict, notes
from lvm.diagnosis.findings import (  # noqa: F401  the thresholds are read from here by render and tests
    ANISOTROPY_NORM,
    COLLAPSE_SPREAD_RATIO,
    COPY_GAIN,
    COPY_MARGIN,
    DUPLICATE_RATE,
    EARLY_PEAK_FRACTION,
    MAX_TRAIN_EVAL,
    MEMORISATION_GAP,
    NARROW_SPREAD_RATIO,
    SMALL_DATA_WINDOWS,
    STILL_IMPROVING_TOL,
    TINY_EVAL_WINDOWS,
    TRAIN_RISE,
    UNDERFIT_MARGIN,
    Finding,
)
from lvm.util.interval import Interval

VERDICTS = ("no_model", "too_little_data", "collapse", "memorisation", "copying", "underfitting", "below_baselines",
            "healthy")
COPY_BASELINES = ("last_context", "context_mean")


# ------------------------------------------------------------------------------------------------- results

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
    files: dict = field(default_factory=dict)  # name -> path of written files (set by render.write_report)
    curves: dict = field(default_factory=dict, repr=False)  # arch -> history list
    per_example: dict = field(default_factory=dict, repr=False)  # label -> per-example test cosines
    forward: dict = field(default_factory=dict, repr=False)  # label -> lvm.evaluation.forward suite, eval windows

    def to_dict(self) -> dict:
        return {"run_name": self.run_name, "run_dir": self.run_dir, "verdict": self.verdict, "summary": self.summary,
                "eval_part": self.eval_part, "best_model": self.best_model, "data": self.data,
                "baselines": self.baselines, "models": {k: m.to_dict() for k, m in self.models.items()},
                "findings": [f.to_dict() for f in self.findings], "failed": self.failed,
                "thresholds": self.thresholds, "decision": self.decision, "files": self.files,
                "forward": self.forward}


# ------------------------------------------------------------------------------------------------- helpers

def finite(x) -> float | None:
    """x as a float, or None when it is missing or not finite (history files and metrics may hold either)."""
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v if np.isfinite(v) else None


def loss_label(loss: dict) -> str:
    """The active loss terms with their weights, e.g. "1·infonce": how a finding and the report name a loss."""
    active = {k: v for k, v in (loss or {}).items() if k != "temperature" and isinstance(v, (int, float)) and v > 0}
    return " + ".join(f"{v:g}·{k}" for k, v in active.items()) or "unknown"


def _infonce_led(loss: dict) -> bool:
    w = {k: float(v) for k, v in (loss or {}).items() if isinstance(v, (int, float))}
    return w.get("infonce", 0) > 0 and w.get("infonce", 0) >= max(w.get("cosine", 0), w.get("mse", 0))


# ------------------------------------------------------------------------------------------------- findings

def _model_findings(m: ModelReport, best_base: dict, baselines: dict, data: dict) -> list[Finding]:
    """Problem findings for one model, in verdict priority order."""
    out: list[Finding] = []
    if m.error or m.test_cosine is None:
        return out
    base_name, base_cos = best_base["name"], best_base["cosine"]
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
            recs.append(f"make cosine or MSE the main loss (preset 'cosine') instead of {loss_label(m.loss)}: "
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
             "parameters": m.parameters, "train_windows": train_windows, "loss": loss_label(m.loss), **common},
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

    # below baselines: underfitting or not (never both memorising and underfitting: the train-val gap says which)
    if m.test_cosine <= base_cos:
        under = m.train_cosine is not None and m.train_cosine < base_cos + UNDERFIT_MARGIN and \
            not any(f.kind == "memorisation" for f in out)
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


def forward_findings(forward: dict, scored: dict, best: str | None, gates: dict | None = None) -> list[Finding]:
    """Backward bias and order blindness, per model (the best first), with the numbers, judged by the run's own
    gates (run.json "gates": min_forward_margin, min_shuffle_drop; lvm.decision's defaults where it has none, so
    the report and decision.json never disagree); a note when neither."""
    gates = gates or {}
    min_margin = float(gates.get("min_forward_margin", MIN_FORWARD_MARGIN))
    min_shuffle = float(gates.get("min_shuffle_drop", MIN_SHUFFLE_DROP))
    out = []
    for arch in sorted(scored, key=lambda k: (k != best, -scored[k].test_cosine)):
        f = forward.get(arch)
        if not f:
            continue
        fm, sh = f["forward_margin"], f["ablations"].get("shuffled") or {"drop": 0.0, "ci95": [0.0, 0.0]}
        fmi, shi = Interval.of(fm), Interval.of(sh)
        sweep = dict(zip(f["offsets"]["k"], f["offsets"]["cosine"]))
        C = f["context"]
        base = {"forward_margin": fm["diff"], "forward_margin_ci95": fm["ci95"], "cos_next": sweep.get(0),
                "cos_before_window": sweep.get(-(C + 1)), "cos_last_input": sweep.get(-1),
                "shuffle_drop": sh["drop"], "shuffle_drop_ci95": sh["ci95"]}
        base = {k: v for k, v in base.items() if not isinstance(v, list)} | {
            k: f"[{v[0]:+.4f}, {v[1]:+.4f}]" for k, v in base.items()
            if isinstance(v, list) and None not in v}
        found = False
        if fmi.diff is not None and not fmi.above(min_margin):
            found = True
            out.append(Finding("backward_bias", f"{arch} leans backwards: forward margin "
                               f"{fmi.format(label='95% ')}; its prediction is as close "
                               f"to the sentence before its context as to the next one (gate: above "
                               f"{min_margin:+.4f})", base,
                               ["train on targets further ahead or penalise similarity to the inputs; check the "
                                "offset-sweep plot for where the predictions peak"], model=arch))
        if sh and (shi.diff is None or shi.diff < min_shuffle or not shi.above(0.0)):
            found = True
            out.append(Finding("order_blind", f"{arch} is order-blind: shuffling its context costs "
                               f"{shi.format(label='95% ')} cosine (needs >= {min_shuffle:g}): a bag of sentences",
                               base,
                               ["an order-aware architecture or loss; compare with the context_mean and "
                                "article_blend baselines, which ignore order by construction"], model=arch))
        if not found:
            out.append(Finding("forward", f"{arch} predicts forward: margin {fm['diff']:+.4f}, shuffle cost "
                               f"{sh['drop']:+.4f}", base, [], model=arch, problem=False))
    return out


# ------------------------------------------------------------------------------------------------- verdict

def judge(models: dict, baselines: dict, best_base: dict, data: dict, forward: dict, eval_part: str,
          thresholds: dict, failed: dict, data_changed: bool,
          gates: dict | None = None) -> tuple[str, str | None, list[Finding], str]:
    """(verdict, best model, ranked findings, one-line summary) from a run's evidence: the best model's first
    problem is the verdict, then the other models' problems, the forward findings and the notes."""
    scored = {k: m for k, m in models.items() if m.test_cosine is not None}
    best = max(scored, key=lambda k: scored[k].test_cosine) if scored else None

    per_model = {k: _model_findings(m, best_base, baselines, data) for k, m in scored.items()}
    findings: list[Finding] = []
    too_little = data_size_verdict(data, eval_part)
    if too_little is not None and best is not None:  # first: nothing below means much
        verdict = too_little.kind
        findings += [too_little, *per_model[best]]
    elif best is None:
        verdict = "no_model"
        errs = {k: m.error for k, m in models.items() if m.error}
        findings.append(Finding("no_model", "no model finished training or could be loaded",
                                {"failed": dict(failed), "unloadable": errs},
                                ["read the failed tasks' errors (run.json 'failed') and fix them first"]))
    elif per_model[best]:
        verdict = per_model[best][0].kind
        findings += per_model[best]
    else:
        verdict = "healthy"
        m = scored[best]
        findings.append(Finding(
            "healthy", f"{best} beats every baseline with a small train-val gap",
            {"test_cosine": m.test_cosine, "best_baseline": best_base["name"],
             "best_baseline_cosine": best_base["cosine"],
             "gain_over_best_baseline": m.test_cosine - best_base["cosine"], "gap": m.gap,
             "gap_limit": MEMORISATION_GAP, "spread_ratio": m.spread.get("spread_ratio"),
             "direction_margin": m.direction_margin},
            ["if the run still went to investigate, the deploy/baseline thresholds may not suit this encoder and "
             "corpus; otherwise more data or epochs are the next lever"], model=best, problem=False))
    for k in sorted(per_model, key=lambda k: -scored[k].test_cosine):
        if k != best:
            findings += per_model[k]
    findings += forward_findings(forward, scored, best, gates)
    findings += notes(models, data, baselines, best_base, eval_part, thresholds, data_changed)
    findings = _problems_first(findings)
    return verdict, best, findings, _summary(verdict, best, scored, best_base, findings)


def _problems_first(findings: list) -> list:
    """Ranked: the verdict's finding, then problems before notes (each in the order found); the report shows the
    first three as the top findings."""
    if not findings:
        return findings
    head, rest = findings[0], findings[1:]
    return [head, *[f for f in rest if f.problem], *[f for f in rest if not f.problem]]


def _summary(verdict: str, best: str | None, scored: dict, best_base: dict, findings: list) -> str:
    if best is None:
        return "No model finished training: nothing to diagnose but the failures."
    m = scored[best]
    head = (f"Best model {best}: {m.test_cosine:.4f} held-out cosine against {best_base['cosine']:.4f} for the best "
            f"baseline ({best_base['name']}); train-val gap {m.gap:+.3f}.")
    main = findings[0]
    return f"Verdict: {verdict.upper()}. {head} {main.title}."

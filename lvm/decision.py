"""Deploy, hold or investigate: the rule that turns held-out scores into an action, with its reason.

Scores are held-out (test split) cosines. A model is deployed only when it clears the deploy threshold, beats
every baseline AND passes the forward gates (``forward_gates``, on the flat columns of
``lvm.evaluation.forward.summary``):
a network that loses to a closed-form baseline, or that echoes its input instead of predicting what comes next,
is not worth serving, whatever its cosine. A model whose predictions are not all finite is never deployed, and a
non-finite score never reaches the comparison (it is reported in the reason instead).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace

import lvm.defaults as defaults
from lvm.evaluation.baselines import best_baseline
from lvm.util.interval import Interval

BRANCHES = ("deploy", "hold", "investigate")

#: Cosine thresholds of the original project, set for GTR-T5 768-D vectors, where the global-mean vector scored
#: SEED_GLOBAL_MEAN: investigate at "no better than the average sentence", deploy SEED_DEPLOY_MARGIN above it.
#: Cosines do not carry over between encoders, so by default a run derives both in its own units
#: (``thresholds``): baseline = the global-mean baseline's cosine on its test windows, deploy = that + the margin.
BASELINE_THRESHOLD = defaults.SEED_BASELINE_THRESHOLD  # below: investigate (when a run has no global_mean score)
DEPLOY_THRESHOLD = defaults.SEED_DEPLOY_THRESHOLD      # at or above (every baseline beaten, gates passed): deploy
SEED_GLOBAL_MEAN = defaults.SEED_GLOBAL_MEAN
SEED_DEPLOY_MARGIN = defaults.SEED_DEPLOY_MARGIN  # 0.0684


def thresholds(baselines: dict[str, dict], baseline_threshold: float | None = None,
               deploy_threshold: float | None = None) -> dict:
    """The run's two thresholds: {"baseline", "deploy", "derived": [names derived], "said": one line for a reason}.
    A number given explicitly wins; a None is derived from the global_mean baseline's held-out cosine (baseline =
    it, deploy = it + SEED_DEPLOY_MARGIN, never below the baseline threshold): the seed's meaning in this encoder's
    units (with GTR-T5 768-D the seed's own numbers). Without a global_mean score the seed's numbers stand in."""
    gm = (baselines.get("global_mean") or {}).get("cosine")
    known = isinstance(gm, (int, float)) and math.isfinite(gm)
    bt = baseline_threshold if baseline_threshold is not None else (float(gm) if known else BASELINE_THRESHOLD)
    dt = deploy_threshold if deploy_threshold is not None else \
        max(bt, (float(gm) if known else SEED_GLOBAL_MEAN) + SEED_DEPLOY_MARGIN)
    derived = [n for n, v in (("baseline", baseline_threshold), ("deploy", deploy_threshold)) if v is None]
    how = {"baseline": f"baseline threshold {bt:.4f}" + (" = the global-mean vector's cosine here" if known else
                                                          " (the seed's; no global_mean score)"),
           "deploy": f"deploy {dt:.4f}" + (f" = that + {SEED_DEPLOY_MARGIN:.4f}, the seed's margin" if known else "")}
    said = "; ".join(how[n] if n in derived else f"{n} threshold {v:g} (given)"
                     for n, v in (("baseline", bt), ("deploy", dt)))
    return {"baseline": bt, "deploy": dt, "derived": derived, "said": said}

#: Gate defaults (flow parameters; the README explains the measurements behind them).
MIN_FORWARD_MARGIN = defaults.MIN_FORWARD_MARGIN      # the forward margin and its interval's low end exceed it
MIN_SHUFFLE_DROP = defaults.MIN_SHUFFLE_DROP          # shuffling the context costs at least this (interval > 0)
MIN_LAST_INPUT_GAIN = defaults.MIN_LAST_INPUT_GAIN    # cos(pred, next) - cos(last input, next), low end above it
MAX_PARAPHRASE_RATIO = defaults.MAX_PARAPHRASE_RATIO  # no closer to its context than real next sentences, x this
#: Champion/challenger (``challenge``): a retrain replaces production only when its held-out cosine beats
#: production's on the same windows by at least this much AND the 95% article-bootstrap interval of the difference
#: lies above zero. The interval guards against luck; this guards against churn: 0.002 is the smallest gain the
#: four-digit tables show as more than rounding and is small next to the 0.07 between the hold and deploy
#: thresholds. A judgement, not a measurement: set it per encoder (flow parameter `min_improvement`).
MIN_IMPROVEMENT = defaults.MIN_IMPROVEMENT


def forward_gates(fwd: dict, min_forward_margin: float = MIN_FORWARD_MARGIN,
                  min_shuffle_drop: float = MIN_SHUFFLE_DROP, min_last_input_gain: float = MIN_LAST_INPUT_GAIN,
                  max_paraphrase_ratio: float | None = MAX_PARAPHRASE_RATIO) -> dict:
    """{gate: {"value", "threshold", "passed", "rule"}} for one model's forward summary
    (``lvm.evaluation.forward.summary``).
    A missing or non-finite value fails its gate; ``max_paraphrase_ratio`` None leaves that gate out."""
    def ok(*vals):
        return all(v is not None and math.isfinite(v) for v in vals)

    fm, fm_lo = fwd.get("forward_margin"), fwd.get("forward_margin_lo")
    sd, sd_lo = fwd.get("shuffle_drop"), fwd.get("shuffle_drop_lo")
    pr = fwd.get("paraphrase_ratio")
    lg, lg_lo = fwd.get("last_input_gain"), fwd.get("last_input_gain_lo")
    gates = {
        "forward_margin": {"value": fm, "interval_low": fm_lo, "threshold": min_forward_margin,
                           "passed": ok(fm, fm_lo) and fm > min_forward_margin and fm_lo > min_forward_margin,
                           "rule": "cos(pred, next) - cos(pred, sentence before the context; left out of the "
                                   "article input, so that both are unseen) and its 95% article-bootstrap low end "
                                   f"> {min_forward_margin:g}"},
        "shuffle_drop": {"value": sd, "interval_low": sd_lo, "threshold": min_shuffle_drop,
                         "passed": ok(sd, sd_lo) and sd >= min_shuffle_drop and sd_lo > 0,
                         "rule": f"cosine lost when the context is shuffled >= {min_shuffle_drop:g}, interval > 0"},
        "last_input_gain": {"value": lg, "interval_low": lg_lo, "threshold": min_last_input_gain,
                            "passed": ok(lg, lg_lo) and lg > min_last_input_gain and lg_lo > min_last_input_gain,
                            "rule": "cos(pred, next) - cos(last input, next) and its 95% interval's low end > "
                                    f"{min_last_input_gain:g}"},
    }
    if max_paraphrase_ratio is not None:
        gates["paraphrase_ratio"] = {
            "value": pr, "threshold": max_paraphrase_ratio, "passed": ok(pr) and pr <= max_paraphrase_ratio,
            "rule": f"max cos(pred, context) / max cos(next, context) <= {max_paraphrase_ratio:g}"}
    return gates


@dataclass
class Decision:
    branch: str
    reason: str
    best_arch: str | None = None
    best_cosine: float | None = None
    best_baseline: str | None = None
    best_baseline_cosine: float | None = None
    beats_all_baselines: bool = False
    baseline_threshold: float = BASELINE_THRESHOLD
    deploy_threshold: float = DEPLOY_THRESHOLD
    thresholds: dict = field(default_factory=dict)  # lvm.decision.thresholds: which were derived, and how
    scores: dict = field(default_factory=dict)  # arch -> held-out cosine, for every model with finite predictions
    gates: dict = field(default_factory=dict)   # the best model's forward gates (value, threshold, passed)
    passes_gates: bool | None = None
    require_forward: bool = True
    invalid: dict = field(default_factory=dict)  # arch -> why it is out of the comparison (non-finite output)
    champion: dict = field(default_factory=dict)  # lvm.evaluation.champion.score_champion + verdict; {} = none

    def to_dict(self) -> dict:
        return asdict(self)


def _finite(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def decide(models: dict[str, dict], baselines: dict[str, dict], baseline_threshold: float | None = None,
           deploy_threshold: float | None = None, metric: str = "cosine", require_forward: bool = True,
           min_forward_margin: float = MIN_FORWARD_MARGIN, min_shuffle_drop: float = MIN_SHUFFLE_DROP,
           min_last_input_gain: float = MIN_LAST_INPUT_GAIN,
           max_paraphrase_ratio: float | None = MAX_PARAPHRASE_RATIO) -> Decision:
    """`models` and `baselines` map a name to its metrics dict (at least `metric`; for the gates the flat forward
    columns, e.g. ``forward_margin``; ``nonfinite``: the share of non-finite predictions). A threshold left None
    is derived from the baselines (``thresholds``)."""
    th = thresholds(baselines, baseline_threshold, deploy_threshold)
    baseline_threshold, deploy_threshold = th["baseline"], th["deploy"]
    if not -1.0 <= baseline_threshold <= deploy_threshold <= 1.0:
        raise ValueError(f"need baseline_threshold ({baseline_threshold}) <= deploy_threshold "
                         f"({deploy_threshold}), both cosines in [-1, 1]")
    common = dict(baseline_threshold=baseline_threshold, deploy_threshold=deploy_threshold, thresholds=th,
                  require_forward=require_forward)
    invalid = {}
    for k, v in models.items():
        if not _finite(v.get(metric)):
            invalid[k] = f"its {metric} is {v.get(metric)}"
        elif v.get("nonfinite"):
            invalid[k] = f"{100 * float(v['nonfinite']):.1f}% of its predictions are nan or inf"
    common["invalid"] = invalid
    bad = "".join(f" {k} is never deployed: {why}." for k, why in sorted(invalid.items()))
    scores = {k: float(v[metric]) for k, v in models.items() if k not in invalid}
    if not scores:
        why = "no architecture finished training: see the failed tasks" if not models else \
            "no model produced finite predictions"
        return Decision("investigate", why + ("." if not bad else ":" + bad), **common)
    best = max(scores, key=scores.get)
    score = scores[best]
    best_base = best_baseline(baselines, metric)
    base_name, base_score = (best_base["name"], best_base[metric]) if best_base else (None, None)
    beats = base_score is None or score > base_score
    gates = forward_gates(models[best], min_forward_margin, min_shuffle_drop, min_last_input_gain,
                          max_paraphrase_ratio)
    passes = all(g["passed"] for g in gates.values())
    common.update(best_arch=best, best_cosine=score, best_baseline=base_name, best_baseline_cosine=base_score,
                  beats_all_baselines=beats, scores=scores, gates=gates, passes_gates=passes)
    versus = f"the best baseline ({base_name}) scores {base_score:.4f}" if base_name else "no baseline was computed"
    if score >= deploy_threshold and beats and (passes or not require_forward):
        gate_note = "passes every forward gate" if passes else "forward gates not required"
        return Decision("deploy", f"{best} scores {score:.4f} held-out cosine, at or above the deploy threshold "
                                  f"{deploy_threshold:.4f}, beats every baseline ({versus}) and {gate_note}. "
                                  f"Thresholds: {th['said']}." + bad, **common)
    if score >= deploy_threshold and beats:
        failed = "; ".join(f"{n} {_fmt(g['value'])} (rule: {g['rule']})" for n, g in gates.items()
                           if not g["passed"])
        return Decision("hold", f"{best} scores {score:.4f}, above the deploy threshold {deploy_threshold:.4f}, "
                                f"and beats every baseline ({versus}), but fails the forward gates: {failed}. "
                                f"Kept as a candidate, not deployed. Thresholds: {th['said']}." + bad, **common)
    if score >= deploy_threshold:
        return Decision("hold", f"{best} scores {score:.4f}, above the deploy threshold {deploy_threshold:.4f}, but "
                                f"{versus}: a model that does not beat every baseline is kept as a candidate, "
                                f"not deployed. Thresholds: {th['said']}." + bad, **common)
    if score >= baseline_threshold:
        return Decision("hold", f"{best} scores {score:.4f}, between the baseline threshold {baseline_threshold:.4f} "
                                f"and the deploy threshold {deploy_threshold:.4f} ({versus}): kept as a candidate. "
                                f"Thresholds: {th['said']}." + bad, **common)
    return Decision("investigate", f"{best} scores {score:.4f}, below the baseline threshold "
                                   f"{baseline_threshold:.4f} ({versus}): see the diagnostic report. "
                                   f"Thresholds: {th['said']}." + bad, **common)


def challenge(decision: Decision, versus: dict | None, min_improvement: float = MIN_IMPROVEMENT) -> Decision:
    """Today's decision judged against production (`versus`: lvm.evaluation.champion.score_champion, None when no
    production). Deploy stays deploy only when the challenger also beats the champion by at least
    `min_improvement` held-out cosine with the interval's low end above zero; otherwise production stays and the
    challenger is held as a candidate, the reason giving the difference and its interval. A challenger that IS
    production (same weights: a re-run with nothing new) is held with nothing to register (verdict "same")."""
    if not versus:
        return decision
    if not math.isfinite(min_improvement) or min_improvement < 0:
        raise ValueError(f"min_improvement must be a finite number >= 0, got {min_improvement}")
    v = versus["version"]
    if versus.get("same_model"):
        return replace(decision, branch="hold", champion={**versus, "verdict": "same"}, reason=(
            f"{decision.best_arch} is production v{v} already (same weights): nothing new to promote or register."))
    d = versus["difference"]
    diff, (lo, hi) = d["diff"], d["ci95"]
    leaked = (versus.get("leaks") or {}).get("champion_train_in_test") or []
    said = (f"Challenger {decision.best_arch} against champion v{v} ({versus['champion_arch']}) on the same "
            f"{versus['n']} test windows ({d['groups']} articles): cosine {versus['challenger']['cosine']:.4f} vs "
            f"{versus['champion']['cosine']:.4f}, difference {diff:+.4f} [95% {lo:+.4f}, {hi:+.4f}]")
    if leaked:
        why = (f"not comparable: the champion was trained on {len(leaked)} of these test articles "
               f"({', '.join(leaked[:3])}{', ...' if len(leaked) > 3 else ''}; use the hash split)")
    elif diff < 0:
        why = f"it lost to production by {-diff:.4f}"
    elif diff < min_improvement:
        why = f"its lead {diff:.4f} is below min_improvement {min_improvement:g}"
    elif lo <= 0:
        why = f"its lead is not significant (the interval's low end {lo:+.4f} is not above zero)"
    else:
        why = ""
    if decision.branch == "deploy" and not why:
        return replace(decision, champion={**versus, "verdict": "challenger"}, reason=(
            f"{decision.reason} {said}: beats production by at least min_improvement {min_improvement:g}, the "
            f"interval above zero."))
    if decision.branch == "deploy":
        return replace(decision, branch="hold", champion={**versus, "verdict": "champion"}, reason=(
            f"{said}: {why}. Production stays v{v}; the challenger is kept as a candidate. (Today's decision alone: "
            f"{decision.reason})"))
    return replace(decision, champion={**versus, "verdict": "champion"}, reason=(
        f"{decision.reason} {said}{': ' + why if why else ''}. Production stays v{v}."))


def champion_table(decision: Decision) -> str:
    """Champion and challenger side by side (cosine, MRR, forward margin, ...), the difference and the verdict."""
    c = decision.champion
    if not c:
        return "(no production model to challenge: today's decision alone)"
    if c.get("same_model"):
        return f"Champion: production v{c['version']} is this run's best model (same weights)."
    cols = ("cosine", "mrr", "hit@5", "forward_margin", "shuffle_drop")
    rows = [f"| {label} | " + " | ".join(_cell(c[key].get(col)) for col in cols) + " |"
            for label, key in ((f"champion v{c['version']} ({c['champion_arch']})", "champion"),
                               (f"challenger ({decision.best_arch})", "challenger"))]
    d = c["difference"]
    won = "challenger (promoted)" if c["verdict"] == "challenger" else "champion (production stays)"
    return ("| on the same test windows | " + " | ".join(cols) + " |\n|---|" + "---:|" * len(cols) + "\n"
            + "\n".join(rows) + f"\n\nchallenger − champion cosine: {Interval.of(d).format(label='95% ')} over "
            f"{d['groups']} articles, {d['n']} windows. Verdict: **{won}**.")


def _fmt(v) -> str:
    return "missing" if v is None else f"{v:+.4f}"


def gate_table(decision: Decision) -> str:
    """The best model's forward gates as a markdown table (value, interval low end, threshold, verdict)."""
    if not decision.gates:
        return "(no forward gates: no model to judge)"
    head = (f"Forward gates for {decision.best_arch} ({'required' if decision.require_forward else 'not required'}"
            " for deploy):\n\n| gate | value | 95% low | threshold | verdict | rule |\n|---|---:|---:|---:|---|---|\n")
    rows = [f"| {n} | {_cell(g['value'])} | {_cell(g.get('interval_low'))} | {g['threshold']:g} | "
            f"{'pass' if g['passed'] else '**FAIL**'} | {g['rule']} |" for n, g in decision.gates.items()]
    return head + "\n".join(rows)


def _cell(v) -> str:
    return "-" if v is None or not math.isfinite(v) else f"{v:.4f}"

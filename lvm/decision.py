"""Deploy, hold or investigate: the rule that turns held-out scores into an action, with its reason.

Scores are held-out (test split) cosines. A model is deployed only when it clears the deploy threshold AND beats
every baseline: a network that loses to a closed-form ridge regression is not worth serving, whatever its score.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

BRANCHES = ("deploy", "hold", "investigate")


@dataclass
class Decision:
    branch: str
    reason: str
    best_arch: str | None = None
    best_cosine: float | None = None
    best_baseline: str | None = None
    best_baseline_cosine: float | None = None
    beats_all_baselines: bool = False
    baseline_threshold: float = 0.48
    deploy_threshold: float = 0.55
    scores: dict = field(default_factory=dict)  # arch -> held-out cosine, for every model that finished

    def to_dict(self) -> dict:
        return asdict(self)


def decide(models: dict[str, dict], baselines: dict[str, dict], baseline_threshold: float = 0.48,
           deploy_threshold: float = 0.55, metric: str = "cosine") -> Decision:
    """`models` and `baselines` map a name to its metrics dict (at least `metric`)."""
    if not 0.0 <= baseline_threshold <= deploy_threshold <= 1.0:
        raise ValueError(f"need 0 <= baseline_threshold ({baseline_threshold}) <= deploy_threshold "
                         f"({deploy_threshold}) <= 1")
    common = dict(baseline_threshold=baseline_threshold, deploy_threshold=deploy_threshold)
    scores = {k: float(v[metric]) for k, v in models.items()}
    if not scores:
        return Decision("investigate", "no architecture finished training: see the failed tasks", **common)
    best = max(scores, key=scores.get)
    score = scores[best]
    base_name = max(baselines, key=lambda k: baselines[k][metric]) if baselines else None
    base_score = float(baselines[base_name][metric]) if base_name else None
    beats = base_score is None or score > base_score
    common.update(best_arch=best, best_cosine=score, best_baseline=base_name, best_baseline_cosine=base_score,
                  beats_all_baselines=beats, scores=scores)
    versus = f"the best baseline ({base_name}) scores {base_score:.4f}" if base_name else "no baseline was computed"
    if score >= deploy_threshold and beats:
        return Decision("deploy", f"{best} scores {score:.4f} held-out cosine, at or above the deploy threshold "
                                  f"{deploy_threshold:.2f}, and beats every baseline ({versus}).", **common)
    if score >= deploy_threshold:
        return Decision("hold", f"{best} scores {score:.4f}, above the deploy threshold {deploy_threshold:.2f}, but "
                                f"{versus}: a model that does not beat every baseline is kept as a candidate, "
                                f"not deployed.", **common)
    if score >= baseline_threshold:
        return Decision("hold", f"{best} scores {score:.4f}, between the baseline threshold {baseline_threshold:.2f} "
                                f"and the deploy threshold {deploy_threshold:.2f} ({versus}): kept as a candidate.",
                        **common)
    return Decision("investigate", f"{best} scores {score:.4f}, below the baseline threshold "
                                   f"{baseline_threshold:.2f} ({versus}): see the diagnostic report.", **common)

"""Training losses for next-sentence-vector prediction: one weighted sum of named terms.

Every term works on L2-normalised vectors (the encoders' embeddings are compared by cosine), in float32 even under
bf16 autocast: ``pred`` and ``target`` are cast with ``.float()`` and the terms run with autocast disabled.

Terms (each unweighted value is reported in ``terms``):

- ``cosine``   1 - mean cos(pred, target).
- ``mse``      mean over batch AND dimensions of (p̂ - t̂)², p̂/t̂ the L2-normalised prediction/target
               (``F.mse_loss`` on unit vectors). Since |p̂ - t̂|² = 2 - 2cos, it equals 2·cosine/D: the same
               direction of gradient as ``cosine``, D/2 times smaller (Adam mostly cancels the scale).
- ``infonce``  symmetric InfoNCE with in-batch negatives: cross-entropy of p̂ t̂ᵀ / temperature against the
               diagonal, averaged over both directions (pred→target and target→pred). Pure InfoNCE is the seed's
               failing recipe (it memorised ~7k pairs); kept for comparison.
               ``hard_negatives=k`` adds, for each prediction, 2k neighbouring sentences as extra negatives: rows
               t+1..t+k after the target and the k rows before the context (gathered by the training engine; its own
               article's, except near an article's ends; the context itself never is a negative, as in the
               retrieval metric). In-batch negatives are mostly other articles, which the bank of the retrieval
               metric is not: these are the neighbours a prediction must beat.
- ``moment``   batch moment matching: |mean(p̂) - mean(t̂)|² + |std(p̂) - std(t̂)|², per-dimension mean and
               (population) std over the batch, squared differences summed over dimensions.
- ``variance`` VICReg-style anti-collapse hinge: mean over dimensions of relu(std(t̂) - std(p̂)), the target's
               per-dimension batch std (no gradient) being the floor. Zero when predictions are at least as spread
               as the targets, positive when they collapse towards one vector.

``moment`` and ``variance`` need a batch of at least 2 (std of one row is 0).
"""

from __future__ import annotations

import inspect

import torch
import torch.nn.functional as F
from torch import nn

TERMS = ("cosine", "mse", "infonce", "moment", "variance")

#: Named weight sets (constructor kwargs). "default" is what training uses unless told otherwise; it is meant to be
#: the preset that measured best on held-out cosine.
LOSS_PRESETS: dict[str, dict[str, float]] = {
    "cosine": {"cosine": 1.0},
    "mse": {"cosine": 0.0, "mse": 1.0},
    "infonce": {"cosine": 0.0, "infonce": 1.0, "temperature": 0.07},
    # the original project's composite: InfoNCE as the main term + moment matching + variance regulariser
    "composite_seed": {"cosine": 0.0, "infonce": 1.0, "moment": 0.1, "variance": 0.1, "temperature": 0.07},
    "cosine_infonce": {"cosine": 1.0, "infonce": 0.1, "temperature": 0.07},
    # retrieval-first: InfoNCE against in-batch negatives AND each target's neighbouring sentences; trades most of the
    # cosine for ranking, like every InfoNCE preset (BENCHMARKS.md, "Loss presets on real text")
    "retrieval": {"cosine": 0.0, "infonce": 1.0, "temperature": 0.05, "hard_negatives": 4},
    # measured best on held-out cosine (lstm, ../shared/corpus with MiniLM; bench/loss_comparison.sh, BENCHMARKS.md)
    "default": {"cosine": 0.0, "mse": 1.0},
}

_EPS = 1e-8
_STD_EPS = 1e-6  # inside the sqrt, so that the gradient of std stays finite on a collapsed batch


def _std(x: torch.Tensor) -> torch.Tensor:
    return torch.sqrt(x.var(dim=0, unbiased=False) + _STD_EPS)


class CompositeLoss(nn.Module):
    """Weighted sum of the terms above; ``forward(pred, target) -> (total, terms)``.

    ``terms`` maps each active term (weight > 0) to its unweighted value as a Python float.
    """

    def __init__(self, cosine: float = 1.0, mse: float = 0.0, infonce: float = 0.0, moment: float = 0.0,
                 variance: float = 0.0, temperature: float = 0.07, hard_negatives: int = 0):
        super().__init__()
        weights = {"cosine": cosine, "mse": mse, "infonce": infonce, "moment": moment, "variance": variance}
        for name, w in weights.items():
            if not isinstance(w, (int, float)) or w != w or w < 0:
                raise ValueError(f"loss weight {name!r} must be a non-negative number, got {w!r}")
        if not any(w > 0 for w in weights.values()):
            raise ValueError(f"at least one loss weight must be > 0, got {weights}")
        if not (isinstance(temperature, (int, float)) and temperature > 0):
            raise ValueError(f"temperature must be > 0, got {temperature!r}")
        if isinstance(hard_negatives, bool) or not isinstance(hard_negatives, int) or hard_negatives < 0:
            raise ValueError(f"hard_negatives must be a non-negative int, got {hard_negatives!r}")
        if hard_negatives and not infonce > 0:
            raise ValueError("hard_negatives are negatives of the infonce term: give infonce a weight > 0")
        self.hard_negatives = hard_negatives
        self.weights = {k: float(v) for k, v in weights.items()}
        self.temperature = float(temperature)
        self.active = tuple(k for k in TERMS if self.weights[k] > 0)

    @classmethod
    def from_config(cls, config: str | dict | None = None) -> "CompositeLoss":
        """From a preset name, a dict of constructor kwargs (as ``config()`` returns), or None (= "default")."""
        if config is None:
            config = "default"
        if isinstance(config, str):
            if config not in LOSS_PRESETS:
                raise ValueError(f"unknown loss preset {config!r}; known: {sorted(LOSS_PRESETS)}")
            config = LOSS_PRESETS[config]
        known = set(inspect.signature(cls.__init__).parameters) - {"self"}
        unknown = sorted(set(config) - known)
        if unknown:
            raise ValueError(f"unknown loss settings {unknown}; known: {sorted(known)}")
        return cls(**config)

    def config(self) -> dict:
        """Constructor kwargs (JSON-serialisable), for config.json."""
        return {**self.weights, "temperature": self.temperature, "hard_negatives": self.hard_negatives}

    def extra_repr(self) -> str:
        return (", ".join(f"{k}={self.weights[k]:g}" for k in self.active) + f", temperature={self.temperature:g}"
                + (f", hard_negatives={self.hard_negatives}" if self.hard_negatives else ""))

    def forward(self, pred: torch.Tensor, target: torch.Tensor, negatives: torch.Tensor | None = None,
                negative_mask: torch.Tensor | None = None) -> tuple[torch.Tensor, dict[str, float]]:
        """negatives [B, M, D] (extra InfoNCE negatives per row, with hard_negatives), negative_mask [B, M] (True =
        use it; the engine passes False where a neighbour row would fall outside the table)."""
        if pred.shape != target.shape or pred.dim() != 2:
            raise ValueError(f"pred and target must both be [B, D]; got {tuple(pred.shape)} and {tuple(target.shape)}")
        if negatives is not None and (negatives.dim() != 3 or negatives.shape[0] != pred.shape[0]
                                      or negatives.shape[2] != pred.shape[1]):
            raise ValueError(f"negatives must be [B, M, D] for pred {tuple(pred.shape)}, got {tuple(negatives.shape)}")
        with torch.autocast(device_type=pred.device.type, enabled=False):
            p = F.normalize(pred.float(), dim=-1, eps=_EPS)
            t = F.normalize(target.float(), dim=-1, eps=_EPS).detach()
            values = {}
            for name in self.active:
                if name == "infonce":
                    values[name] = self._infonce(p, t, negatives, negative_mask)
                else:
                    values[name] = getattr(self, f"_{name}")(p, t)
            total = sum(self.weights[k] * v for k, v in values.items())
        # one device->host transfer for all terms
        floats = torch.stack([v.detach() for v in values.values()]).tolist()
        return total, dict(zip(values.keys(), floats))

    # ------------------------------------------------------------------------------------ terms (inputs normalised)

    @staticmethod
    def _cosine(p: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return 1.0 - (p * t).sum(-1).mean()

    @staticmethod
    def _mse(p: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return F.mse_loss(p, t)

    def _infonce(self, p: torch.Tensor, t: torch.Tensor, negatives: torch.Tensor | None = None,
                 negative_mask: torch.Tensor | None = None) -> torch.Tensor:
        logits = p @ t.T / self.temperature
        labels = torch.arange(p.shape[0], device=p.device)
        rows = logits
        if negatives is not None:  # pred -> target direction only: each row also against its own hard negatives
            n = F.normalize(negatives.float(), dim=-1, eps=_EPS).detach()
            extra = torch.einsum("bd,bmd->bm", p, n) / self.temperature
            if negative_mask is not None:
                extra = extra.masked_fill(~negative_mask, float("-inf"))
            rows = torch.cat([logits, extra], dim=1)
        return 0.5 * (F.cross_entropy(rows, labels) + F.cross_entropy(logits.T, labels))

    @staticmethod
    def _moment(p: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        mean_term = (p.mean(0) - t.mean(0)).pow(2).sum()
        std_term = (_std(p) - _std(t)).pow(2).sum()
        return mean_term + std_term

    @staticmethod
    def _variance(p: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return F.relu(_std(t) - _std(p)).mean()

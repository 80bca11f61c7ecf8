"""The diagnosis's vocabulary: a `Finding` (one ranked statement with its numbers and what to try) and the
thresholds every rule judges with (lvm.diagnosis.rules for the models, lvm.diagnosis.data_notes for the data)."""

from __future__ import annotations

from dataclasses import dataclass, field

MEMORISATION_GAP = 0.10  # train-minus-val cosine at or above which a model is said to memorise
EARLY_PEAK_FRACTION = 0.5  # validation "peaked early" when its best epoch falls in this first fraction ...
TRAIN_RISE = 0.05  # ... while training cosine rose by at least this much after that epoch
COLLAPSE_SPREAD_RATIO = 0.25  # mean per-dimension std of unit predictions / that of unit targets below this
#: below this ratio (but above COLLAPSE_SPREAD_RATIO) predictions are reported as "narrow" (a note, not a verdict).
NARROW_SPREAD_RATIO = 0.5
#: direction margin below this counts towards "copying" ...
COPY_MARGIN = 0.0
#: ... when the model also gains less than this over the best input-copying baseline.
COPY_GAIN = 0.01
#: training-window cosine must exceed the best baseline's test cosine by this much not to be "underfitting".
UNDERFIT_MARGIN = 0.02
#: fewer training windows than this: a data note (networks of the seed's size memorise sets this small).
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

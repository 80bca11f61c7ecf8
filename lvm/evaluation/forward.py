"""Does it predict forward? The forward-prediction suite: evidence that a predictor anticipates the next sentence
instead of echoing its input. Pure numpy; any predictor over ``lvm.evaluation.metrics.Windows`` (a network through
``lvm.evaluation.metrics.on_context``, or a ``Baseline``) on any (vectors, target rows, article starts).

Why: a model can win on cosine to the next vector by sitting near its context, since neighbouring sentences are
alike. Every measure here is built so that an input copier, a topic-only predictor or an order-blind bag of
sentences shows itself:

- ``offsets``: cos(pred, sentence at offset k from the target) for k = -(C+2) .. +3 (k = -C .. -1 are the inputs).
- ``forward_margin``: cos(pred, next) - cos(pred, the sentence just before the context window). Both must be
  unseen: a predictor that knows only the topic scores about 0, one that looks backwards below 0. An article-aware
  predictor reads the sentence before the window as part of the article so far, so for this measure it predicts
  with that sentence left out of the article (for a context-only predictor nothing changes). The margin of the
  predictions it serves, that sentence included, is ``forward_margin_served``. With a 95% interval from
  resampling whole articles (``lvm.evaluation.metrics.paired_difference``). ``direction_margin`` (against the
  last input, which the model sees) is kept beside it, with the same interval.
- ``gain_over_last_input``: cos(pred, next) - cos(last input, next), same interval: is the prediction nearer the
  next sentence than the input it could have copied? A copier of its last input scores exactly 0 (the forward
  margin cannot show that: the last input is itself nearer the next sentence than the one before the window).
- ``ablations``: the same windows with the context shuffled (one seeded permutation per window), reversed, and
  every position replaced by the context mean: the cosine drop of each (0 = order plays no part).
- ``rollout``: each prediction fed back as the newest context vector (at the scale of the vector it follows),
  k = 1 .. ROLLOUT_STEPS; cosine to the true k-th next sentence, on the windows with all k targets in the article.
- ``contrastive_accuracy`` (Meta LCM): the share of candidates strictly less similar to the prediction than the
  true next sentence; candidates = the bank minus the context, the target and its immediate neighbours; 0.5 =
  chance. ``paraphrase_ratio``: mean over windows of max cos(pred, context) over mean of max cos(next, context);
  above 1 = closer to its input than real text is (a ratio of means: per-window ratios explode near 0).
"""

from __future__ import annotations

import numpy as np

from lvm.evaluation.metrics import (
    Bank,
    Windows,
    _normalize,
    nonfinite_rows,
)

ROLLOUT_STEPS = 5
AFTER = 3          # offsets after the target in the sweep
ABLATIONS = ("shuffled", "reversed", "mean")


def article_bounds(starts: np.ndarray) -> np.ndarray:
    """One past the last row of each row's article, from ``lvm.evaluation.metrics.article_starts``."""
    starts = np.asarray(starts, dtype=np.int64)
    first = np.unique(starts)
    nxt = np.append(first[1:], len(starts))
    return nxt[np.searchsorted(first, starts)]


def _ablate(ctx: np.ndarray, kind: str, rng: np.random.Generator) -> np.ndarray:
    if kind == "reversed":
        return ctx[:, ::-1]
    if kind == "mean":
        return np.repeat(ctx.mean(1, keepdims=True), ctx.shape[1], 1)
    if kind == "shuffled":
        perm = np.argsort(rng.random(ctx.shape[:2]), axis=1)
        return np.take_along_axis(ctx, perm[:, :, None], 1)
    raise ValueError(f"unknown ablation {kind!r}; valid: {ABLATIONS}")


def _rollout_step(w: Windows, pred: np.ndarray) -> Windows:
    """The window one step on: the oldest context vector joins the article before it, the prediction (rescaled to
    the norm of the vector it follows; a non-finite one becomes 0) becomes the newest."""
    last = w.ctx[:, -1]
    p = np.where(nonfinite_rows(pred)[:, None], 0.0, pred)
    p = _normalize(p) * np.linalg.norm(last, axis=-1, keepdims=True)
    ctx = np.concatenate([w.ctx[:, 1:], p[:, None].astype(np.float32)], 1)
    if w.before_sum is None:
        return Windows(ctx)
    return Windows(ctx, w.before_sum + w.ctx[:, 0], w.before_n + 1)


def sentence_before(targets: np.ndarray, context: int, starts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(row of the sentence just before each context window, whether the window's article has one): the other
    sentence of the forward margin."""
    targets = np.asarray(targets, dtype=np.int64)
    before = targets - int(context) - 1
    return before, before >= np.asarray(starts)[targets]


def without_before(w: Windows, vectors: np.ndarray, targets: np.ndarray, context: int,
                   starts: np.ndarray) -> Windows:
    """``w`` (the windows of ``targets``) with the sentence just before each context window taken out of the
    article summary, where there is one."""
    if w.before_sum is None:
        return w
    before, ok = sentence_before(targets, context, starts)
    drop = np.where(ok[:, None], vectors[np.maximum(before, 0)], 0.0)
    return Windows(w.ctx, w.before_sum - drop, w.before_n - ok.astype(np.int64))


def contrastive_accuracy(pred: np.ndarray, targets: np.ndarray, bank_rows: np.ndarray, vectors: np.ndarray,
                         context: int, chunk_elems: int = 1 << 24) -> float:
    """Mean over windows of the share of candidates with cos(pred, c) < cos(pred, next). Candidates: the bank
    minus rows t-C .. t+1 (the context, the target and the sentence after it). A non-finite prediction scores 0."""
    _, contrast, bad = Bank(vectors, bank_rows, context).score(pred, targets, vectors, chunk_elems)
    return float(np.where(bad, 0.0, contrast).mean())


#: Flat columns of the suite for tables and the decision: name -> (path in the suite's dict).
SUMMARY = {
    "forward_margin": ("forward_margin", "diff"),
    "forward_margin_lo": ("forward_margin", "ci95", 0),
    "forward_margin_served": ("forward_margin_served", "diff"),
    "last_input_gain": ("gain_over_last_input", "diff"),
    "last_input_gain_lo": ("gain_over_last_input", "ci95", 0),
    "shuffle_drop": ("ablations", "shuffled", "drop"),
    "shuffle_drop_lo": ("ablations", "shuffled", "ci95", 0),
    "reverse_drop": ("ablations", "reversed", "drop"),
    "mean_drop": ("ablations", "mean", "drop"),
    "rollout@5": ("rollout", "cosine", ROLLOUT_STEPS - 1),
    "contrastive_accuracy": ("contrastive_accuracy",),
    "paraphrase_ratio": ("paraphrase_ratio",),
}


def summary(suite: dict) -> dict:
    """The flat columns of ``SUMMARY`` (None where the suite has no value, e.g. no long enough article)."""
    out = {}
    for name, path in SUMMARY.items():
        v = suite
        try:
            for key in path:
                v = v[key]
        except (KeyError, IndexError, TypeError):
            v = None
        out[name] = None if v is None or not np.isfinite(v) else float(v)
    return out

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

from typing import Callable

import numpy as np

from lvm.evaluation.metrics import (
    Windows,
    _normalize,
    nonfinite_rows,
    paired_difference,
    per_example_cosine,
    window_batch,
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
    targets = np.asarray(targets, dtype=np.int64)
    bank_rows = np.unique(np.asarray(bank_rows, dtype=np.int64))
    bad = nonfinite_rows(pred)
    q = _normalize(np.where(bad[:, None], 0.0, pred))
    bank = _normalize(vectors[bank_rows])
    tv = _normalize(vectors[targets])
    excl = targets[:, None] + np.arange(-context, 2)[None, :]
    ecol = np.searchsorted(bank_rows, excl)
    inb = (ecol < len(bank_rows)) & (bank_rows[np.minimum(ecol, len(bank_rows) - 1)] == excl)
    step = max(1, chunk_elems // max(len(bank_rows), 1))
    acc = np.zeros(len(targets))
    for s in range(0, len(targets), step):
        e = min(s + step, len(targets))
        scores = q[s:e] @ bank.T
        true = (q[s:e] * tv[s:e]).sum(-1)
        farther = (scores < true[:, None])
        r = np.arange(e - s)[:, None].repeat(excl.shape[1], 1)
        m = inb[s:e]
        farther[r[m], ecol[s:e][m]] = False          # excluded rows are not candidates
        n_cand = len(bank_rows) - m.sum(1)
        acc[s:e] = farther.sum(1) / np.maximum(n_cand, 1)
    return float(np.where(bad, 0.0, acc).mean())


def paraphrase_ratio(pred: np.ndarray, ctx: np.ndarray, tgt: np.ndarray) -> float | None:
    """mean max_j cos(pred, ctx_j) / mean max_j cos(next, ctx_j) (see the module docstring)."""
    def closeness(x):
        return np.max([per_example_cosine(x, ctx[:, j]) for j in range(ctx.shape[1])], axis=0).mean()
    den = closeness(tgt)
    return float(closeness(pred) / den) if abs(den) > 1e-12 else None  # None: JSON has no nan


def forward_suite(predict_fn: Callable[[Windows], np.ndarray], vectors: np.ndarray, targets: np.ndarray,
                  bank_rows: np.ndarray, context: int, starts: np.ndarray, groups: np.ndarray | None = None,
                  pred: np.ndarray | None = None, seed: int = 0, batch_size: int = 4096,
                  n_boot: int = 2000, order_tests: bool = True) -> dict:
    """Every forward measure of ``predict_fn`` on windows ``targets`` (JSON-able). ``groups``: the article of each
    row for the intervals (default: its start row). ``pred``: the predictions on the plain windows, when already
    computed. A ``predict_fn`` that says ``needs_article=False`` is not called again for the forward margin.
    ``order_tests=False`` leaves out the ablations and the rollout (8 of the ~10 prediction passes): for scoring
    subsets of a set whose order tests are already known."""
    C = int(context)
    targets = np.asarray(targets, dtype=np.int64)
    if len(targets) == 0:
        raise ValueError("the forward suite needs at least one window")
    starts = np.asarray(starts, dtype=np.int64)
    ends = article_bounds(starts)
    groups = starts if groups is None else np.asarray(groups)
    rng = np.random.default_rng(seed)

    reads_article = getattr(predict_fn, "needs_article", True)
    plain, unseen, abl = [], [], {k: [] for k in ABLATIONS}
    for s in range(0, len(targets), batch_size):
        t = targets[s:s + batch_size]
        w = window_batch(vectors, t, C, starts)
        plain.append(np.asarray(predict_fn(w), np.float32) if pred is None else pred[s:s + batch_size])
        if reads_article:
            unseen.append(np.asarray(predict_fn(without_before(w, vectors, t, C, starts)), np.float32))
        for k in ABLATIONS if order_tests else ():
            abl[k].append(np.asarray(predict_fn(w.with_ctx(_ablate(w.ctx, k, rng))), np.float32))
    p = np.concatenate(plain)
    p_unseen = np.concatenate(unseen) if reads_article else p
    tgt = vectors[targets]
    cos_next = per_example_cosine(p, tgt)
    cos_next_unseen = per_example_cosine(p_unseen, tgt) if reads_article else cos_next
    t_art = groups[targets]

    # offset sweep
    offsets = list(range(-(C + 2), AFTER + 1))
    sweep = {"k": offsets, "cosine": [], "n": [], "input": [-C <= k <= -1 for k in offsets]}
    for k in offsets:
        rows = targets + k
        ok = (rows >= starts[targets]) & (rows < ends[targets])
        sweep["cosine"].append(float(per_example_cosine(p[ok], vectors[rows[ok]]).mean()) if ok.any() else None)
        sweep["n"].append(int(ok.sum()))

    def margin(other_rows, ok, q=p, cos_q=cos_next):
        if not ok.any():
            return {"diff": None, "ci95": [None, None], "groups": 0, "n": 0}
        return paired_difference(cos_q[ok], per_example_cosine(q[ok], vectors[other_rows[ok]]), t_art[ok],
                                 n_boot=n_boot, seed=seed)

    before, has_before = sentence_before(targets, C, starts)
    served = margin(before, has_before)
    fwd = margin(before, has_before, p_unseen, cos_next_unseen) if reads_article else served
    direction = margin(targets - 1, np.ones(len(targets), bool))
    echo = paired_difference(cos_next, per_example_cosine(vectors[targets - 1], tgt), t_art, n_boot=n_boot,
                             seed=seed)

    ablations = {}
    for k in ABLATIONS if order_tests else ():
        ca = per_example_cosine(np.concatenate(abl[k]), tgt)
        ablations[k] = {"cosine": float(ca.mean()),
                        **{("drop" if a == "diff" else a): v for a, v in
                           paired_difference(cos_next, ca, t_art, n_boot=n_boot, seed=seed).items()}}

    # rollout: windows whose ROLLOUT_STEPS targets all lie in the article
    full = targets[targets + ROLLOUT_STEPS - 1 < ends[targets]] if order_tests else targets[:0]
    roll = {"steps": list(range(1, ROLLOUT_STEPS + 1)), "cosine": [], "n": int(len(full))}
    if len(full):
        sums = np.zeros(ROLLOUT_STEPS)
        for s in range(0, len(full), batch_size):
            t = full[s:s + batch_size]
            w = window_batch(vectors, t, C, starts)
            for j in range(ROLLOUT_STEPS):
                out = np.asarray(predict_fn(w), np.float32)
                sums[j] += per_example_cosine(out, vectors[t + j]).sum()
                w = _rollout_step(w, out)
        roll["cosine"] = [float(v / len(full)) for v in sums]

    ctx = vectors[targets[:, None] + np.arange(-C, 0)[None, :]]
    return {"n": int(len(targets)), "context": C, "cosine": float(cos_next.mean()),
            "offsets": sweep, "forward_margin": fwd, "forward_margin_served": served,
            "direction_margin": direction, "gain_over_last_input": echo,
            "ablations": ablations,
            "rollout": roll,
            "contrastive_accuracy": contrastive_accuracy(p, targets, bank_rows, vectors, C),
            "paraphrase_ratio": paraphrase_ratio(p, ctx, tgt)}


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

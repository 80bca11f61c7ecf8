"""Held-out metrics and the baselines a model must beat. Numpy in, plain Python floats out.

Conventions: ``vectors`` is float32 [N, D], rows sorted by article then position; a window is the row index ``t`` of
its target, its context the rows ``t-C .. t-1`` (same article: the caller guarantees it).

- ``cosine`` / ``per_example_cosine``: cosine of prediction and true next vector (a zero vector scores 0).
- Predictors see a ``Windows`` batch (``window_batch``): the context [B, C, D] and, when the article structure is
  known (``starts``: the first row of each row's article, ``article_starts``), the sum and count of the article's
  rows before the context window. ``predict_rows`` is the one path that builds them; ``on_context`` adapts a
  context-only function to it (a saved network reads them itself: lvm.evaluation.predictors).
- Baselines (lvm.evaluation.baselines) are predictors too: a fitted ``Baseline`` takes a ``Windows`` batch.
- ``retrieval``: rank of the true next sentence among every sentence of the evaluation split (the bank), the
  query's own context rows removed from its bank. Rank = 1 + number of bank rows with a score GREATER THAN OR EQUAL
  to the true row's score (the true row excluded), so ties count against the prediction (an all-zero prediction
  ties with everything); a non-finite prediction gets no credit (reciprocal rank 0) and cosine 0.
- ``direction_margin``: mean of cos(pred, next) - cos(pred, last context); negative = the model mostly copies input.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from lvm.data.table import gather_windows

_EPS = 1e-12


# ----------------------------------------------------------------------------------------------------- basics

def _normalize(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    n = np.linalg.norm(x, axis=-1, keepdims=True)
    return x / np.maximum(n, _EPS)


def per_example_cosine(pred: np.ndarray, tgt: np.ndarray) -> np.ndarray:
    """cos(pred[i], tgt[i]) for every row, float64 [B]."""
    pred = np.asarray(pred)
    tgt = np.asarray(tgt)
    if pred.shape != tgt.shape:
        raise ValueError(f"pred and tgt shapes differ: {pred.shape} vs {tgt.shape}")
    p = np.asarray(pred, dtype=np.float64)
    t = np.asarray(tgt, dtype=np.float64)
    bad = ~np.isfinite(p).all(-1)
    if bad.any():  # a non-finite prediction scores 0, never nan: nan would poison every mean and comparison
        p = np.where(bad[..., None], 0.0, p)
    num = (p * t).sum(-1)
    den = np.linalg.norm(p, axis=-1) * np.linalg.norm(t, axis=-1)
    return num / np.maximum(den, _EPS)


def nonfinite_rows(pred: np.ndarray) -> np.ndarray:
    """True for every prediction row with a nan or inf."""
    return ~np.isfinite(np.asarray(pred)).all(-1)


def cosine(pred: np.ndarray, tgt: np.ndarray) -> float:
    """Mean cosine of prediction and target over the rows."""
    return float(per_example_cosine(pred, tgt).mean())


def direction_margin(pred: np.ndarray, tgt: np.ndarray, last_ctx: np.ndarray) -> float:
    """mean(cos(pred, tgt) - cos(pred, last_ctx)). Negative: predictions sit closer to the input than to the answer."""
    return float((per_example_cosine(pred, tgt) - per_example_cosine(pred, last_ctx)).mean())


# -------------------------------------------------------------------------------------------------- baselines

@dataclass
class Windows:
    """What a predictor sees for B windows: ``ctx`` float32 [B, C, D] (oldest first) and, when the article is known,
    ``before_sum`` float64 [B, D] and ``before_n`` int64 [B]: the sum and count of the article's rows before the
    context window. The summary (not the rows) keeps article-aware predictors cheap and lets the forward suite
    shuffle the context or roll predictions forward without rebuilding a table."""
    ctx: np.ndarray
    before_sum: np.ndarray | None = None
    before_n: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.ctx)

    def with_ctx(self, ctx: np.ndarray) -> "Windows":
        return Windows(np.ascontiguousarray(ctx, dtype=np.float32), self.before_sum, self.before_n)


def article_starts(position: np.ndarray) -> np.ndarray:
    """Row of the first sentence of each row's article (rows sorted by article then position from 0)."""
    position = np.asarray(position, dtype=np.int64)
    return np.arange(len(position), dtype=np.int64) - position


def window_batch(vectors: np.ndarray, targets: np.ndarray, context: int,
                 starts: np.ndarray | None = None) -> Windows:
    """The ``Windows`` of target rows ``targets``; with ``starts`` also the article before each context window,
    summed in float64: over one span of rows for a batch of consecutive windows (one cumulative sum), per article
    for windows scattered over a big table (a sample), so the work never grows to the whole table per batch."""
    ctx, _ = gather_windows(vectors, targets, context)
    ctx = np.ascontiguousarray(ctx, dtype=np.float32)
    if starts is None or len(targets) == 0:
        return Windows(ctx)
    targets = np.asarray(targets, dtype=np.int64)
    first = np.asarray(starts, dtype=np.int64)[targets]
    end = targets - context                          # rows first .. end-1 come before the context window
    if (end < first).any():
        raise ValueError("a window's context starts before its article: starts do not match the targets")
    lo, hi = int(first.min()), int(end.max())
    if hi - lo <= 4 * len(targets) + 4096:  # consecutive windows: one cumulative sum over their span
        cs = np.zeros((hi - lo + 1, vectors.shape[1]))
        np.cumsum(vectors[lo:hi], axis=0, dtype=np.float64, out=cs[1:])
        return Windows(ctx, cs[end - lo] - cs[first - lo], end - first)
    before = np.zeros((len(targets), vectors.shape[1]))  # scattered windows (a sample): one sum per article
    for a in np.unique(first):
        rows = np.flatnonzero(first == a)
        top = int(end[rows].max())
        cs = np.zeros((top - a + 1, vectors.shape[1]))
        np.cumsum(vectors[a:top], axis=0, dtype=np.float64, out=cs[1:])
        before[rows] = cs[end[rows] - a]
    return Windows(ctx, before, end - first)


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), _EPS)


def article_mean(w: Windows) -> np.ndarray:
    """Mean of every earlier sentence of the article: the rows before the context window plus the context."""
    if w.before_sum is None:
        raise ValueError("article-aware baselines need the article before each window: pass starts "
                         "(lvm.evaluation.metrics.article_starts(table.position))")
    return (w.before_sum + w.ctx.sum(1, dtype=np.float64)) / (w.before_n + w.ctx.shape[1])[:, None]


# -------------------------------------------------------------------------------------------------- retrieval

class Bank:
    """The sentences a prediction is ranked against (the evaluation split's rows), normalised once: the true next
    row's rank (retrieval) and the share of candidates farther than it (contrastive accuracy) per query."""

    def __init__(self, vectors: np.ndarray, bank_rows: np.ndarray, context: int):
        self.rows = np.unique(np.asarray(bank_rows, dtype=np.int64))   # sorted, de-duplicated
        self.unit = _normalize(vectors[self.rows])
        self.C = int(context)

    def _cols(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        c = np.searchsorted(self.rows, rows)
        return c, (c < len(self.rows)) & (self.rows[np.minimum(c, len(self.rows) - 1)] == rows)

    def columns(self, targets: np.ndarray) -> np.ndarray:
        """Each target's column in the bank; every target must be in it."""
        col, ok = self._cols(np.asarray(targets, dtype=np.int64))
        if not ok.all():
            raise ValueError(f"{int((~ok).sum())} target rows are not in bank_rows, e.g. "
                             f"{np.asarray(targets)[~ok][:5].tolist()}")
        return col

    def ranks_and_contrast(self, q: np.ndarray, targets: np.ndarray, col: np.ndarray,
                           tv: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """For unit queries q [n, D] of target rows `targets` (bank columns `col`, unit target vectors tv): the rank
        of the true row (1 + bank rows scoring >= it, its own context rows excluded: ties count against the
        prediction) and the share of candidates (the bank minus rows t-C .. t+1) strictly less similar than the
        true next sentence."""
        scores = q @ self.unit.T
        n = len(targets)
        true_c = (q * tv).sum(-1)
        excl = targets[:, None] + np.arange(-self.C, 2)[None, :]
        ecol, ein = self._cols(excl)
        farther = scores < true_c[:, None]
        r = np.arange(n)[:, None].repeat(excl.shape[1], 1)
        farther[r[ein], ecol[ein]] = False
        contrast = farther.sum(1) / np.maximum(len(self.rows) - ein.sum(1), 1)
        ctx = targets[:, None] + np.arange(-self.C, 0)[None, :]
        ccol, cin = self._cols(ctx)
        r = np.arange(n)[:, None].repeat(self.C, 1)
        scores[r[cin], ccol[cin]] = -np.inf
        true = scores[np.arange(n), col].copy()
        scores[np.arange(n), col] = -np.inf                      # the true row does not tie with itself
        return 1 + (scores >= true[:, None]).sum(1), contrast

    def score(self, pred: np.ndarray, targets: np.ndarray, vectors: np.ndarray,
              chunk_elems: int = 1 << 24) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(ranks, contrast shares, non-finite rows) of predictions `pred` for `targets`, in chunks of about
        `chunk_elems` scores; a non-finite prediction is scored as the zero vector (and counted as bad)."""
        targets = np.asarray(targets, dtype=np.int64)
        pred = np.asarray(pred)
        if len(pred) != len(targets):
            raise ValueError(f"{len(pred)} predictions for {len(targets)} targets")
        col = self.columns(targets)
        bad = nonfinite_rows(pred)
        q = _normalize(np.where(bad[:, None], 0.0, pred))
        tv = _normalize(vectors[targets])
        ranks, contrast = np.empty(len(targets), np.int64), np.empty(len(targets))
        step = max(1, chunk_elems // max(len(self.rows), 1))
        for s in range(0, len(targets), step):
            e = min(s + step, len(targets))
            ranks[s:e], contrast[s:e] = self.ranks_and_contrast(q[s:e], targets[s:e], col[s:e], tv[s:e])
        return ranks, contrast, bad


def retrieval(pred: np.ndarray, targets: np.ndarray, bank_rows: np.ndarray, vectors: np.ndarray, context: int,
              chunk_elems: int = 1 << 24) -> dict[str, float]:
    """Hit@1, Hit@5 and MRR of the true next row among the bank ``vectors[bank_rows]``, ranked by cosine to pred.

    For query i, rows targets[i]-C .. targets[i]-1 (its own context) are removed from its bank; targets[i] must be
    in ``bank_rows``. Rank = 1 + count of the other bank scores >= the true row's score: ties count against the
    prediction, so a constant or all-zero prediction ranks last, not first. A non-finite prediction row scores 0
    on every measure. Queries are processed in chunks of about ``chunk_elems`` scores.
    """
    if len(targets) == 0:
        raise ValueError("retrieval needs at least one query")
    ranks, _, bad = Bank(vectors, bank_rows, context).score(pred, targets, vectors, chunk_elems)
    rr = np.where(bad, 0.0, 1.0 / ranks)
    return {"hit@1": float(((ranks <= 1) & ~bad).mean()), "hit@5": float(((ranks <= 5) & ~bad).mean()),
            "mrr": float(rr.mean())}


# -------------------------------------------------------------------------------------------- paired difference

def paired_difference(a: np.ndarray, b: np.ndarray, groups: np.ndarray, n_boot: int = 2000,
                      seed: int = 0) -> dict:
    """Mean of a - b (per-window scores of two predictors on the same windows) with a 95% interval from resampling
    whole groups (articles) with replacement. Windows of one article are not independent (they share a topic and
    most of their context), so resampling single windows would give too narrow an interval."""
    d = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
    _, g = np.unique(np.asarray(groups), return_inverse=True)
    if len(d) == 0 or len(g) != len(d):
        raise ValueError(f"need one group per window, got {len(g)} groups for {len(d)} windows")
    sums, counts = np.bincount(g, weights=d), np.bincount(g).astype(np.float64)
    w = np.random.default_rng(seed).multinomial(len(sums), np.full(len(sums), 1.0 / len(sums)), size=n_boot)
    boot = (w @ sums) / np.maximum(w @ counts, 1.0)
    lo, hi = np.percentile(boot, [2.5, 97.5])
    return {"diff": float(d.mean()), "ci95": [float(lo), float(hi)], "groups": int(len(sums)), "n": int(len(d))}


# ------------------------------------------------------------------------------------------------- evaluation

def predict_rows(predict_fn: Callable[[Windows], np.ndarray], vectors: np.ndarray, eval_targets: np.ndarray,
                 context: int, starts: np.ndarray | None = None, batch_size: int = 4096) -> np.ndarray:
    """``predict_fn`` (a ``Windows`` batch -> [B, D]) over every window, in batches: float32 [N, D]. The one path
    from (vectors, target rows) to predictions, for networks and baselines alike; ``starts`` gives the article
    before each window to predictors that read it."""
    eval_targets = np.asarray(eval_targets, dtype=np.int64)
    if len(eval_targets) == 0:
        raise ValueError("evaluate needs at least one evaluation window")
    preds = []
    for s in range(0, len(eval_targets), batch_size):
        w = window_batch(vectors, eval_targets[s:s + batch_size], context, starts)
        out = np.asarray(predict_fn(w), dtype=np.float32)
        if out.shape != (len(w), vectors.shape[1]):
            raise ValueError(f"predict_fn returned shape {out.shape}, expected {(len(w), vectors.shape[1])}")
        preds.append(out)
    return np.concatenate(preds)


def on_context(predict_fn: Callable[[np.ndarray], np.ndarray]) -> Callable[[Windows], np.ndarray]:
    """A context-only function (ctx float32 [B, C, D] -> [B, D]) as a ``Windows`` predictor; a ``Baseline`` or a
    saved model (``lvm.evaluation.predictors.SavedModel``) already is one: both say ``needs_article``."""
    if hasattr(predict_fn, "needs_article"):
        return predict_fn
    return lambda w: predict_fn(w.ctx)


def score(pred: np.ndarray, vectors: np.ndarray, eval_targets: np.ndarray, bank_rows: np.ndarray,
          context: int) -> dict:
    """All held-out metrics of predictions ``pred`` [N, D] for windows ``eval_targets`` in one flat dict:
    cosine, hit@1, hit@5, mrr, direction_margin, nonfinite (share of prediction rows with a nan or inf: they
    score 0 everywhere), n (number of windows)."""
    eval_targets = np.asarray(eval_targets, dtype=np.int64)
    tgt = vectors[eval_targets]
    last = vectors[eval_targets - 1]
    return {"cosine": cosine(pred, tgt),
            **retrieval(pred, eval_targets, bank_rows, vectors, context),
            "direction_margin": direction_margin(pred, tgt, last),
            "nonfinite": float(nonfinite_rows(pred).mean()),
            "n": int(len(eval_targets))}


def evaluate(predict_fn: Callable, vectors: np.ndarray, eval_targets: np.ndarray, bank_rows: np.ndarray,
             context: int, batch_size: int = 4096, starts: np.ndarray | None = None) -> dict:
    """``score`` of the predictions: every held-out metric of ``predict_fn`` (a context-only function or a
    ``Baseline``)."""
    return score(predict_rows(on_context(predict_fn), vectors, eval_targets, context, starts, batch_size), vectors,
                 eval_targets, bank_rows, context)


def evaluate_baselines(baselines: dict, vectors: np.ndarray, eval_targets: np.ndarray,
                       bank_rows: np.ndarray, context: int, batch_size: int = 4096,
                       starts: np.ndarray | None = None) -> dict[str, dict]:
    """``evaluate`` for every baseline: {name: metrics}. Without ``starts`` the article-aware ones are left out."""
    return {name: evaluate(b, vectors, eval_targets, bank_rows, context, batch_size, starts)
            for name, b in baselines.items() if starts is not None or not b.needs_article}

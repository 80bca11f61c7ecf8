"""Held-out metrics and the baselines a model must beat. Numpy in, plain Python floats out.

Conventions: ``vectors`` is float32 [N, D], rows sorted by article then position; a window is the row index ``t`` of
its target, its context the rows ``t-C .. t-1`` (same article: the caller guarantees it).

- ``cosine`` / ``per_example_cosine``: cosine of prediction and true next vector (a zero vector scores 0).
- Predictors see a ``Windows`` batch (``window_batch``): the context [B, C, D] and, when the article structure is
  known (``starts``: the first row of each row's article, ``article_starts``), the sum and count of the article's
  rows before the context window. ``predict_rows`` is the one path that builds them; ``on_context`` adapts a
  context-only function to it (a saved network reads them itself: lvm.evaluation.predictors).
- Baselines (``fit_baselines``), fitted on the training windows only: ``global_mean`` (mean training target),
  ``last_context``, ``context_mean`` and ``ridge`` (linear map from the concatenated context to the target); with
  ``starts`` also ``article_mean`` (mean of every earlier sentence of the article) and ``article_blend``
  (w * unit(article_mean) + (1 - w) * unit(context_mean), w chosen on the training windows).
- ``retrieval``: rank of the true next sentence among every sentence of the evaluation split (the bank), the
  query's own context rows removed from its bank. Rank = 1 + number of bank rows with a score GREATER THAN OR EQUAL
  to the true row's score (the true row excluded), so ties count against the prediction (an all-zero prediction
  ties with everything); a non-finite prediction gets no credit (reciprocal rank 0) and cosine 0.
- ``direction_margin``: mean of cos(pred, next) - cos(pred, last context); negative = the model mostly copies input.
"""

from __future__ import annotations

from dataclasses import dataclass, field
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
    """The ``Windows`` of target rows ``targets``; with ``starts`` also the article before each context window
    (summed over one span of rows in float64, so a batch of consecutive windows costs one cumulative sum: pass
    targets sorted, as ``lvm.data.dataset.window_targets`` returns them, or the span is as long as the table)."""
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
    cs = np.zeros((hi - lo + 1, vectors.shape[1]))
    np.cumsum(vectors[lo:hi], axis=0, dtype=np.float64, out=cs[1:])
    return Windows(ctx, cs[end - lo] - cs[first - lo], end - first)


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), _EPS)


def article_mean(w: Windows) -> np.ndarray:
    """Mean of every earlier sentence of the article: the rows before the context window plus the context."""
    if w.before_sum is None:
        raise ValueError("article-aware baselines need the article before each window: pass starts "
                         "(lvm.evaluation.metrics.article_starts(table.position))")
    return (w.before_sum + w.ctx.sum(1, dtype=np.float64)) / (w.before_n + w.ctx.shape[1])[:, None]


@dataclass
class Baseline:
    """A fitted baseline: called on a ``Windows`` batch -> [B, D] float32; ``predict(ctx)`` for the context-only
    ones. ``needs_article``: it reads the article before the window (``Windows.before_sum``). ``info`` holds fit
    details (e.g. alpha, the blend weight)."""
    name: str
    fn: Callable[[Windows], np.ndarray] = field(repr=False)
    info: dict = field(default_factory=dict)
    needs_article: bool = False

    def __call__(self, w: Windows) -> np.ndarray:
        if w.ctx.ndim != 3:
            raise ValueError(f"ctx must be [B, C, D], got shape {w.ctx.shape}")
        return np.asarray(self.fn(w), dtype=np.float32)

    def predict(self, ctx: np.ndarray) -> np.ndarray:
        return self(Windows(np.asarray(ctx, dtype=np.float32)))


class _Ridge:
    """y = x W + b with x the flattened context [C*D]; W, b fitted by closed-form ridge in float64."""

    def __init__(self, W: np.ndarray, b: np.ndarray):
        self.W = W.astype(np.float32)
        self.b = b.astype(np.float32)

    def __call__(self, ctx) -> np.ndarray:
        ctx = ctx.ctx if isinstance(ctx, Windows) else ctx
        return ctx.reshape(ctx.shape[0], -1) @ self.W + self.b


#: Ridge alphas tried, relative to the mean diagonal of the centred Gram matrix (trace(XᵀX)/p), so that the grid
#: does not depend on N, D or the vectors' scale.
RIDGE_ALPHAS = (1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0)


def _moments(vectors, targets, context, chunk=8192):
    """Uncentred sums over the windows in chunks: (n, Σx, Σy, XᵀX, Xᵀy), float64 (X never held whole)."""
    C, D = context, vectors.shape[1]
    p = C * D
    sx, sy = np.zeros(p), np.zeros(D)
    xx, xy = np.zeros((p, p)), np.zeros((p, D))
    for s in range(0, len(targets), chunk):
        ctx, y = gather_windows(vectors, targets[s:s + chunk], context)
        x = ctx.reshape(len(y), p).astype(np.float64)
        y = y.astype(np.float64)
        sx += x.sum(0)
        sy += y.sum(0)
        xx += x.T @ x
        xy += x.T @ y
    return len(targets), sx, sy, xx, xy


def _ridge_path(vectors, targets, context, rel_alphas, moments=None):
    """Ridge solutions (W, b, alpha) for each relative alpha, with intercept (centred data).

    Primal (p×p normal equations, sums accumulated in chunks, or given as ``moments``) when N >= p = C*D; dual
    (N×N kernel) when N < p. One symmetric eigendecomposition serves every alpha (a plain solve for one alpha).
    """
    n = len(targets)
    p = context * vectors.shape[1]
    if n >= p:
        n, sx, sy, xx, xy = moments if moments is not None else _moments(vectors, targets, context)
        mx, my = sx / n, sy / n
        G = xx - n * np.outer(mx, mx)                 # centred XᵀX
        B = xy - n * np.outer(mx, my)                 # centred Xᵀy
        scale = max(np.trace(G) / p, _EPS)
        if len(rel_alphas) == 1:
            a = rel_alphas[0] * scale
            W = np.linalg.solve(G + a * np.eye(p), B)
            return [(W, my - mx @ W, a)]
        lam, U = np.linalg.eigh(G)
        UB = U.T @ B
        out = []
        for r in rel_alphas:
            a = r * scale
            W = U @ (UB / (np.maximum(lam, 0) + a)[:, None])
            out.append((W, my - mx @ W, a))
        return out
    ctx, y = gather_windows(vectors, targets, context)
    X = ctx.reshape(n, p).astype(np.float64)
    y = y.astype(np.float64)
    mx, my = X.mean(0), y.mean(0)
    Xc, yc = X - mx, y - my
    K = Xc @ Xc.T                                      # W = Xcᵀ (K + aI)⁻¹ yc
    lam, U = np.linalg.eigh(K)
    Uy = U.T @ yc
    scale = max(np.trace(K) / p, _EPS)
    out = []
    for r in rel_alphas:
        a = r * scale
        W = Xc.T @ (U @ (Uy / (np.maximum(lam, 0) + a)[:, None]))
        out.append((W, my - mx @ W, a))
    return out


def fit_ridge(vectors: np.ndarray, train_targets: np.ndarray, context: int, ridge_alpha: float | None = None,
              holdout: float = 0.1) -> Baseline:
    """Ridge regression from the concatenated context to the target, with intercept, solved in float64.

    ``ridge_alpha`` is RELATIVE to trace(XᵀX)/p (X centred, p = C*D). None: choose it from ``RIDGE_ALPHAS`` by the
    mean cosine on the last ``holdout`` fraction of the (article-sorted) training windows, fitted on the rest, then
    refit on all training windows with the chosen value. With fewer than 20 windows, or ``holdout`` 0, the
    relative alpha is 1e-2.
    """
    targets = np.asarray(train_targets, dtype=np.int64)
    p = context * vectors.shape[1]
    all_moments = None
    if ridge_alpha is not None:
        rel = float(ridge_alpha)
        scores = {}
    else:
        n_hold = int(round(len(targets) * holdout))
        if len(targets) < 20 or n_hold < 2:
            rel, scores = 1e-2, {}
        else:
            fit_t, hold_t = targets[:-n_hold], targets[-n_hold:]
            fit_m = _moments(vectors, fit_t, context) if len(fit_t) >= p else None
            path = [(r, _Ridge(W, b)) for r, (W, b, _) in
                    zip(RIDGE_ALPHAS, _ridge_path(vectors, fit_t, context, RIDGE_ALPHAS, fit_m))]
            sums = dict.fromkeys(RIDGE_ALPHAS, 0.0)
            for s in range(0, n_hold, 8192):  # held-out windows in chunks, never [n_hold, C*D] at once
                hctx, hy = gather_windows(vectors, hold_t[s:s + 8192], context)
                for r, model in path:
                    sums[r] += float(per_example_cosine(model(hctx), hy).sum())
            scores = {r: v / n_hold for r, v in sums.items()}
            rel = max(scores, key=scores.get)
            if fit_m is not None:   # the sums are additive: add the held-out part instead of a second full pass
                all_moments = tuple(a + b for a, b in zip(fit_m, _moments(vectors, hold_t, context)))
    (W, b, a), = _ridge_path(vectors, targets, context, [rel], all_moments)
    info = {"relative_alpha": rel, "alpha": float(a), "holdout_cosine": {str(k): v for k, v in scores.items()}}
    return Baseline("ridge", _Ridge(W, b), info)


#: Blend weights tried for ``article_blend`` (weight of the article-so-far mean).
BLEND_WEIGHTS = tuple(np.round(np.linspace(0.0, 1.0, 11), 2).tolist())


def fit_article_blend(vectors: np.ndarray, train_targets: np.ndarray, context: int,
                      starts: np.ndarray) -> Baseline:
    """w * unit(article mean) + (1 - w) * unit(context mean); w from ``BLEND_WEIGHTS`` by mean cosine over every
    training window (one number is fitted: nothing to hold out, and any tail of the article-sorted windows would
    be one corpus)."""
    hold = np.asarray(train_targets, dtype=np.int64)
    sums = dict.fromkeys(BLEND_WEIGHTS, 0.0)
    for s in range(0, len(hold), 8192):
        w = window_batch(vectors, hold[s:s + 8192], context, starts)
        a, m, y = _unit(article_mean(w)), _unit(w.ctx.mean(1, dtype=np.float64)), vectors[hold[s:s + 8192]]
        for b in BLEND_WEIGHTS:
            sums[b] += float(per_example_cosine(b * a + (1 - b) * m, y).sum())
    scores = {b: v / len(hold) for b, v in sums.items()}
    best = max(scores, key=scores.get)

    def blend(w: Windows) -> np.ndarray:
        return best * _unit(article_mean(w)) + (1 - best) * _unit(w.ctx.mean(1, dtype=np.float64))

    return Baseline("article_blend", blend, {"weight": best, "train_windows": int(len(hold)),
                                             "train_cosine": {str(k): v for k, v in scores.items()}},
                    needs_article=True)


def fit_baselines(vectors: np.ndarray, train_targets: np.ndarray, context: int,
                  ridge_alpha: float | None = None, starts: np.ndarray | None = None) -> dict[str, Baseline]:
    """The baselines, fitted on the training windows ``train_targets`` only (see ``fit_ridge`` for alpha). With
    ``starts`` (``article_starts``) also the two that know the article: ``article_mean`` and ``article_blend``."""
    train_targets = np.asarray(train_targets, dtype=np.int64)
    if len(train_targets) == 0:
        raise ValueError("fit_baselines needs at least one training window")
    total = np.zeros(vectors.shape[1])
    for s in range(0, len(train_targets), 65536):  # in chunks: the whole [N, D] float64 copy was the peak at 1M rows
        total += vectors[train_targets[s:s + 65536]].sum(0, dtype=np.float64)
    mean = (total / len(train_targets)).astype(np.float32)
    out = {
        "global_mean": Baseline("global_mean", lambda w: np.tile(mean, (len(w), 1)),
                                {"n_train": int(len(train_targets))}),
        "last_context": Baseline("last_context", lambda w: w.ctx[:, -1]),
        "context_mean": Baseline("context_mean", lambda w: w.ctx.mean(1)),
        "ridge": fit_ridge(vectors, train_targets, context, ridge_alpha),
    }
    if starts is not None:
        out["article_mean"] = Baseline("article_mean", article_mean, needs_article=True)
        out["article_blend"] = fit_article_blend(vectors, train_targets, context, starts)
    return out


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


def evaluate_baselines(baselines: dict[str, Baseline], vectors: np.ndarray, eval_targets: np.ndarray,
                       bank_rows: np.ndarray, context: int, batch_size: int = 4096,
                       starts: np.ndarray | None = None) -> dict[str, dict]:
    """``evaluate`` for every baseline: {name: metrics}. Without ``starts`` the article-aware ones are left out."""
    return {name: evaluate(b, vectors, eval_targets, bank_rows, context, batch_size, starts)
            for name, b in baselines.items() if starts is not None or not b.needs_article}

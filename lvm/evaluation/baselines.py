"""The baselines a model must beat: their fits on the training windows only, memoised per process, and which of
them is best.

- ``fit_baselines``: ``global_mean`` (mean training target), ``last_context``, ``context_mean`` and ``ridge``
  (linear map from the concatenated context to the target); with ``starts`` also ``article_mean`` (mean of every
  earlier sentence of the article) and ``article_blend`` (w * unit(article_mean) + (1 - w) * unit(context_mean),
  w chosen on the training windows).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from lvm.data.table import gather_windows
from lvm.evaluation.metrics import _EPS, Windows, _unit, article_mean, per_example_cosine, window_batch


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




def best_baseline(baselines: dict[str, dict], metric: str = "cosine") -> dict | None:
    """{"name", metric} of the baseline with the highest finite `metric` in {name: metrics}; None when none has one.
    Every table, decision and diagnosis names its best baseline through this."""
    finite = {k: float(v[metric]) for k, v in baselines.items()
              if isinstance(v.get(metric), (int, float)) and math.isfinite(v[metric])}
    if not finite:
        return None
    name = max(finite, key=finite.get)
    return {"name": name, metric: finite[name]}


_BASELINES: dict[tuple, dict] = {}  # (data hash, split, context) -> fitted baselines, this process only


def cached_baselines(vectors, train_t, context: int, data_hash: str | None = None,
                     record: dict | None = None, starts: np.ndarray | None = None) -> dict:
    """fit_baselines on the training windows, memoised in this process (every caller fits through here) by
    (data hash, split record, context) when
    both are given: the ridge baseline at D=768, C=5 solves a 3840-wide system, which costs far more than
    evaluating it."""
    key = None if data_hash is None or record is None else \
        (data_hash, record["article_ids_sha256"], json.dumps(record["rows"]), context, starts is not None)
    if key is not None and key in _BASELINES:
        return _BASELINES[key]
    fitted = fit_baselines(vectors, train_t, context, starts=starts)
    if key is not None:
        _BASELINES.clear()  # keep one set: a ridge map at D=768, C=5 is 12 MB
        _BASELINES[key] = fitted
    return fitted

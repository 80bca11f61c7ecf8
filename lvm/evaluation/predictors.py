"""The one way a trained network predicts: contexts [B, C, D] (and, for a model with the article input, the article
so far [B, D]) to unit vectors [B, D], in inference mode, batched. Evaluation, the diagnosis, the champion check
and the LVM server all predict through `predict_unit` (the server adds only its request parsing and its refusal of
non-finite answers), so a served prediction is the evaluated one, bit for bit.

An ensemble predicts as `combine` of its members' predictions (the mean of their unit vectors, made unit): the
same numbers its torch module gives up to rounding, and the definition the fast scorer reuses when the members are
scored beside it (lvm.evaluation.suite).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from lvm.evaluation.metrics import Windows, article_mean
from lvm.models import count_parameters
from lvm.models.io import load_model
from lvm.util.hardware import autocast

_TINY = 1e-30


def unit_torch(y: torch.Tensor) -> torch.Tensor:
    """Rows made unit in float32, scaled by their largest entry first so that squaring large outputs cannot
    overflow to a zero vector; a non-finite row stays non-finite, an all-zero row stays zero."""
    y = y.float()
    peak = y.abs().amax(dim=-1, keepdim=True).clamp_min(_TINY)
    return torch.nn.functional.normalize(y / peak, dim=-1, eps=1e-12)


def unit_rows(y: np.ndarray) -> np.ndarray:
    """`unit_torch` for a numpy array (float32 out)."""
    return unit_torch(torch.from_numpy(np.ascontiguousarray(y, dtype=np.float32))).numpy()


def predict_unit(model: torch.nn.Module, ctx: np.ndarray, article: np.ndarray | None = None,
                 precision: str = "fp32", batch_size: int = 4096, dtype: torch.dtype = torch.float32) -> np.ndarray:
    """Unit predictions [B, D] (float32) of `model` for contexts [B, C, D] and, for a model with the article input,
    `article` [B, D] (the mean of every earlier sentence of each window's article). precision "bf16": autocast;
    dtype: the weights' dtype (the server may hold bf16 weights: inputs are cast to it)."""
    ctx = np.asarray(ctx, dtype=np.float32)
    if ctx.ndim != 3:
        raise ValueError(f"ctx must be [B, C, D], got shape {ctx.shape}")
    if article is not None:
        article = np.asarray(article, dtype=np.float32)
        if article.shape != (ctx.shape[0], ctx.shape[2]):
            raise ValueError(f"article must be [B, D] = {(ctx.shape[0], ctx.shape[2])}, got shape {article.shape}")
    first = next(model.parameters(), None)
    device = first.device if first is not None else torch.device("cpu")
    was_training = model.training
    model.eval()
    out = []
    try:
        with torch.inference_mode():
            for s in range(0, len(ctx), batch_size):
                x = [torch.from_numpy(np.ascontiguousarray(ctx[s:s + batch_size])).to(device)]
                if article is not None:
                    x.append(torch.from_numpy(np.ascontiguousarray(article[s:s + batch_size])).to(device))
                if dtype != torch.float32:
                    x = [v.to(dtype) for v in x]
                with autocast(device, precision):
                    y = model(*x)
                out.append(unit_torch(y).cpu().numpy())
    finally:
        model.train(was_training)
    return np.concatenate(out) if out else np.zeros((0, ctx.shape[-1]), np.float32)


def predict(model: torch.nn.Module, ctx: np.ndarray, precision: str = "fp32", batch_size: int = 4096,
            article: np.ndarray | None = None, dtype: torch.dtype = torch.float32) -> np.ndarray:
    """`predict_unit` for any model, an ensemble included (as `combine` of its members)."""
    members = getattr(model, "members", None)
    if members is not None and getattr(model, "arch", "") == "ensemble":
        return combine([predict_unit(m, ctx, article, precision, batch_size, dtype) for m in members])
    return predict_unit(model, ctx, article, precision, batch_size, dtype)


def default_article(ctx: np.ndarray) -> np.ndarray:
    """The article so far when nothing before the context is known: the context's own mean (as every predictor
    computes it, lvm.evaluation.metrics.article_mean)."""
    ctx = np.asarray(ctx, dtype=np.float32)
    return article_mean(Windows(ctx, np.zeros((len(ctx), ctx.shape[2])), np.zeros(len(ctx), np.int64))
                        ).astype(np.float32)


def combine(outputs: list[np.ndarray]) -> np.ndarray:
    """An ensemble's prediction from its members' unit predictions: their mean, made unit."""
    return unit_rows(np.mean(np.stack(outputs), axis=0, dtype=np.float32))


def article_input(model: torch.nn.Module, w: Windows) -> np.ndarray | None:
    """What a model reads beside the context: the article so far when it has the article input, else nothing."""
    return article_mean(w).astype(np.float32) if getattr(model, "article", False) else None


def windows_predict(model: torch.nn.Module, w: Windows, precision: str = "fp32", batch_size: int = 4096) -> np.ndarray:
    """`predict` on a ``Windows`` batch: a model with the article input reads the article so far from it."""
    return predict(model, w.ctx, precision, batch_size, article_input(model, w))


class SavedModel:
    """A model folder loaded once: call it with a ``Windows`` batch (what every evaluation passes) or with bare
    contexts [B, C, D]; `config` is its config.json. `needs_article`: the model reads the article so far, which bare
    contexts do not carry: called with them it is told that the context is the whole article so far. `key` (the
    folder) and, for an ensemble, `member_keys` (its members' folders) let a scorer reuse member predictions."""

    def __init__(self, model_dir, batch_size: int = 4096, precision: str = "fp32"):
        self.model, self.config = load_model(model_dir)
        self.precision = precision
        self.model.eval()
        self.batch_size = batch_size
        self.parameters = count_parameters(self.model)
        self.needs_article = bool(getattr(self.model, "article", False))
        self.key = str(Path(model_dir).resolve())
        members = self.config.get("members_from") or {}
        self.member_keys = [str((Path(model_dir) / f).resolve()) for f in members.values()] if members else None

    def member_is(self, i: int, other: "SavedModel") -> bool:
        """Whether this ensemble's i-th member has `other`'s weights (so `other`'s predictions are its)."""
        mine = self.model.members[i].state_dict()
        theirs = other.model.state_dict()
        return mine.keys() == theirs.keys() and all(torch.equal(mine[k], theirs[k]) for k in mine)

    def __call__(self, x: Windows | np.ndarray) -> np.ndarray:
        if not isinstance(x, Windows):
            x = Windows(np.asarray(x, dtype=np.float32))
        if self.needs_article and x.before_sum is None:  # nothing before the window is known
            x = Windows(x.ctx, np.zeros((len(x), x.ctx.shape[2])), np.zeros(len(x), np.int64))
        return windows_predict(self.model, x, self.precision, batch_size=self.batch_size)


def model_predictor(model_dir, batch_size: int = 4096, precision: str = "fp32") -> SavedModel:
    """A numpy predictor for a saved model (on CPU; precision "bf16": under autocast): Windows (or contexts) ->
    unit vectors."""
    return SavedModel(model_dir, batch_size, precision)

"""The one way a trained network predicts: a saved model folder (or a model in memory) to a numpy function from
contexts [B, C, D] (and, for a model with the article input, the article so far [B, D]) to unit vectors [B, D],
in inference mode, batched."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from lvm.evaluation.metrics import Windows, article_mean
from lvm.models import count_parameters
from lvm.models.io import load_model
from lvm.util.hardware import autocast


def predict(model: torch.nn.Module, ctx: np.ndarray, precision: str = "fp32", batch_size: int = 4096,
            article: np.ndarray | None = None) -> np.ndarray:
    """Unit-normalised predictions [B, D] (float32 numpy) for contexts [B, C, D], in inference mode. `article`
    [B, D]: the mean of every earlier sentence of each window's article, for a model built with article=True."""
    ctx = np.asarray(ctx, dtype=np.float32)
    if ctx.ndim != 3:
        raise ValueError(f"ctx must be [B, C, D], got shape {ctx.shape}")
    if article is not None:
        article = np.asarray(article, dtype=np.float32)
        if article.shape != (ctx.shape[0], ctx.shape[2]):
            raise ValueError(f"article must be [B, D] = {(ctx.shape[0], ctx.shape[2])}, got shape {article.shape}")
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    out = []
    try:
        with torch.inference_mode():
            for s in range(0, len(ctx), batch_size):
                x = [torch.from_numpy(np.ascontiguousarray(ctx[s:s + batch_size])).to(device)]
                if article is not None:
                    x.append(torch.from_numpy(np.ascontiguousarray(article[s:s + batch_size])).to(device))
                with autocast(device, precision):
                    y = model(*x)
                out.append(F.normalize(y.float(), dim=-1, eps=1e-12).cpu().numpy())
    finally:
        model.train(was_training)
    return np.concatenate(out) if out else np.zeros((0, ctx.shape[-1]), np.float32)


def windows_predict(model: torch.nn.Module, w: Windows, precision: str = "fp32", batch_size: int = 4096) -> np.ndarray:
    """`predict` on a ``Windows`` batch: a model with the article input reads the article so far from it."""
    if not getattr(model, "article", False):
        return predict(model, w.ctx, precision, batch_size)
    return predict(model, w.ctx, precision, batch_size, article_mean(w).astype(np.float32))


class SavedModel:
    """A model folder loaded once: call it with a ``Windows`` batch (what every evaluation passes) or with bare
    contexts [B, C, D]; `config` is its config.json. `needs_article`: the model reads the article so far, which bare
    contexts do not carry: called with them it is told that the context is the whole article so far."""

    def __init__(self, model_dir, batch_size: int = 4096):
        self.model, self.config = load_model(model_dir)
        self.model.eval()
        self.batch_size = batch_size
        self.parameters = count_parameters(self.model)
        self.needs_article = bool(getattr(self.model, "article", False))

    def __call__(self, x: Windows | np.ndarray) -> np.ndarray:
        if not isinstance(x, Windows):
            x = Windows(np.asarray(x, dtype=np.float32))
        if self.needs_article and x.before_sum is None:  # nothing before the window is known
            x = Windows(x.ctx, np.zeros((len(x), x.ctx.shape[2])), np.zeros(len(x), np.int64))
        return windows_predict(self.model, x, batch_size=self.batch_size)


def model_predictor(model_dir, batch_size: int = 4096) -> SavedModel:
    """A numpy predictor for a saved model (fp32 inference on CPU): Windows (or contexts) -> unit vectors."""
    return SavedModel(model_dir, batch_size)

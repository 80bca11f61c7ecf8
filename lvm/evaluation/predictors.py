"""The one way a trained network predicts: a saved model folder (or a model in memory) to a numpy function from
contexts [B, C, D] to unit vectors [B, D], in inference mode, batched."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from lvm.hardware import autocast
from lvm.models import count_parameters
from lvm.models.io import load_model


def predict(model: torch.nn.Module, ctx: np.ndarray, precision: str = "fp32", batch_size: int = 4096) -> np.ndarray:
    """Unit-normalised predictions [B, D] (float32 numpy) for contexts [B, C, D], in inference mode."""
    ctx = np.asarray(ctx, dtype=np.float32)
    if ctx.ndim != 3:
        raise ValueError(f"ctx must be [B, C, D], got shape {ctx.shape}")
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    out = []
    try:
        with torch.inference_mode():
            for s in range(0, len(ctx), batch_size):
                x = torch.from_numpy(np.ascontiguousarray(ctx[s:s + batch_size])).to(device)
                with autocast(device, precision):
                    y = model(x)
                out.append(F.normalize(y.float(), dim=-1, eps=1e-12).cpu().numpy())
    finally:
        model.train(was_training)
    return np.concatenate(out) if out else np.zeros((0, ctx.shape[-1]), np.float32)


class SavedModel:
    """A model folder loaded once: call it with contexts; `config` is its config.json."""

    def __init__(self, model_dir, batch_size: int = 4096):
        self.model, self.config = load_model(model_dir)
        self.model.eval()
        self.batch_size = batch_size
        self.parameters = count_parameters(self.model)

    def __call__(self, ctx: np.ndarray) -> np.ndarray:
        return predict(self.model, ctx, batch_size=self.batch_size)


def model_predictor(model_dir, batch_size: int = 4096) -> SavedModel:
    """A numpy ctx -> unit-vector function for a saved model (fp32 inference on CPU)."""
    return SavedModel(model_dir, batch_size)

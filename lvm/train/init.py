"""Fine-tuning: a training that starts from the weights of a trained model folder (`TrainConfig.init`), e.g. a model
trained at scale refined on a small corpus. The folder must hold the same architecture, input dimension, context
and inputs; its sizes (hidden, layers, ...) are adopted when the config names none."""

from __future__ import annotations

import dataclasses

import torch

from lvm.models.io import load_model
from lvm.train.config import TrainConfig

MATCH = ("arch", "context", "residual", "article")  # TrainConfig fields the init folder's config.json must share


def resolve_init(cfg: TrainConfig, dim: int) -> tuple[TrainConfig, dict[str, torch.Tensor] | None]:
    """(cfg, starting weights): cfg unchanged and None without `cfg.init`; else cfg with the folder's model sizes
    when it names none, and the folder's weights. ValueError naming the folder and each mismatch; a missing folder
    or file raises FileNotFoundError."""
    if not cfg.init:
        return cfg, None
    model, config = load_model(cfg.init)
    wrong = [f"{k} {config.get(k)!r} (this run: {getattr(cfg, k)!r})" for k in MATCH
             if config.get(k, False) != getattr(cfg, k)]
    if config["dim"] != dim:
        wrong.append(f"dim {config['dim']} (this table: {dim})")
    if cfg.model and any(config["model"].get(k) != v for k, v in cfg.model.items()):
        wrong.append(f"model {config['model']} (this run: {cfg.model})")
    if wrong:
        raise ValueError(f"--init {cfg.init}: that model cannot start this training (rule: the same architecture, "
                         f"dimension, context, inputs and sizes): it has " + "; ".join(wrong))
    if not cfg.model:
        cfg = dataclasses.replace(cfg, model=dict(config["model"]))
    return cfg, {k: v.detach().clone() for k, v in model.state_dict().items()}

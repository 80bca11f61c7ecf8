"""Fine-tuning: a training that starts from the weights of a trained model folder (`TrainConfig.init`), e.g. a model
trained at scale refined on a small corpus. The folder must hold the same architecture (or be an ensemble with a
member of it), input dimension, context and inputs; its sizes (hidden, layers, ...) are adopted when the config
names none."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch

from lvm.data.table import file_sha256
from lvm.models.io import WEIGHTS, load_model, read_config
from lvm.train.config import TrainConfig

MATCH = ("arch", "context", "residual", "article")  # TrainConfig fields the init folder's config.json must share


def resolve_init(cfg: TrainConfig, dim: int) -> tuple[TrainConfig, dict[str, torch.Tensor] | None]:
    """(cfg, starting weights): cfg unchanged and None without `cfg.init`; else cfg with the folder's model sizes
    when it names none, and the folder's weights. ValueError naming the folder and each mismatch; a missing folder
    or file raises FileNotFoundError."""
    if not cfg.init:
        return cfg, None
    model, config = load_model(cfg.init)
    if config["arch"] == "ensemble":  # the member of this run's architecture (what the flow's ensemble holds)
        members = {m["arch"]: (model.members[i], m) for i, m in enumerate(config["model"]["members"])}
        if cfg.arch not in members:
            raise ValueError(f"--init {cfg.init}: the ensemble has no {cfg.arch} member (it has "
                             f"{', '.join(members)})")
        model, config = members[cfg.arch]
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


def init_sources(folder, architectures) -> dict[str, str]:
    """{arch: folder} for those of `architectures` that `folder` can start: its own architecture, or for an
    ensemble its members'. FileNotFoundError / ValueError name the folder."""
    config = read_config(folder)
    archs = [m.get("arch") for m in config["model"].get("members", [])] if config["arch"] == "ensemble" \
        else [config["arch"]]
    return {a: str(folder) for a in architectures if a in archs}


def weights_sha256(folder) -> str:
    """The content hash of a model folder's weights: what a fine-tuning run's cache key must follow (a folder
    retrained in place keeps its path)."""
    return file_sha256(Path(folder) / WEIGHTS)

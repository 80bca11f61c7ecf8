"""The architectures by name: `build_model(name, dim, context=5, residual=False, article=False, **config)` (trained
versions are kept by lvm.store.registry, not here).

Every model maps a context [B, C, D] (and with article=True the article so far [B, D], lvm.models.base) to a
prediction [B, D] (raw, not normalised). `config` holds the
architecture's size knobs (hidden, layers, ...); omitted ones take the seed values. Seed sizes at D=768:
lstm 5,384,448 · gru 7,359,232 · mamba2 7,468,608 · transformer 13,694,720 parameters.
"""

from __future__ import annotations

import torch.nn as nn

import lvm.defaults as defaults

from . import gru, lstm, mamba2, transformer  # noqa: F401  one line per architecture: each registers itself
from .base import ARCHITECTURES, LVM, PredictionHead
from .ensemble import Ensemble

MODELS = ARCHITECTURES  # name -> class (lvm.models.base.LVM.__init_subclass__)
MODEL_NAMES = tuple(MODELS)
DEFAULT_ARCHS = defaults.ARCHITECTURES  # what the train flow trains unless told otherwise


def build_model(name: str, dim: int, context: int = 5, residual: bool = False, article: bool = False,
                **config) -> LVM | Ensemble:
    """Build an untrained model; raises ValueError for an unknown name or a bad config. "ensemble" (not trainable,
    lvm.models.ensemble) takes `members`, a list of the members' build configs (`build_config()`)."""
    if name == Ensemble.arch:
        return _build_ensemble(dim, context, article, **config)
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; valid names: {', '.join(MODELS)}")
    for key, value in (("dim", dim), ("context", context)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name}: {key} must be a positive int, got {value!r}")
    for key, value in (("residual", residual), ("article", article)):
        if not isinstance(value, bool):
            raise ValueError(f"{name}: {key} must be a bool, got {value!r}")
    return MODELS[name](dim, context=context, residual=residual, article=article, **config)


def _build_ensemble(dim: int, context: int, article: bool, members=None, **rest) -> Ensemble:
    if rest or not isinstance(members, list):
        raise ValueError(f"ensemble: the model config is {{'members': [build configs]}}, got keys "
                         f"{sorted(rest) + ([] if isinstance(members, list) else ['members (not a list)'])}")
    built = []
    for i, m in enumerate(members):
        if not isinstance(m, dict) or m.get("arch") not in MODELS or not isinstance(m.get("model", {}), dict):
            raise ValueError(f"ensemble: member {i} is not the build config of a trainable model: {m!r}")
        built.append(build_model(m["arch"], dim, context=context, residual=m.get("residual", False),
                                 article=m.get("article", False), **m.get("model", {})))
    ensemble = Ensemble(built)
    if ensemble.article != article:
        raise ValueError(f"ensemble: config says article={article}, its members article={ensemble.article}")
    return ensemble


def option_defaults() -> dict[str, dict[str, object]]:
    """{build option: {arch: its default}} over every architecture: what a form of model options offers."""
    out: dict[str, dict[str, object]] = {}
    for name, cls in MODELS.items():
        for key, value in cls.defaults.items():
            out.setdefault(key, {})[name] = value
    return out


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters (each shared tensor once)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


__all__ = ["ARCHITECTURES", "DEFAULT_ARCHS", "MODEL_NAMES", "MODELS", "LVM", "Ensemble", "PredictionHead",
           "build_model", "count_parameters", "option_defaults"]

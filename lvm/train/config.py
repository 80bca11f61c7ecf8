"""`TrainConfig`: every field that decides a training run, one-line comments, validated on construction. Its
defaults are the product's defaults: the flow and the CLI read them from here."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

import torch

import lvm.defaults as defaults
from lvm.data.table import DEFAULT_CONTEXT
from lvm.models import MODELS, build_model
from lvm.train.losses import CompositeLoss

PRECISIONS = ("bf16", "fp32")
SCHEDULES = ("cosine", "plateau")
DEVICES = ("auto", "cpu", "cuda")


@dataclass
class TrainConfig:
    """Everything that decides a training run. `to_dict()` goes into config.json["train"]."""

    arch: str = "lstm"
    epochs: int = defaults.EPOCHS
    batch_size: int = defaults.BATCH_SIZE  # the seed used 32: 4-8x slower per sample on CPU (bench/train_throughput)
    lr: float = defaults.LR
    weight_decay: float = 0.01      # AdamW, on matrices only (not biases, norms)
    warmup_frac: float = 0.05       # fraction of all optimizer steps spent ramping the learning rate up linearly
    schedule: str = "cosine"        # "cosine": decay to min_lr_frac * lr at the last step; "plateau": see below
    min_lr_frac: float = 0.05
    plateau_factor: float = 0.5     # "plateau": lr *= factor after plateau_patience epochs without val improvement
    plateau_patience: int = 2
    grad_clip: float | None = 1.0   # max global gradient norm; None or 0 = no clipping
    patience: int | None = 3        # early stopping: epochs without val-cosine improvement; None or 0 = never
                                    # (3, not 5: make run's three models keep the same weights and stop sooner;
                                    # bench/time_to_quality.py, BENCHMARKS.md)
    min_delta: float = 0.0          # an improvement must exceed this
    context: int = DEFAULT_CONTEXT
    seed: int = 0
    device: str = "auto"            # "auto" = cuda when available, else cpu
    precision: str = "bf16"         # bf16 autocast where the hardware runs it natively, else fp32 (with a warning)
    residual: bool = True           # predict a correction to the mean of the context, starting from it (zero-init
                                    # head); measured better on held-out text; False = the seed's plain prediction
    article: bool = True            # also read the article so far (the mean of every earlier sentence, context
                                    # included) as one more input row; with residual, start as the article blend;
                                    # measured better on held-out text (BENCHMARKS.md, "Held-out quality")
    model: dict = field(default_factory=dict)       # build_model kwargs (hidden, layers, ...); omitted = seed sizes
    loss: dict | str | None = None  # CompositeLoss weights, a LOSS_PRESETS name, or None = the "default" preset
    threads: int | str | None = None  # torch threads for the run (restored afterwards); None = leave alone; "auto" =
                                    # the cores shared among the fits running in this process, re-balanced every
                                    # epoch (the flow's threads runner: the last training left running gets them all)
    eval_batch_size: int = 2048
    init: str | None = None         # a trained model folder whose weights start the run (fine-tuning,
                                    # lvm.train.init): same arch, context and inputs; its sizes when `model` is empty

    def __post_init__(self):
        if self.model is None:
            self.model = {}
        if self.arch not in MODELS:
            raise ValueError(f"unknown arch {self.arch!r}; valid: {', '.join(MODELS)}")
        for name in ("epochs", "batch_size", "context", "eval_batch_size", "plateau_patience"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be a positive int, got {v!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"seed must be a non-negative int, got {self.seed!r}")
        for name in ("lr", "weight_decay", "warmup_frac", "min_lr_frac", "plateau_factor", "min_delta"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
                raise ValueError(f"{name} must be a non-negative number, got {v!r}")
        if self.lr <= 0:
            raise ValueError(f"lr must be > 0, got {self.lr!r}")
        if not 0 <= self.warmup_frac < 1 or not 0 <= self.min_lr_frac <= 1 or not 0 < self.plateau_factor <= 1:
            raise ValueError("need 0 <= warmup_frac < 1, 0 <= min_lr_frac <= 1 and 0 < plateau_factor <= 1")
        for name in ("grad_clip", "patience"):
            v = getattr(self, name)
            if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0):
                raise ValueError(f"{name} must be None or a non-negative number, got {v!r}")
        if self.threads not in (None, "auto") and (isinstance(self.threads, bool) or not isinstance(self.threads, int)
                                                    or self.threads < 1):
            raise ValueError(f"threads must be None, 'auto' or a positive int, got {self.threads!r}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {SCHEDULES}, got {self.schedule!r}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")
        if self.device not in DEVICES:
            raise ValueError(f"device must be one of {DEVICES}, got {self.device!r}")
        for name in ("residual", "article"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be a bool, got {getattr(self, name)!r}")
        if not isinstance(self.model, dict):
            raise ValueError(f"model must be a dict of build_model kwargs, got {self.model!r}")
        if self.init is not None and (not isinstance(self.init, str) or not self.init.strip()):
            raise ValueError(f"init must be None or a model folder's path, got {self.init!r}")
        if self.loss is not None and not isinstance(self.loss, (dict, str)):
            raise ValueError(f"loss must be a dict of weights, a preset name or None, got {self.loss!r}")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "TrainConfig":
        """From a dict of fields (unknown keys are an error; a None `model` means {})."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown TrainConfig fields {unknown}; valid: {sorted(known)}")
        return cls(**data)

    def build(self, dim: int) -> torch.nn.Module:
        return build_model(self.arch, dim, context=self.context, residual=self.residual, article=self.article,
                           **self.model)

    def loss_fn(self) -> CompositeLoss:
        return CompositeLoss.from_config(self.loss)

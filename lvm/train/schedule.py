"""The learning-rate multiplier per optimizer step; its state is plain numbers so a checkpoint stores it as JSON."""

from __future__ import annotations

import math

from lvm.train.config import TrainConfig


class LRSchedule:
    """Multiplier of the base learning rate per optimizer step: linear warm-up, then cosine decay to `min_lr_frac`
    (schedule="cosine") or a constant that shrinks by `plateau_factor` when validation stalls ("plateau").
    Its state is plain numbers (JSON in the checkpoint)."""

    def __init__(self, cfg: TrainConfig, total_steps: int):
        self.cfg = cfg
        self.total = max(1, int(total_steps))
        self.warmup = int(round(cfg.warmup_frac * self.total))
        self.scale = 1.0  # plateau state
        self.best: float | None = None
        self.bad = 0

    def factor(self, step: int) -> float:
        """`step` = optimizer steps already taken (0 for the first)."""
        if step < self.warmup:
            return (step + 1) / self.warmup
        if self.cfg.schedule == "plateau":
            return self.scale
        progress = min(1.0, (step - self.warmup) / max(1, self.total - self.warmup - 1))
        lo = self.cfg.min_lr_frac
        return lo + (1.0 - lo) * 0.5 * (1.0 + math.cos(math.pi * progress))

    def epoch_end(self, val_cosine: float) -> None:
        if self.cfg.schedule != "plateau":
            return
        if self.best is None or val_cosine > self.best + 1e-4:
            self.best, self.bad = val_cosine, 0
        else:
            self.bad += 1
            if self.bad >= self.cfg.plateau_patience:
                self.scale *= self.cfg.plateau_factor
                self.bad = 0

    def state_dict(self) -> dict:
        return {"scale": self.scale, "best": self.best, "bad": self.bad, "total": self.total, "warmup": self.warmup}

    def load_state_dict(self, state: dict) -> None:
        self.scale, self.best, self.bad = float(state["scale"]), state["best"], int(state["bad"])

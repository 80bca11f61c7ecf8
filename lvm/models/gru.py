"""GRU LVM: a residual stack of pre-norm GRU layers.

Linear D -> hidden, `layers` x (LayerNorm -> GRU(hidden, hidden) -> residual add), head on the last
position. The residual stack trains more easily than a plain deep GRU.
Seed (hidden=512, layers=4) at D=768: 7,359,232 parameters.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from .base import LVM, resolve_hparams


class GRUBlock(nn.Module):
    def __init__(self, hidden: int, dropout: float):
        super().__init__()
        self.norm = nn.LayerNorm(hidden)
        self.gru = nn.GRU(hidden, hidden, batch_first=True)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.gru(self.norm(x))
        return x + self.drop(out)


class GRUModel(LVM):
    arch = "gru"
    defaults = {"hidden": 512, "layers": 4, "dropout": 0.0}

    def __init__(self, dim: int, context: int = 5, residual: bool = False, article: bool = False, **config):
        hp = resolve_hparams(self.arch, self.defaults, config)
        super().__init__(dim, context, residual, hp, article)
        self.proj = nn.Linear(dim, hp["hidden"])
        self.blocks = nn.ModuleList(GRUBlock(hp["hidden"], hp["dropout"]) for _ in range(hp["layers"]))
        self.head = self.make_head(hp["hidden"])

    def features(self, ctx: torch.Tensor) -> torch.Tensor:
        x = self.proj(ctx)
        for block in self.blocks:
            x = block(x)
        return x[:, -1]

"""LSTM LVM: the seed's smallest model.

nn.LSTM(D -> hidden, `layers` layers) over the context, prediction head on the last position.
Seed (hidden=512, layers=2) at D=768: 5,384,448 parameters.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from .base import LVM, resolve_hparams


class LSTMModel(LVM):
    arch = "lstm"
    defaults = {"hidden": 512, "layers": 2, "dropout": 0.0}

    def __init__(self, dim: int, context: int = 5, residual: bool = False, article: bool = False, **config):
        hp = resolve_hparams(self.arch, self.defaults, config)
        super().__init__(dim, context, residual, hp, article)
        # dropout acts between stacked layers only (as in nn.LSTM), so it changes nothing when layers=1
        self.lstm = nn.LSTM(dim, hp["hidden"], num_layers=hp["layers"], batch_first=True,
                            dropout=hp["dropout"] if hp["layers"] > 1 else 0.0)
        self.head = self.make_head(hp["hidden"])

    def features(self, ctx: torch.Tensor) -> torch.Tensor:
        out, _ = self.lstm(ctx)
        return out[:, -1]

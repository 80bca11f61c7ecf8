"""Transformer LVM: a plain pre-norm causal decoder stack (GPT-style, no cross-attention).

Linear D -> hidden, learned positional embeddings (positions 0..C-1, C <= max_context), `layers` x
nn.TransformerEncoderLayer(norm_first, GELU, causal mask), final LayerNorm, head on the last position.
The seed also cross-attended to its own input (17,867,520 params); that adds parameters, not information.
Seed (hidden=512, layers=4, heads=8, ffn=2048, max_context=64) at D=768: 13,694,720 parameters.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from .head import LVM, PredictionHead, resolve_hparams


class TransformerModel(LVM):
    arch = "transformer"
    defaults = {"hidden": 512, "layers": 4, "heads": 8, "ffn": 2048, "max_context": 64, "dropout": 0.0}

    def __init__(self, dim: int, context: int = 5, residual: bool = False, **config):
        hp = resolve_hparams(self.arch, self.defaults, config)
        if hp["hidden"] % hp["heads"]:
            raise ValueError(f"transformer: hidden ({hp['hidden']}) must be divisible by heads ({hp['heads']})")
        if context > hp["max_context"]:
            raise ValueError(f"transformer: context {context} exceeds max_context {hp['max_context']}")
        super().__init__(dim, context, residual, hp)
        self.proj = nn.Linear(dim, hp["hidden"])
        self.pos = nn.Embedding(hp["max_context"], hp["hidden"])
        nn.init.normal_(self.pos.weight, std=0.02)  # at N(0,1) positions drown the ~0.03-scale input projection
        self.layers = nn.ModuleList(
            nn.TransformerEncoderLayer(hp["hidden"], hp["heads"], hp["ffn"], dropout=hp["dropout"],
                                       activation="gelu", batch_first=True, norm_first=True)
            for _ in range(hp["layers"]))
        self.norm = nn.LayerNorm(hp["hidden"])
        self.head = PredictionHead(hp["hidden"], dim)

    def features(self, ctx: torch.Tensor) -> torch.Tensor:
        C = ctx.shape[1]
        if C > self.pos.num_embeddings:
            raise ValueError(f"transformer: context length {C} exceeds max_context {self.pos.num_embeddings}")
        x = self.proj(ctx) + self.pos(torch.arange(C, device=ctx.device))
        # boolean mask (True = may not attend): converted to whatever dtype autocast gives the scores
        mask = torch.ones(C, C, dtype=torch.bool, device=ctx.device).triu(1)
        for layer in self.layers:
            x = layer(x, src_mask=mask, is_causal=True)
        return self.norm(x[:, -1])

"""Transformer LVM: a plain pre-norm causal decoder stack (GPT-style, no cross-attention).

Linear D -> hidden, learned positional embeddings (positions 0..C-1, C <= max_context), `layers` pre-norm causal
blocks (LayerNorm -> multi-head self-attention -> residual, LayerNorm -> GELU MLP -> residual; the layout and the
parameters of nn.TransformerEncoderLayer(norm_first=True)), final LayerNorm, head on the last position.
The seed also cross-attended to its own input (17,867,520 params); that adds parameters, not information.
Seed (hidden=512, layers=4, heads=8, ffn=2048, max_context=64) at D=768: 13,694,720 parameters.

Written out (as in nanoGPT's model.py) rather than built from nn.TransformerEncoderLayer for two exact savings
that matter on a CPU with contexts of ~5 sentences: attention is a plain softmax(QKᵀ)V, several times cheaper than
the flash-attention kernel at this length; and the last block computes its queries, attention output and MLP for
the last position only, the one the head reads (keys and values still come from every position), which skips
~3/5 of that block's work at 5 positions. See bench/train_throughput.py.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from .base import LVM, resolve_hparams


class CausalBlock(nn.Module):
    """x + attn(ln1(x)), then + mlp(ln2(x)); `last_only` returns the last position only ([B, 1, H])."""

    def __init__(self, hidden: int, heads: int, ffn: int, dropout: float):
        super().__init__()
        self.heads = heads
        self.ln1 = nn.LayerNorm(hidden)
        self.qkv = nn.Linear(hidden, 3 * hidden)
        self.attn_out = nn.Linear(hidden, hidden)
        self.ln2 = nn.LayerNorm(hidden)
        self.fc = nn.Linear(hidden, ffn)
        self.fc_out = nn.Linear(ffn, hidden)
        self.attn_drop = nn.Dropout(dropout)
        self.drop = nn.Dropout(dropout)
        nn.init.xavier_uniform_(self.qkv.weight)  # nn.MultiheadAttention's initialisation
        nn.init.zeros_(self.qkv.bias)
        nn.init.zeros_(self.attn_out.bias)

    def attention(self, x: torch.Tensor, last_only: bool) -> torch.Tensor:
        B, T, H = x.shape
        q, k, v = self.qkv(x).view(B, T, 3, self.heads, H // self.heads).permute(2, 0, 3, 1, 4)  # 3 x [B, h, T, d]
        if last_only:
            q = q[:, :, -1:]  # the last query sees every key: no mask needed
        scores = (q @ k.transpose(-2, -1)).float() * (1.0 / math.sqrt(k.shape[-1]))
        if not last_only and T > 1:
            scores = scores.masked_fill(torch.ones(T, T, dtype=torch.bool, device=x.device).triu(1), float("-inf"))
        att = self.attn_drop(scores.softmax(-1).to(v.dtype))
        y = (att @ v).transpose(1, 2).reshape(B, q.shape[2], H)
        return self.drop(self.attn_out(y))

    def forward(self, x: torch.Tensor, last_only: bool = False) -> torch.Tensor:
        y = self.attention(self.ln1(x), last_only)
        x = (x[:, -1:] if last_only else x) + y
        return x + self.drop(self.fc_out(self.attn_drop(F.gelu(self.fc(self.ln2(x))))))


class TransformerModel(LVM):
    arch = "transformer"
    defaults = {"hidden": 512, "layers": 4, "heads": 8, "ffn": 2048, "max_context": 64, "dropout": 0.0}

    def __init__(self, dim: int, context: int = 5, residual: bool = False, article: bool = False, **config):
        hp = resolve_hparams(self.arch, self.defaults, config)
        if hp["hidden"] % hp["heads"]:
            raise ValueError(f"transformer: hidden ({hp['hidden']}) must be divisible by heads ({hp['heads']})")
        if context + article > hp["max_context"]:
            raise ValueError(f"transformer: context {context}{' + the article row' if article else ''} exceeds "
                             f"max_context {hp['max_context']}")
        super().__init__(dim, context, residual, hp, article)
        self.proj = nn.Linear(dim, hp["hidden"])
        self.pos = nn.Embedding(hp["max_context"], hp["hidden"])
        nn.init.normal_(self.pos.weight, std=0.02)  # at N(0,1) positions drown the ~0.03-scale input projection
        self.layers = nn.ModuleList(CausalBlock(hp["hidden"], hp["heads"], hp["ffn"], hp["dropout"])
                                    for _ in range(hp["layers"]))
        self.norm = nn.LayerNorm(hp["hidden"])
        self.head = self.make_head(hp["hidden"])

    def features(self, ctx: torch.Tensor) -> torch.Tensor:
        C = ctx.shape[1]
        if C > self.pos.num_embeddings:
            raise ValueError(f"transformer: context length {C} exceeds max_context {self.pos.num_embeddings}")
        x = self.proj(ctx) + self.pos(torch.arange(C, device=ctx.device))
        for i, layer in enumerate(self.layers):
            x = layer(x, last_only=i == len(self.layers) - 1)
        return self.norm(x[:, -1])

"""An ensemble of trained LVMs: the mean of its members' unit predictions, one module to everything downstream.

The flow trains several architectures on the same data anyway; their errors differ, so the mean of their
predictions is nearer the next sentence than any one of them (BENCHMARKS.md, "Held-out quality"). As one module
with the members' weights in one state_dict, an ensemble is saved, registered, compared with production and
served like any other model; nothing is trained here.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


class Ensemble(nn.Module):
    """Members of one input shape (D, context, article input); forward = mean of their unit predictions."""

    arch = "ensemble"

    def __init__(self, members: list[nn.Module]):
        super().__init__()
        if len(members) < 2:
            raise ValueError(f"an ensemble needs at least 2 members, got {len(members)}")
        shapes = {(m.dim, m.context, bool(getattr(m, "article", False))) for m in members}
        if len(shapes) != 1:
            raise ValueError(f"ensemble members must share D, context and the article input, got "
                             f"{sorted(shapes)} (dim, context, article)")
        (self.dim, self.context, self.article), = shapes
        self.residual = False
        self.members = nn.ModuleList(members)

    @property
    def inputs(self) -> int:
        return self.context + int(self.article)

    def forward(self, ctx: torch.Tensor, article: torch.Tensor | None = None) -> torch.Tensor:
        args = (ctx,) if article is None else (ctx, article)
        outs = [F.normalize(m(*args).float(), dim=-1, eps=1e-12) for m in self.members]
        return torch.stack(outs).mean(0).to(ctx.dtype)

    def build_config(self) -> dict:
        """The keys of config.json that rebuild this ensemble with `lvm.models.build_model("ensemble", ...)`."""
        return {"arch": self.arch, "dim": self.dim, "context": self.context, "residual": False,
                "article": self.article, "model": {"members": [m.build_config() for m in self.members]}}

    def extra_repr(self) -> str:
        return f"dim={self.dim}, context={self.context}, article={self.article}, members={len(self.members)}"

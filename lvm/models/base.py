"""Pieces every LVM shares: the prediction head, the residual-over-mean option, the article input, config
validation.

Each architecture only has to turn a sequence [B, T, D] into one hidden vector [B, H] per example (`features`);
`LVM.forward` applies the seed head and, when asked, adds the mean of the context.

The article input (article=True): besides its C context sentences the model reads the mean of every earlier
sentence of the article (context included), as one more row in front of the context, so T = C + 1. This is the
summary the untrained article_blend baseline shows the signal is in (BENCHMARKS.md, "Held-out quality"). With
residual=True such a model starts as that blend: w * unit(article mean) + (1 - w) * unit(context mean), w a
learned scalar starting at 1/2, plus the zero-initialised head's correction.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


class PredictionHead(nn.Module):
    """The seed head: Linear(H,H) -> GELU -> LayerNorm(H) -> Linear(H,D).

    zero_init: the last Linear starts at zero, so a residual model starts as exactly the context-mean baseline and
    learns a correction to it (as residual branches are zero-initialised in ReZero / DiT). Measured on real text
    (lstm, ../shared/corpus): held-out cosine 0.474 against 0.454 with the default init, which starts the model
    from a random vector of about the targets' size added to the mean.
    """

    def __init__(self, hidden: int, dim: int, zero_init: bool = False):
        super().__init__()
        self.fc = nn.Linear(hidden, hidden)
        self.norm = nn.LayerNorm(hidden)
        self.out = nn.Linear(hidden, dim)
        if zero_init:
            nn.init.zeros_(self.out.weight)
            nn.init.zeros_(self.out.bias)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.out(self.norm(F.gelu(self.fc(h))))


ARCHITECTURES: dict[str, type] = {}  # name -> LVM subclass, filled as each model module is imported


class LVM(nn.Module):
    """Base class: features(x) -> [B, H], then the head; residual=True adds mean(ctx over C) (the blend above with
    article=True) and zero-initialises the head's output layer (the model starts as that baseline).

    The residual flag lives here rather than in a wrapper module so that the state_dict keys are the
    same with or without it.
    """

    arch: str = ""
    #: build kwargs this architecture accepts, with their seed defaults
    defaults: dict = {}

    def __init_subclass__(cls, **kwargs):
        """An architecture registers itself by naming its `arch`: adding one is its file and the line in
        lvm/models/__init__.py that imports it (MODELS, the CLI choices, the flow's check, ModelOptions and the
        tests that run every architecture all read ARCHITECTURES)."""
        super().__init_subclass__(**kwargs)
        if cls.arch:
            if cls.arch in ARCHITECTURES and ARCHITECTURES[cls.arch] is not cls:
                raise ValueError(f"two architectures are named {cls.arch!r}: {ARCHITECTURES[cls.arch]} and {cls}")
            ARCHITECTURES[cls.arch] = cls

    def __init__(self, dim: int, context: int, residual: bool, hparams: dict, article: bool = False):
        super().__init__()
        self.dim = dim
        self.context = context
        self.residual = residual
        self.article = article
        self.hparams = dict(hparams)
        if article and residual:  # sigmoid(0) = 1/2: the article_blend baseline's weight on our corpora
            self.blend_logit = nn.Parameter(torch.zeros(()))

    @property
    def inputs(self) -> int:
        """Rows `features` reads: the context, plus the article row in front of it when article=True."""
        return self.context + int(self.article)

    def make_head(self, hidden: int) -> PredictionHead:
        """The seed head from `hidden` to D; zero-initialised output when residual (the model starts as the mean)."""
        return PredictionHead(hidden, self.dim, zero_init=self.residual)

    def features(self, ctx: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def forward(self, ctx: torch.Tensor, article: torch.Tensor | None = None) -> torch.Tensor:
        """ctx [B, C, D] oldest first; article [B, D], the mean of every earlier sentence of the article (context
        included): required when the model was built with article=True, refused otherwise."""
        if ctx.dim() != 3 or ctx.shape[-1] != self.dim or ctx.shape[1] < 1:
            raise ValueError(f"{self.arch}: expected context [B, C>=1, {self.dim}], got {tuple(ctx.shape)}")
        if self.article != (article is not None):
            raise ValueError(f"{self.arch}: built with article={self.article}, "
                             f"{'but no article was given' if self.article else 'but given an article'}")
        if article is not None and tuple(article.shape) != (ctx.shape[0], self.dim):
            raise ValueError(f"{self.arch}: expected article [{ctx.shape[0]}, {self.dim}], got {tuple(article.shape)}")
        x = ctx if article is None else torch.cat([article[:, None].to(ctx.dtype), ctx], dim=1)
        out = self.head(self.features(x))
        if self.residual:
            base = ctx.mean(dim=1)
            if article is not None:
                w = torch.sigmoid(self.blend_logit)
                base = w * F.normalize(article, dim=-1, eps=1e-8) + (1 - w) * F.normalize(base, dim=-1, eps=1e-8)
            out = out + base.to(out.dtype)
        return out

    def build_config(self) -> dict:
        """The keys of config.json that rebuild this exact model with `build_model`."""
        return {"arch": self.arch, "dim": self.dim, "context": self.context,
                "residual": self.residual, "article": self.article, "model": dict(self.hparams)}

    def extra_repr(self) -> str:
        return f"dim={self.dim}, context={self.context}, residual={self.residual}, article={self.article}"


def resolve_hparams(arch: str, defaults: dict, given: dict) -> dict:
    """Merge build kwargs over the seed defaults; reject unknown keys and bad values early."""
    unknown = sorted(set(given) - set(defaults))
    if unknown:
        raise ValueError(f"{arch}: unknown config {unknown}; accepted: {sorted(defaults)}")
    hp = {**defaults, **given}
    for key, value in hp.items():
        if key == "dropout":
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value < 1.0:
                raise ValueError(f"{arch}: dropout must be a number in [0, 1), got {value!r}")
            hp[key] = float(value)
        elif isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{arch}: {key} must be a positive int, got {value!r}")
    return hp

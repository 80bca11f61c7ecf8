"""Mamba-2 LVM in pure PyTorch (runs on CPU; the original project fell back to a GRU because mamba-ssm needs CUDA).

Linear D -> hidden, `layers` x (RMSNorm -> Mamba-2 mixer -> residual add), head on the last position.

The mixer follows Mamba2Simple (state-spaces/mamba): in_proj gives z, x, B, C, dt; a short causal depthwise
conv1d + SiLU over xBC; a per-head scalar decay A = -exp(A_log); dt = softplus(dt + dt_bias); a D skip;
a gated RMSNorm with z; out_proj. The selective scan is computed in the SSD chunked (matrix) form of
`ssd_minimal_discrete`: within a chunk the output is a masked, decay-weighted (C B^T) X product, so a
5-sentence context is one small batched matmul, with no Python loop over positions. `ssd_reference` is the
step-by-step recurrence used by the tests to check it. The head reads only the last position, so the last
block runs `last_only`: its readout (`ssd_scan_last`, O(l)), gate, norm and out_proj for that position alone.
When `mamba_ssm` is importable and the tensors are on CUDA, its fused kernel computes the same scan for the same
weights; nothing else ever replaces the scan.

Seed (hidden=512, layers=4, d_state=16, expand=2, headdim=64, d_conv=4, ngroups=1) at D=768:
7,468,608 parameters. d_state=16 keeps the model at the design's ~7.4M budget; with contexts of ~5
sentences the state (16 x 64 per head) is far from saturated. The scan runs in fp32 (autocast is turned
off for it only) because decays exp(sum dt*A) lose too much in bf16; the projections stay in bf16.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from .base import LVM, resolve_hparams

try:  # optional fused CUDA kernel; the same maths as ssd_scan
    from mamba_ssm.ops.triton.ssd_combined import mamba_chunk_scan_combined as _fused_scan
except Exception:  # pragma: no cover - not installed on CPU machines
    _fused_scan = None


def segsum(x: torch.Tensor) -> torch.Tensor:
    """[..., T] -> [..., T, T] with out[i, j] = x[j+1] + ... + x[i] for j <= i and -inf above the diagonal.

    exp(segsum(dt*A)) is the decay from step j to step i. Summing masked copies (not differencing one
    cumsum) keeps it exact near the diagonal.
    """
    T = x.size(-1)
    x = x[..., None].expand(*x.shape, T)  # x[..., i, j] = x_i
    below = torch.ones(T, T, dtype=torch.bool, device=x.device).tril(-1)
    out = torch.cumsum(x.masked_fill(~below, 0.0), dim=-2)
    on_or_below = torch.ones(T, T, dtype=torch.bool, device=x.device).tril(0)
    return out.masked_fill(~on_or_below, float("-inf"))


def _heads(t: torch.Tensor, nheads: int) -> torch.Tensor:
    """B or C [b, l, groups, n] -> [b, l, heads, n]; consecutive heads share a group, as in mamba_ssm."""
    return t.repeat_interleave(nheads // t.shape[2], dim=2)


def ssd_scan(x, dt, A, B, C, D, chunk_size: int = 64) -> torch.Tensor:
    """Chunked SSD scan (ssd_minimal_discrete + D skip) in fp32.

    x [b,l,h,p], dt [b,l,h] (after softplus), A [h] (negative), B/C [b,l,g,n], D [h] -> y [b,l,h,p].
    """
    b, l, h, p = x.shape
    x, dt, A, D = x.float(), dt.float(), A.float(), D.float()
    B, C = _heads(B.float(), h), _heads(C.float(), h)
    T = min(chunk_size, l)
    pad = (-l) % T  # zero steps at the end: causal, so earlier outputs are unaffected
    X, Adt = x * dt[..., None], dt * A
    if pad:
        X, B, C = (F.pad(t, (0, 0, 0, 0, 0, pad)) for t in (X, B, C))
        Adt = F.pad(Adt, (0, 0, 0, pad))
    c = (l + pad) // T
    X, B, C = (t.reshape(b, c, T, h, -1) for t in (X, B, C))
    Adt = Adt.reshape(b, c, T, h).permute(0, 3, 1, 2)  # [b,h,c,T]
    A_cum = torch.cumsum(Adt, dim=-1)

    # 1. within each chunk: y_i = sum_{j<=i} (C_i . B_j) exp(A_j+1 + ... + A_i) X_j
    scores = torch.einsum("bclhn,bcshn->bhcls", C, B) * torch.exp(segsum(Adt))
    Y = torch.einsum("bhcls,bcshp->bclhp", scores, X)

    if c > 1:
        # 2. state at the end of each chunk, 3. carried across chunks, 4. read out inside the next chunk
        decay_to_end = torch.exp(A_cum[..., -1:] - A_cum)  # [b,h,c,T]
        states = torch.einsum("bclhn,bhcl,bclhp->bchpn", B, decay_to_end, X)
        states = torch.cat([torch.zeros_like(states[:, :1]), states], dim=1)
        decay_chunk = torch.exp(segsum(F.pad(A_cum[..., -1], (1, 0))))  # [b,h,c+1,c+1]
        states = torch.einsum("bhzc,bchpn->bzhpn", decay_chunk, states)[:, :-1]
        Y = Y + torch.einsum("bclhn,bchpn,bhcl->bclhp", C, states, torch.exp(A_cum))

    return Y.reshape(b, c * T, h, p)[:, :l] + D[:, None] * x


def ssd_scan_last(x, dt, A, B, C, D) -> torch.Tensor:
    """The last position of `ssd_scan` only: y_{l-1} = sum_j (C_{l-1} . B_j) exp(A dt_{j+1} + ... + A dt_{l-1}) dt_j x_j
    + D x_{l-1}, in O(l) without the [l, l] score matrix. Same shapes as ssd_scan; returns [b, 1, h, p].
    The decay exponents are suffix sums (a reversed cumsum, shifted by one), not differences of one cumsum."""
    b, l, h, p = x.shape
    x, dt, A, D = x.float(), dt.float(), A.float(), D.float()
    B, C = _heads(B.float(), h), _heads(C[:, -1:].float(), h)
    Adt = dt * A                                                   # [b, l, h]
    after = torch.flip(torch.cumsum(torch.flip(Adt[:, 1:], [1]), 1), [1])  # sum over m > j, for j < l-1
    decay = torch.exp(F.pad(after, (0, 0, 0, 1)))                  # [b, l, h]; 1 for j = l-1
    w = torch.einsum("bhn,blhn->blh", C[:, 0], B) * decay * dt     # [b, l, h]
    y = torch.einsum("blh,blhp->bhp", w, x) + D[:, None] * x[:, -1]
    return y[:, None]


def ssd_reference(x, dt, A, B, C, D) -> torch.Tensor:
    """The recurrence, one step at a time: h_t = exp(dt A) h_{t-1} + dt B_t x_t ; y_t = C_t h_t + D x_t."""
    b, l, h, p = x.shape
    x, dt, A, D = x.float(), dt.float(), A.float(), D.float()
    B, C = _heads(B.float(), h), _heads(C.float(), h)
    state = x.new_zeros(b, h, p, B.shape[-1])
    ys = []
    for t in range(l):
        decay = torch.exp(dt[:, t] * A)[..., None, None]  # [b,h,1,1]
        state = decay * state + (dt[:, t, :, None] * x[:, t])[..., None] * B[:, t, :, None, :]
        ys.append(torch.einsum("bhpn,bhn->bhp", state, C[:, t]) + D[:, None] * x[:, t])
    return torch.stack(ys, dim=1)


class GatedRMSNorm(nn.Module):
    """RMSNorm(y * silu(z)) * weight: Mamba-2's output gate (norm_before_gate=False)."""

    def __init__(self, d: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(d))

    def forward(self, y: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        y = y.float() * F.silu(z.float())
        return y * torch.rsqrt(y.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


class Mamba2Mixer(nn.Module):
    """One Mamba-2 mixer (Mamba2Simple layout, bias-free projections, conv with bias)."""

    def __init__(self, d_model: int, d_state: int = 16, d_conv: int = 4, expand: int = 2, headdim: int = 64,
                 ngroups: int = 1, chunk_size: int = 64,
                 dt_min: float = 0.001, dt_max: float = 0.1, dt_init_floor: float = 1e-4):
        super().__init__()
        self.d_inner = expand * d_model
        if self.d_inner % headdim:
            raise ValueError(f"mamba2: expand*hidden ({self.d_inner}) must be divisible by headdim ({headdim})")
        self.nheads = self.d_inner // headdim
        if self.nheads % ngroups:
            raise ValueError(f"mamba2: number of heads ({self.nheads}) must be divisible by ngroups ({ngroups})")
        self.headdim, self.d_state, self.ngroups, self.chunk_size = headdim, d_state, ngroups, chunk_size
        self.use_reference = False  # tests flip this to run the step-by-step recurrence on the same weights

        conv_dim = self.d_inner + 2 * ngroups * d_state
        self.in_proj = nn.Linear(d_model, 2 * self.d_inner + 2 * ngroups * d_state + self.nheads, bias=False)
        self.conv1d = nn.Conv1d(conv_dim, conv_dim, d_conv, groups=conv_dim, padding=d_conv - 1)

        # dt starts log-uniform in [dt_min, dt_max]; dt_bias is its softplus inverse (as in mamba_ssm)
        dt = torch.exp(torch.rand(self.nheads) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min))
        dt = dt.clamp(min=dt_init_floor)
        self.dt_bias = nn.Parameter(dt + torch.log(-torch.expm1(-dt)))
        self.A_log = nn.Parameter(torch.log(torch.empty(self.nheads).uniform_(1, 16)))
        self.D = nn.Parameter(torch.ones(self.nheads))
        for p in (self.dt_bias, self.A_log, self.D):
            p._no_weight_decay = True  # mamba_ssm convention; an optimizer may honour it

        self.norm = GatedRMSNorm(self.d_inner)
        self.out_proj = nn.Linear(self.d_inner, d_model, bias=False)

    def _causal_conv(self, xBC: torch.Tensor) -> torch.Tensor:
        """Depthwise causal conv1d with self.conv1d's weights, as d_conv shifted multiply-adds.

        Same result as conv1d(pad left) but stays in [b, l, channels] layout: no transposes, and about twice
        as fast as the depthwise convolution kernel on CPU for short sequences.
        """
        l, K = xBC.shape[1], self.conv1d.kernel_size[0]
        w = self.conv1d.weight[:, 0, :]  # [channels, K]; tap K-1 sees the current step
        xp = F.pad(xBC, (0, 0, K - 1, 0))
        out = self.conv1d.bias + xp[:, :l] * w[:, 0]
        for k in range(1, K):
            out = out + xp[:, k:k + l] * w[:, k]
        return out

    def forward(self, u: torch.Tensor, last_only: bool = False) -> torch.Tensor:
        """[b, l, d_model] -> [b, l, d_model]; `last_only`: the last position only, [b, 1, d_model].

        last_only is exact, not an approximation: x, B and dt still come from every position (the state needs
        them); the gate z, C, the readout, the norm and out_proj are computed for the last position only."""
        b, l, _ = u.shape
        if last_only:  # z for the last position only: the in_proj rows split in two matmuls
            z = F.linear(u[:, -1:], self.in_proj.weight[:self.d_inner])
            xBC, dt = torch.split(F.linear(u, self.in_proj.weight[self.d_inner:]),
                                  [self.d_inner + 2 * self.ngroups * self.d_state, self.nheads], dim=-1)
        else:
            z, xBC, dt = torch.split(self.in_proj(u), [self.d_inner, self.d_inner + 2 * self.ngroups * self.d_state,
                                                       self.nheads], dim=-1)
        xBC = F.silu(self._causal_conv(xBC))
        x, B, C = torch.split(xBC, [self.d_inner, self.ngroups * self.d_state, self.ngroups * self.d_state], dim=-1)
        x = x.reshape(b, l, self.nheads, self.headdim)
        B = B.reshape(b, l, self.ngroups, self.d_state)
        C = C.reshape(b, l, self.ngroups, self.d_state)
        A = -torch.exp(self.A_log.float())

        with torch.autocast(u.device.type, enabled=False):
            if _fused_scan is not None and u.is_cuda and not self.use_reference:
                y = _fused_scan(x.contiguous(), dt.float().contiguous(), A, B.contiguous(), C.contiguous(),
                                self.chunk_size, D=self.D.float(), dt_bias=self.dt_bias.float(), dt_softplus=True)
            else:
                dt = F.softplus(dt.float() + self.dt_bias.float())
                if self.use_reference:
                    y = ssd_reference(x, dt, A, B, C, self.D)
                elif last_only:
                    y = ssd_scan_last(x, dt, A, B, C, self.D)
                else:
                    y = ssd_scan(x, dt, A, B, C, self.D, self.chunk_size)
            y = y[:, -1:] if last_only else y  # a no-op after ssd_scan_last
            y = self.norm(y.reshape(b, y.shape[1], self.d_inner), z)
        return self.out_proj(y)


class Mamba2Block(nn.Module):
    def __init__(self, hidden: int, dropout: float, **mixer):
        super().__init__()
        self.norm = nn.RMSNorm(hidden, eps=1e-5)
        self.mixer = Mamba2Mixer(hidden, **mixer)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, last_only: bool = False) -> torch.Tensor:
        return (x[:, -1:] if last_only else x) + self.drop(self.mixer(self.norm(x), last_only).float())


class Mamba2Model(LVM):
    arch = "mamba2"
    defaults = {"hidden": 512, "layers": 4, "d_state": 16, "d_conv": 4, "expand": 2, "headdim": 64,
                "ngroups": 1, "chunk_size": 64, "dropout": 0.0}

    def __init__(self, dim: int, context: int = 5, residual: bool = False, article: bool = False, **config):
        hp = resolve_hparams(self.arch, self.defaults, config)
        super().__init__(dim, context, residual, hp, article)
        mixer = {k: hp[k] for k in ("d_state", "d_conv", "expand", "headdim", "ngroups", "chunk_size")}
        self.proj = nn.Linear(dim, hp["hidden"])
        self.blocks = nn.ModuleList(Mamba2Block(hp["hidden"], hp["dropout"], **mixer) for _ in range(hp["layers"]))
        self.head = self.make_head(hp["hidden"])

    def features(self, ctx: torch.Tensor) -> torch.Tensor:
        x = self.proj(ctx).float()  # fp32 residual stream, also under bf16 autocast
        for i, block in enumerate(self.blocks):  # the head reads the last position: the last block computes only it
            x = block(x, last_only=i == len(self.blocks) - 1)
        return x[:, -1]

    def use_reference_scan(self, on: bool = True) -> "Mamba2Model":
        """Switch every mixer to the slow step-by-step recurrence (for checking the SSD form)."""
        for m in self.modules():
            if isinstance(m, Mamba2Mixer):
                m.use_reference = on
        return self

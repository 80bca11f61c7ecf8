"""The training engine (pure torch; never imports prefect): fit, evaluate, checkpoint, resume.

`fit` trains one architecture on (vectors, target rows): AdamW, linear warm-up then cosine decay (or reduce on
plateau), gradient clipping, early stopping on validation cosine, best weights kept. Batches are gathered by index
arithmetic from one tensor of all vectors (`V[t[:, None] + arange(-C, 0)]`), so windows are never materialised.

Speed on CPU comes from bf16 autocast (AVX-512-bf16 / AMX: several times the fp32 matmul rate), batches of 256
rather than the seed's 32 (per-step overhead and small-matmul inefficiency dominate at 32), a fused AdamW step and
foreach gradient clipping. See bench/train_throughput.py.

Reproducibility and resume: the shuffle order of epoch e is drawn from (seed, e) and torch's RNG (dropout) is
re-seeded from (seed, e) at the start of every epoch, so nothing depends on how much of a global random stream an
earlier epoch consumed. After EVERY epoch `out_dir/checkpoint/` receives the weights, optimizer state and RNG
states (`state-EEEEEE.pt`, read back only with `torch.load(weights_only=True)`), the best weights so far
(`best-EEEEEE.safetensors`) and `checkpoint.json` (epoch, step, scheduler, early-stopping state, history, config),
each written to a temporary file and `os.replace`d; `checkpoint.json` is written last and is the commit point, so
a process killed at any instant leaves a consistent checkpoint. A run killed with SIGKILL and resumed with
`resume=True` ends with exactly the weights and metrics of an uninterrupted run (same seed, same device, same
thread count; checked bit for bit by tests/test_train.py on CPU).

The model folder (docs/ARCHITECTURE.md): model.safetensors + config.json (lvm.models.io.save_model), history.json,
metrics.json (held-out metrics against the baselines when trained through `train_on_table`), checkpoint/.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import threading
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

from lvm.allocator import keep_freed_memory
from lvm.models.io import load_model, save_model
from lvm.atomic import read_json_object, write_atomic, write_json
from lvm.dataset import file_hash, load_split, read_table, split_articles
from lvm.table import window_targets
from lvm.evaluation.compare import vs_best_baseline
from lvm.locking import FolderBusy, folder_lock
from lvm.losses import CompositeLoss
from lvm.evaluation.metrics import article_starts, evaluate_baselines, fit_baselines, predict_windows, score
from lvm.models import MODEL_NAMES, build_model, count_parameters

CHECKPOINT_DIR = "checkpoint"
CHECKPOINT_JSON = "checkpoint.json"
CHECKPOINT_FORMAT = 1
MODEL_FILES = ("model.safetensors", "config.json", "metrics.json", "history.json")
PRECISIONS = ("bf16", "fp32")
SCHEDULES = ("cosine", "plateau")
DEVICES = ("auto", "cpu", "cuda")
# fields that may differ between an interrupted run and its resumption without changing the maths
class ModelFolderBusy(FolderBusy):
    """Another training holds the model folder."""


_RESUME_FREE = ("threads", "eval_batch_size", "device")


# ---------------------------------------------------------------------------------------------------- config

@dataclass
class TrainConfig:
    """Everything that decides a training run. `to_dict()` goes into config.json["train"]."""

    arch: str = "lstm"
    epochs: int = 20
    batch_size: int = 256           # the seed used 32: ~4-8x slower per sample on CPU, see bench/train_throughput.py
    lr: float = 1e-3
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
    context: int = 5
    seed: int = 0
    device: str = "auto"            # "auto" = cuda when available, else cpu
    precision: str = "bf16"         # bf16 autocast where the hardware runs it natively, else fp32 (with a warning)
    residual: bool = True           # predict a correction to the mean of the context, starting from it (zero-init
                                    # head); measured better on held-out text; False = the seed's plain prediction
    model: dict = field(default_factory=dict)       # build_model kwargs (hidden, layers, ...); omitted = seed sizes
    loss: dict | str | None = None  # CompositeLoss weights, a LOSS_PRESETS name, or None = the "default" preset
    threads: int | str | None = None  # torch threads for the run (restored afterwards); None = leave alone; "auto" =
                                    # the cores shared among the fits running in this process, re-balanced every
                                    # epoch (the flow's threads runner: the last training left running gets them all)
    eval_batch_size: int = 2048

    def __post_init__(self):
        if self.model is None:
            self.model = {}
        if self.arch not in MODEL_NAMES:
            raise ValueError(f"unknown arch {self.arch!r}; valid: {', '.join(MODEL_NAMES)}")
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
        if not isinstance(self.residual, bool):
            raise ValueError(f"residual must be a bool, got {self.residual!r}")
        if not isinstance(self.model, dict):
            raise ValueError(f"model must be a dict of build_model kwargs, got {self.model!r}")
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
        return build_model(self.arch, dim, context=self.context, residual=self.residual, **self.model)

    def loss_fn(self) -> CompositeLoss:
        return CompositeLoss.from_config(self.loss)


# ---------------------------------------------------------------------------------------------------- hardware

def resolve_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("device='cuda' but torch sees no CUDA device")
    return torch.device(name)


_BF16_CPU: bool | None = None


def bf16_supported(device: torch.device | str = "cpu") -> bool:
    """True when bf16 autocast runs natively (CUDA with bf16, or a CPU with AVX-512-bf16 / AMX) for the ops the models
    use. The CPU flags are not enough: oneDNN has no bf16 LSTM primitive on some builds and ISAs, so probe it too."""
    global _BF16_CPU
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if _BF16_CPU is None:
        cpu = torch.cpu
        native = any(getattr(cpu, f, lambda: False)() for f in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"))
        _BF16_CPU = native and _bf16_probe()
    return _BF16_CPU


def _bf16_probe() -> bool:
    """A bf16 matmul and a tiny LSTM forward + backward under CPU autocast, without touching the global RNG."""
    try:
        with torch.random.fork_rng(devices=[]):
            with torch.autocast("cpu", dtype=torch.bfloat16):
                out = torch.ones(4, 4) @ torch.ones(4, 4)
                lstm = torch.nn.LSTM(4, 4, batch_first=True)
                y, _ = lstm(torch.ones(2, 3, 4))
            y.float().sum().backward()
        return out.dtype == torch.bfloat16 and float(out[0, 0]) == 4.0
    except RuntimeError:  # e.g. "could not create a primitive descriptor for the LSTM forward propagation primitive"
        return False


def resolve_precision(precision: str, device: torch.device) -> str:
    if precision == "bf16" and not bf16_supported(device):
        warnings.warn(f"bf16 autocast is not supported natively on {device}: training in fp32", stacklevel=3)
        return "fp32"
    return precision


def _autocast(device: torch.device, precision: str):
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")


# ---------------------------------------------------------------------------------------------------- schedule

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


# ---------------------------------------------------------------------------------------------------- helpers

class _RunningFits:
    """How many fits with threads="auto" run in this process, to share the cores among them. torch's thread count
    is per OS thread (OpenMP), so each training thread sets its own at the start of every epoch."""

    def __init__(self):
        self._n = 0
        self._lock = threading.Lock()

    def enter(self) -> None:
        with self._lock:
            self._n += 1

    def leave(self) -> None:
        with self._lock:
            self._n -= 1

    def share(self) -> int:
        with self._lock:
            return max(1, (os.cpu_count() or 1) // max(1, self._n))


_running = _RunningFits()


def _derived_seed(*parts: int) -> int:
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(1, np.uint64)[0] >> 1)


def _make_optimizer(model: torch.nn.Module, cfg: TrainConfig) -> torch.optim.AdamW:
    decay = [p for p in model.parameters() if p.requires_grad and p.ndim >= 2]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.ndim < 2]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    try:  # fused: one kernel for the whole update (CPU and CUDA in torch >= 2.4)
        return torch.optim.AdamW(groups, lr=cfg.lr, fused=True)
    except (RuntimeError, TypeError, ValueError):  # pragma: no cover - older torch / odd device
        return torch.optim.AdamW(groups, lr=cfg.lr, foreach=True)


def _as_tensor(vectors, device: torch.device) -> torch.Tensor:
    if isinstance(vectors, torch.Tensor):
        return vectors.detach().to(device=device, dtype=torch.float32).contiguous()
    return torch.from_numpy(np.ascontiguousarray(vectors, dtype=np.float32)).to(device)


def _check_targets(name: str, targets, n_rows: int, context: int) -> np.ndarray:
    t = np.asarray(targets, dtype=np.int64).reshape(-1)
    if len(t) == 0:
        raise ValueError(f"no {name} windows (need articles with more than context={context} sentences)")
    if t.min() < context or t.max() >= n_rows:
        raise ValueError(f"{name} target rows must lie in [{context}, {n_rows}), got [{t.min()}, {t.max()}]")
    return t


def _fingerprint(vectors, train_t: np.ndarray, val_t: np.ndarray) -> str:
    """Identifies the data a checkpoint was trained on (a resume on other data starts afresh)."""
    v = vectors.detach().cpu().numpy() if isinstance(vectors, torch.Tensor) else np.asarray(vectors, np.float32)
    h = hashlib.sha256()
    h.update(str(tuple(v.shape)).encode())
    h.update(np.ascontiguousarray(v).data)
    h.update(train_t.tobytes())
    h.update(b"|")
    h.update(val_t.tobytes())
    return h.hexdigest()


def _cpu_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu", copy=True).contiguous() for k, v in model.state_dict().items()}


@torch.inference_mode()
def _mean_cosine(model, V: torch.Tensor, targets: torch.Tensor, offs: torch.Tensor, device, precision,
                 batch_size: int) -> float:
    total = torch.zeros((), dtype=torch.float64, device=device)
    for s in range(0, len(targets), batch_size):
        idx = targets[s:s + batch_size]
        with _autocast(device, precision):
            pred = model(V[idx[:, None] + offs])
        total += F.cosine_similarity(pred.float(), V[idx], dim=-1, eps=1e-8).sum(dtype=torch.float64)
    return float(total) / len(targets)


def predict(model: torch.nn.Module, ctx: np.ndarray, precision: str = "fp32", batch_size: int = 4096) -> np.ndarray:
    """Unit-normalised predictions [B, D] (float32 numpy) for contexts [B, C, D], in inference mode."""
    ctx = np.asarray(ctx, dtype=np.float32)
    if ctx.ndim != 3:
        raise ValueError(f"ctx must be [B, C, D], got shape {ctx.shape}")
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    out = []
    try:
        with torch.inference_mode():
            for s in range(0, len(ctx), batch_size):
                x = torch.from_numpy(np.ascontiguousarray(ctx[s:s + batch_size])).to(device)
                with _autocast(device, precision):
                    y = model(x)
                out.append(F.normalize(y.float(), dim=-1, eps=1e-12).cpu().numpy())
    finally:
        model.train(was_training)
    return np.concatenate(out) if out else np.zeros((0, ctx.shape[-1]), np.float32)


# ---------------------------------------------------------------------------------------------------- checkpoint

def _save_checkpoint(ckdir: Path, model, opt, state: dict, best_state: dict | None, best_is_new: bool) -> None:
    """Write the state file (and the best weights when they changed), then checkpoint.json (the commit point),
    then delete files no longer referenced. A failed write (a full disk) removes what this call wrote: the previous
    checkpoint stays the committed one, with nothing orphaned beside it."""
    ckdir.mkdir(parents=True, exist_ok=True)
    epoch = state["epoch"]
    state_file = f"state-{epoch:06d}.pt"
    tensors = {"model": _cpu_state(model), "optimizer": opt.state_dict(), "rng_cpu": torch.get_rng_state(),
               "rng_cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []}
    written = []
    try:
        written.append(write_atomic(ckdir / state_file, lambda p: torch.save(tensors, p)))
        if best_state is not None and (best_is_new or not (ckdir / state.get("best_file", "")).is_file()):
            state["best_file"] = f"best-{state['best_epoch']:06d}.safetensors"
            written.append(write_atomic(ckdir / state["best_file"], lambda p: save_file(best_state, p)))
        state["state_file"] = state_file
        write_json(ckdir / CHECKPOINT_JSON, state)
    except BaseException:
        for f in written:
            f.unlink(missing_ok=True)
        raise
    _clean_checkpoint_dir(ckdir, state)


def _clean_checkpoint_dir(ckdir: Path, state: dict | None) -> None:
    """Delete state/best/temporary files that `state` (the committed checkpoint.json) does not reference: what an
    earlier epoch, or a writer that died, left behind. Only called by the folder's lock holder."""
    keep = {CHECKPOINT_JSON} | {(state or {}).get(k) for k in ("state_file", "best_file")}
    for f in ckdir.iterdir():
        if f.name not in keep and (f.name.startswith(("state-", "best-")) or f.name.endswith(".tmp")):
            f.unlink(missing_ok=True)


def _clean_dead_writers(out_dir: Path) -> None:
    """Temporary files of a writer that died (we hold the lock, so no live writer owns them)."""
    for f in out_dir.glob(".*.tmp"):
        f.unlink(missing_ok=True)
    ckdir = out_dir / CHECKPOINT_DIR
    if ckdir.is_dir():
        try:
            state = _read_checkpoint_json(ckdir / CHECKPOINT_JSON) if (ckdir / CHECKPOINT_JSON).is_file() else None
        except ValueError:
            return  # a damaged checkpoint.json: keep everything for the user to look at
        _clean_checkpoint_dir(ckdir, state)


def _load_checkpoint(ckdir: Path):
    """(state dict from JSON, tensors from the state file, best weights) - nothing is unpickled. A damaged file is
    a ValueError that names it."""
    state = _read_checkpoint_json(ckdir / CHECKPOINT_JSON)
    if state.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{ckdir / CHECKPOINT_JSON}: unknown checkpoint format {state.get('format')!r}")
    try:
        path = ckdir / state["state_file"]
        tensors = torch.load(path, map_location="cpu", weights_only=True)
        for key in ("model", "optimizer", "rng_cpu", "rng_cuda"):
            tensors[key]
    except KeyError as e:
        raise ValueError(f"{ckdir}: the checkpoint lacks {e}; start afresh without --resume") from None
    except Exception as e:  # torch raises UnpicklingError, RuntimeError, EOFError... for a damaged file
        raise ValueError(f"{path}: not a readable training state ({type(e).__name__}: {str(e)[:200]}); "
                         f"start afresh without --resume") from None
    best = None
    if state.get("best_file"):
        try:
            best = load_file(ckdir / state["best_file"])
        except Exception as e:  # SafetensorError, OSError
            raise ValueError(f"{ckdir / state['best_file']}: not readable safetensors ({e}); start afresh without "
                             f"--resume") from None
    return state, tensors, best


def _read_checkpoint_json(path: Path) -> dict:
    return read_json_object(path, "; start afresh without --resume")


def read_checkpoint_info(out_dir) -> dict | None:
    """checkpoint.json of a model folder (epoch, history, best so far...), or None when there is none."""
    path = Path(out_dir) / CHECKPOINT_DIR / CHECKPOINT_JSON
    return _read_checkpoint_json(path) if path.is_file() else None


# ---------------------------------------------------------------------------------------------------- fit

def fit(cfg: TrainConfig, vectors, train_targets, val_targets, out_dir, callback: Callable[[dict], None] | None = None,
        resume: bool = False, meta: dict | None = None) -> dict:
    """Train `cfg.arch` on windows `train_targets` (row indices of targets in `vectors`), early-stopping on the
    mean cosine over `val_targets`; write the model folder `out_dir` (best weights) and return a JSON-able summary.

    callback(record) is called after each epoch's checkpoint is written, with the history record
    (epoch, train_loss, train_cosine, val_cosine, lr, seconds, terms, ...). `meta` is merged into config.json
    (data_hash, encoder, split, ...). resume=True continues from out_dir/checkpoint when it exists and belongs to
    the same config and data (otherwise it warns and starts afresh).
    """
    with folder_lock(out_dir, "model folder", ModelFolderBusy):
        _, summary = _fit(cfg, vectors, train_targets, val_targets, out_dir, callback, resume, meta)
    return summary


def _fit(cfg, vectors, train_targets, val_targets, out_dir, callback=None, resume=False, meta=None):
    """fit's body; the caller holds out_dir's lock. A model already in out_dir stays whole until this run's model
    replaces it at the end (file by file, each atomically): a run that fails or is killed leaves it as it was."""
    out_dir = Path(out_dir)
    ckdir = out_dir / CHECKPOINT_DIR
    _clean_dead_writers(out_dir)
    keep_freed_memory()  # no page faults on every step's activations (lvm/allocator.py)
    old_threads = torch.get_num_threads()
    if cfg.threads == "auto":
        _running.enter()
    elif cfg.threads:
        torch.set_num_threads(cfg.threads)
    try:
        device = resolve_device(cfg.device)
        precision = resolve_precision(cfg.precision, device)
        V = _as_tensor(vectors, device)
        n_rows, dim = V.shape
        train_t = _check_targets("training", train_targets, n_rows, cfg.context)
        val_t = _check_targets("validation", val_targets, n_rows, cfg.context)
        fingerprint = _fingerprint(vectors, train_t, val_t)

        torch.manual_seed(cfg.seed)
        model = cfg.build(dim).to(device)
        loss_fn = cfg.loss_fn()
        opt = _make_optimizer(model, cfg)
        n_batches = math.ceil(len(train_t) / cfg.batch_size)
        bounds = np.linspace(0, len(train_t), n_batches + 1).round().astype(np.int64)  # near-equal batches
        sched = LRSchedule(cfg, cfg.epochs * n_batches)

        cfg_key = {k: v for k, v in cfg.to_dict().items() if k not in _RESUME_FREE}
        state = {"format": CHECKPOINT_FORMAT, "epoch": 0, "step": 0, "best_val_cosine": None, "best_epoch": 0,
                 "bad_epochs": 0, "finished": False, "stopped_early": False, "elapsed": 0.0, "history": [],
                 "scheduler": None, "config": cfg_key, "fingerprint": fingerprint, "precision": precision,
                 "resumed_from": []}
        best_state = None
        if resume and (ckdir / CHECKPOINT_JSON).is_file():
            saved, tensors, best = _load_checkpoint(ckdir)
            if saved.get("config") != cfg_key or saved.get("fingerprint") != fingerprint \
                    or saved.get("precision") != precision:
                warnings.warn(f"{ckdir}: checkpoint belongs to another config or data set; training from scratch",
                              stacklevel=2)
            else:
                model.load_state_dict(tensors["model"])
                opt.load_state_dict(tensors["optimizer"])
                torch.set_rng_state(tensors["rng_cpu"])
                if tensors["rng_cuda"] and torch.cuda.is_available():
                    torch.cuda.set_rng_state_all(tensors["rng_cuda"])
                sched.load_state_dict(saved["scheduler"])
                best_state = best
                state = saved
                state["resumed_from"] = [*saved.get("resumed_from", []), saved["epoch"]]

        offs = torch.arange(-cfg.context, 0, device=device)
        n_hard = loss_fn.hard_negatives  # neighbouring rows as extra negatives: after the target, before the context
        neg_offs = torch.cat([torch.arange(1, n_hard + 1),
                              torch.arange(-cfg.context - n_hard, -cfg.context)]).to(device)
        val_dev = torch.from_numpy(val_t).to(device)
        params = [p for p in model.parameters() if p.requires_grad]
        clip = float(cfg.grad_clip or 0.0)

        while not state["finished"]:
            epoch = state["epoch"] + 1
            t0 = time.perf_counter()
            if cfg.threads == "auto":
                torch.set_num_threads(_running.share())
            # shuffle order and dropout RNG are functions of (seed, epoch) only: resume-exact
            torch.manual_seed(_derived_seed(cfg.seed, epoch, 1))
            order = np.random.default_rng([cfg.seed, epoch]).permutation(len(train_t))
            perm = torch.from_numpy(train_t[order]).to(device)
            model.train()
            loss_sum = cos_sum = gnorm_sum = 0.0
            term_sums: dict[str, float] = {}
            step = state["step"]
            for b in range(n_batches):
                idx = perm[bounds[b]:bounds[b + 1]]
                tgt = V[idx]
                lr = cfg.lr * sched.factor(step)
                for g in opt.param_groups:
                    g["lr"] = lr
                with _autocast(device, precision):
                    pred = model(V[idx[:, None] + offs])
                if n_hard:
                    nidx = idx[:, None] + neg_offs
                    inside = (nidx >= 0) & (nidx < n_rows)
                    loss, terms = loss_fn(pred, tgt, V[nidx.clamp(0, n_rows - 1)], inside)
                else:
                    loss, terms = loss_fn(pred, tgt)
                lv = float(loss.detach())
                if not math.isfinite(lv):
                    raise FloatingPointError(f"{cfg.arch}: the loss became {lv} at epoch {epoch}, step {step + 1} "
                                             f"(lr {lr:.3g}); try a lower lr or precision='fp32'")
                opt.zero_grad(set_to_none=True)
                loss.backward()
                if clip > 0:
                    gnorm_sum += float(torch.nn.utils.clip_grad_norm_(params, clip, foreach=True))
                opt.step()
                step += 1
                n = len(idx)
                loss_sum += lv * n
                with torch.no_grad():
                    cos_sum += float(F.cosine_similarity(pred.detach().float(), tgt, dim=-1, eps=1e-8).sum())
                for k, v in terms.items():
                    term_sums[k] = term_sums.get(k, 0.0) + v * n
            state["step"] = step
            train_seconds = time.perf_counter() - t0
            model.eval()
            val_cos = _mean_cosine(model, V, val_dev, offs, device, precision, cfg.eval_batch_size)
            sched.epoch_end(val_cos)
            improved = state["best_val_cosine"] is None or val_cos > state["best_val_cosine"] + cfg.min_delta
            if improved:
                state.update(best_val_cosine=val_cos, best_epoch=epoch, bad_epochs=0)
                best_state = _cpu_state(model)
            else:
                state["bad_epochs"] += 1
            n_train = len(train_t)
            record = {"epoch": epoch, "train_loss": loss_sum / n_train, "train_cosine": cos_sum / n_train,
                      "val_cosine": val_cos, "lr": lr, "seconds": time.perf_counter() - t0,
                      "train_seconds": train_seconds, "samples_per_s": n_train / train_seconds,
                      "grad_norm": gnorm_sum / n_batches if clip > 0 else None,
                      "terms": {k: v / n_train for k, v in term_sums.items()}, "best": improved}
            state["history"].append(record)
            state["epoch"] = epoch
            state["elapsed"] += record["seconds"]
            stop = bool(cfg.patience) and state["bad_epochs"] >= cfg.patience
            state["stopped_early"] = stop and epoch < cfg.epochs
            state["finished"] = stop or epoch >= cfg.epochs
            state["scheduler"] = sched.state_dict()
            _save_checkpoint(ckdir, model, opt, state, best_state, improved)
            if callback is not None:
                callback(dict(record))

        # the best weights become the model
        model.load_state_dict({k: v.to(device) for k, v in best_state.items()})
        model.eval()
        history = state["history"]
        training = {"best_epoch": state["best_epoch"], "best_val_cosine": state["best_val_cosine"],
                    "epochs_run": state["epoch"], "stopped_early": state["stopped_early"],
                    "seconds": state["elapsed"], "precision": precision, "device": device.type,
                    "parameters": count_parameters(model), "train_windows": int(len(train_t)),
                    "val_windows": int(len(val_t)), "resumed_from": state.get("resumed_from", [])}
        config = {"train": cfg.to_dict(), "loss": loss_fn.config(), "seed": cfg.seed, "precision": precision,
                  **(meta or {})}
        save_model(out_dir, model, config)
        write_json(out_dir / "history.json", history)
        write_json(out_dir / "metrics.json", {"val_cosine": state["best_val_cosine"], "training": training})
        summary = {"arch": cfg.arch, "model_dir": str(out_dir), "val_cosine": state["best_val_cosine"], **training}
        return model, summary
    finally:
        if cfg.threads == "auto":
            _running.leave()
        if cfg.threads:
            torch.set_num_threads(old_threads)


# ---------------------------------------------------------------------------------------------------- tables

def _best_baseline(baselines: dict[str, dict]) -> dict:
    name = max(baselines, key=lambda k: baselines[k]["cosine"])
    return {"name": name, "cosine": baselines[name]["cosine"]}


_BASELINES: dict[tuple, dict] = {}  # (data hash, split, context) -> fitted baselines, this process only


def fitted_baselines(vectors, train_t, context: int, data_hash: str | None = None,
                     record: dict | None = None, starts: np.ndarray | None = None) -> dict:
    """fit_baselines on the training windows, memoised in this process by (data hash, split record, context) when
    both are given: the ridge baseline at D=768, C=5 solves a 3840-wide system, which costs far more than
    evaluating it."""
    key = None if data_hash is None or record is None else \
        (data_hash, record["article_ids_sha256"], json.dumps(record["rows"]), context, starts is not None)
    if key is not None and key in _BASELINES:
        return _BASELINES[key]
    fitted = fit_baselines(vectors, train_t, context, starts=starts)
    if key is not None:
        _BASELINES.clear()  # keep one set: a ridge map at D=768, C=5 is 12 MB
        _BASELINES[key] = fitted
    return fitted


def _held_out(model, vectors, split, table, context, parts=("val", "test"), baselines=None, arch="model") -> dict:
    """Model (and baselines, when given, with the model's paired difference to the best) on each part; the
    retrieval bank is the part's rows."""
    fn = lambda ctx: predict(model, ctx)  # noqa: E731
    out = {}
    for part in parts:
        rows = split.part(part)
        eval_t = window_targets(table.article_id, table.position, context, rows)
        if len(eval_t) == 0:
            continue
        pred = predict_windows(fn, vectors, eval_t, context)
        m = score(pred, vectors, eval_t, rows, context)
        out[part] = {"model": m}
        if baselines:
            b = evaluate_baselines(baselines, vectors, eval_t, rows, context, starts=article_starts(table.position))
            best = _best_baseline(b)
            out[part].update(baselines=b, best_baseline=best, margin_over_best_baseline=m["cosine"] - best["cosine"],
                             beats_all_baselines=all(m["cosine"] > v["cosine"] for v in b.values()),
                             vs_best_baseline=vs_best_baseline({arch: pred}, baselines, b, table, eval_t, context))
    return out


def train_on_table(table_path, cfg: TrainConfig, out_dir, split_seed: int = 0, fractions=(0.8, 0.1, 0.1),
                   callback: Callable[[dict], None] | None = None, resume: bool = False,
                   split_path=None, baselines: bool | dict = True) -> dict:
    """Read a sentence table, split it by article (or use the split saved at `split_path`), fit on train with
    early stopping on val, then evaluate the best model on val and the held-out test split against the baselines
    fitted on train only. Writes the model folder (metrics.json: the test metrics at top level, then best
    baseline, margin, `held_out` {val, test} with every baseline, training summary, split record, data hash,
    encoder) and returns a small JSON-able summary.

    baselines: True = fit them here (memoised per process; the ridge fit is the slow part at D=768),
    a dict of fitted `lvm.evaluation.metrics.Baseline`s to reuse, or False to leave them out of metrics.json."""
    table_path = Path(table_path)
    table = read_table(table_path)
    split = load_split(split_path) if split_path is not None else split_articles(table, tuple(fractions), split_seed)
    C = cfg.context
    parts = {p: window_targets(table.article_id, table.position, C, split.part(p)) for p in ("train", "val", "test")}
    for p in ("train", "val"):
        if len(parts[p]) == 0:
            raise ValueError(f"{table_path}: the {p} split has no windows of context {C} "
                             f"({len(split.articles[p])} articles); use more data or other fractions")
    data_hash = file_hash(table_path)
    encoder = table.meta.get("encoder")
    record = split.record()
    meta = {"data_hash": data_hash, "encoder": encoder, "split": record, "dataset": str(table_path)}
    with folder_lock(out_dir, "model folder", ModelFolderBusy):
        model, summary = _fit(cfg, table.vectors, parts["train"], parts["val"], out_dir, callback, resume, meta)
        model = model.to("cpu")
        if baselines is True:
            baselines = fitted_baselines(table.vectors, parts["train"], C, data_hash, record,
                                         article_starts(table.position))
        held = _held_out(model, table.vectors, split, table, C, baselines=baselines or None, arch=cfg.arch)
        head = "test" if "test" in held else "val"
        metrics = {"part": head, **held[head]["model"], "arch": cfg.arch, "context": C,
                   **{k: v for k, v in held[head].items() if k not in ("model", "baselines")},
                   "held_out": held, "training": {k: v for k, v in summary.items() if k not in ("arch", "model_dir")},
                   "split": record, "data_hash": data_hash, "encoder": encoder}
        write_json(Path(out_dir) / "metrics.json", metrics)
    return {"arch": cfg.arch, "model_dir": str(out_dir), "part": head, "cosine": metrics["cosine"],
            "val_cosine": held["val"]["model"]["cosine"], "best_val_cosine": summary["best_val_cosine"],
            "best_epoch": summary["best_epoch"], "epochs_run": summary["epochs_run"],
            "stopped_early": summary["stopped_early"], "seconds": summary["seconds"],
            "precision": summary["precision"], "best_baseline": metrics.get("best_baseline"),
            "beats_all_baselines": metrics.get("beats_all_baselines"), "data_hash": data_hash}


def evaluate_model_dir(model_dir, table_path, part: str = "test", split_path=None) -> dict:
    """A saved model against every baseline on one part of the split it was trained with (re-derived from the
    split record in config.json, or read from `split_path`). Baselines are fitted on that split's train part."""
    if part not in ("train", "val", "test"):
        raise ValueError(f"part must be train, val or test, got {part!r}")
    model, config = load_model(model_dir)
    table_path = Path(table_path)
    table = read_table(table_path)
    C = int(config["context"])
    if table.dim != int(config["dim"]):
        raise ValueError(f"{table_path} has D={table.dim} but the model in {model_dir} expects D={config['dim']}")
    rec = config.get("split") or {}
    if split_path is not None:
        split = load_split(split_path)
    else:
        split = split_articles(table, tuple(rec.get("fractions", (0.8, 0.1, 0.1))), int(rec.get("seed", 0)))
    record = split.record()
    data_hash = file_hash(table_path)
    train_t = window_targets(table.article_id, table.position, C, split.train)
    baselines = fitted_baselines(table.vectors, train_t, C, data_hash, record, article_starts(table.position))
    held = _held_out(model, table.vectors, split, table, C, parts=(part,), baselines=baselines, arch=config["arch"])
    if part not in held:
        raise ValueError(f"the {part} split of {table_path} has no windows of context {C}")
    return {"part": part, "model_dir": str(model_dir), "arch": config["arch"], "n": held[part]["model"]["n"],
            "model": held[part]["model"], "baselines": held[part]["baselines"], **{
                k: held[part][k] for k in ("best_baseline", "margin_over_best_baseline", "beats_all_baselines",
                                           "vs_best_baseline")},
            "data_hash": data_hash, "same_data": data_hash == config.get("data_hash"),
            "same_split": bool(rec) and rec.get("article_ids_sha256") == record["article_ids_sha256"]}

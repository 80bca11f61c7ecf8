"""The training loop: AdamW, linear warm-up then cosine decay (or reduce on plateau), gradient clipping, early
stopping on validation cosine, best weights kept.

Batches are gathered by index arithmetic from one tensor of all vectors (`V[t[:, None] + arange(-C, 0)]`), so
windows are never materialised; a model with the article input also reads row t of the table's article-so-far means
(`lvm.data.table.article_so_far`, one more [N, D] tensor). The shuffle order of epoch e is drawn from (seed, e) and
torch's RNG (dropout) is re-seeded from (seed, e) at the start of every epoch, so nothing depends on how much of a
global random stream an earlier epoch consumed: a run killed with SIGKILL and resumed (lvm.train.checkpoint) ends
with exactly the weights of an uninterrupted run (same seed, device and thread count; tests/test_train.py checks it
bit for bit).

The model folder (docs/ARCHITECTURE.md): model.safetensors + config.json (lvm.models.io), history.json,
metrics.json (validation, and the held-out scores against the baselines when `lvm.train.on_table` runs alone),
checkpoint/.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import tempfile
import time
import warnings
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from lvm.data.table import article_so_far
from lvm.models import count_parameters
from lvm.models.io import save_model
from lvm.train.checkpoint import (
    CHECKPOINT_DIR,
    CHECKPOINT_FORMAT,
    CHECKPOINT_JSON,
    RESUME_FREE,
    clean_dead_writers,
    cpu_state,
    load_checkpoint,
    save_checkpoint,
)
from lvm.train.config import TrainConfig
from lvm.train.init import resolve_init
from lvm.train.schedule import LRSchedule
from lvm.util.allocator import keep_freed_memory
from lvm.util.atomic import write_json
from lvm.util.hardware import autocast, resolve_device, resolve_precision, running_fits
from lvm.util.locking import FolderBusy, folder_lock


class ModelFolderBusy(FolderBusy):
    """Another training holds the model folder."""


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
    """The table as a tensor; a read-only memory-mapped table stays mapped on the CPU (training never writes it),
    so torch's warning about a non-writable array is not shown."""
    if isinstance(vectors, torch.Tensor):
        return vectors.detach().to(device=device, dtype=torch.float32).contiguous()
    arr = np.ascontiguousarray(vectors, dtype=np.float32)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        return torch.from_numpy(arr).to(device)


def _check_targets(name: str, targets, n_rows: int, context: int) -> np.ndarray:
    t = np.asarray(targets, dtype=np.int64).reshape(-1)
    if len(t) == 0:
        raise ValueError(f"no {name} windows (need articles with more than context={context} sentences)")
    if t.min() < context or t.max() >= n_rows:
        raise ValueError(f"{name} target rows must lie in [{context}, {n_rows}), got [{t.min()}, {t.max()}]")
    return t


def _fingerprint(vectors, train_t: np.ndarray, val_t: np.ndarray, position: np.ndarray | None = None) -> str:
    """Identifies the data a checkpoint was trained on (a resume on other data starts afresh)."""
    v = vectors.detach().cpu().numpy() if isinstance(vectors, torch.Tensor) else np.asarray(vectors, np.float32)
    h = hashlib.sha256()
    h.update(str(tuple(v.shape)).encode())
    h.update(np.ascontiguousarray(v).data)
    h.update(train_t.tobytes())
    h.update(b"|")
    h.update(val_t.tobytes())
    if position is not None:  # the article rows depend on where articles start
        h.update(b"|")
        h.update(np.ascontiguousarray(position, dtype=np.int64).tobytes())
    return h.hexdigest()


def _article_rows(cfg: TrainConfig, vectors, V: torch.Tensor, position, spill_dir: Path) -> torch.Tensor | None:
    """The article-so-far means of every row (on V's device) for a model with the article input, else None.

    For a memory-mapped table (lvm.data.shards) on the CPU they go to an unlinked temporary file in `spill_dir`, memory
    mapped too: the process then owns no [N, D] copy (the page cache holds them, as it holds the vectors)."""
    if not cfg.article:
        return None
    if position is None:
        raise ValueError("article=True needs the table's positions (where each article starts): pass position=")
    position = np.asarray(position, dtype=np.int64)
    if position.shape != (V.shape[0],):
        raise ValueError(f"position has shape {position.shape}, expected ({V.shape[0]},) like the vectors")
    out = None
    if isinstance(vectors, np.memmap) and V.device.type == "cpu":
        spill_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=spill_dir, prefix=".article-rows-") as f:  # gone when unmapped
            out = np.memmap(f, dtype=np.float32, mode="w+", shape=tuple(V.shape))
    return torch.from_numpy(article_so_far(V.cpu().numpy(), position, out=out)).to(V.device)


def _inputs(V: torch.Tensor, A: torch.Tensor | None, idx: torch.Tensor, offs: torch.Tensor) -> tuple:
    """The model's arguments for the windows whose targets are `idx`: (context,) or (context, article)."""
    return (V[idx[:, None] + offs],) if A is None else (V[idx[:, None] + offs], A[idx])




@torch.inference_mode()
def _mean_cosine(model, V: torch.Tensor, A: torch.Tensor | None, targets: torch.Tensor, offs: torch.Tensor, device,
                 precision, batch_size: int) -> float:
    total = torch.zeros((), dtype=torch.float64, device=device)
    for s in range(0, len(targets), batch_size):
        idx = targets[s:s + batch_size]
        with autocast(device, precision):
            pred = model(*_inputs(V, A, idx, offs))
        total += F.cosine_similarity(pred.float(), V[idx], dim=-1, eps=1e-8).sum(dtype=torch.float64)
    return float(total) / len(targets)


def fit(cfg: TrainConfig, vectors, train_targets, val_targets, out_dir, callback: Callable[[dict], None] | None = None,
        resume: bool = False, meta: dict | None = None, position=None) -> dict:
    """Train `cfg.arch` on windows `train_targets` (row indices of targets in `vectors`), early-stopping on the
    mean cosine over `val_targets`; write the model folder `out_dir` (best weights) and return a JSON-able summary.

    callback(record) is called after each epoch's checkpoint is written, with the history record
    (epoch, train_loss, train_cosine, val_cosine, lr, seconds, terms, ...). `meta` is merged into config.json
    (data_hash, encoder, split, ...). resume=True continues from out_dir/checkpoint when it exists and belongs to
    the same config and data (otherwise it warns and starts afresh). `position` (the table's position column) is
    needed by a model with the article input (cfg.article), to know where each article starts.
    """
    with folder_lock(out_dir, "model folder", ModelFolderBusy):
        _, summary = _fit(cfg, vectors, train_targets, val_targets, out_dir, callback, resume, meta, position)
    return summary


def _fit(cfg, vectors, train_targets, val_targets, out_dir, callback=None, resume=False, meta=None, position=None):
    """fit's body; the caller holds out_dir's lock. A model already in out_dir stays whole until this run's model
    replaces it at the end (file by file, each atomically): a run that fails or is killed leaves it as it was."""
    out_dir = Path(out_dir)
    ckdir = out_dir / CHECKPOINT_DIR
    clean_dead_writers(out_dir)
    keep_freed_memory()  # no page faults on every step's activations (lvm/util/allocator.py)
    with _threads(cfg):
        device = resolve_device(cfg.device)
        precision = resolve_precision(cfg.precision, device)
        V = _as_tensor(vectors, device)
        A = _article_rows(cfg, vectors, V, position, out_dir)
        n_rows, dim = V.shape
        train_t = _check_targets("training", train_targets, n_rows, cfg.context)
        val_t = _check_targets("validation", val_targets, n_rows, cfg.context)

        cfg, start = resolve_init(cfg, dim)
        torch.manual_seed(cfg.seed)
        model = cfg.build(dim).to(device)
        if start is not None:
            model.load_state_dict({k: v.to(device) for k, v in start.items()})
        loss_fn = cfg.loss_fn()
        opt = _make_optimizer(model, cfg)
        n_batches = math.ceil(len(train_t) / cfg.batch_size)
        if n_batches == 1:
            warnings.warn(f"batch_size {cfg.batch_size} >= the {len(train_t)} training windows: every epoch is one "
                          "optimizer step (use a smaller batch or more data)", stacklevel=3)
        sched = LRSchedule(cfg, cfg.epochs * n_batches)
        fingerprint = _fingerprint(vectors, train_t, val_t, position if cfg.article else None)
        state, best_state = _start_or_resume(cfg, ckdir, model, opt, sched, fingerprint, precision, resume)
        val_dev = torch.from_numpy(val_t).to(device)
        offs = torch.arange(-cfg.context, 0, device=device)
        if state["epoch"] == 0:  # where training starts from: a run that ends below it made the model worse
            model.eval()
            state["initial_val_cosine"] = _mean_cosine(model, V, A, val_dev, offs, device, precision,
                                                       cfg.eval_batch_size)

        while not state["finished"]:
            epoch = state["epoch"] + 1
            t0 = time.perf_counter()
            if cfg.threads == "auto":
                torch.set_num_threads(running_fits.share())
            sums = _train_epoch(cfg, model, opt, sched, loss_fn, V, A, train_t, epoch, state["step"], device,
                                precision)
            state["step"] = sums["step"]
            train_seconds = time.perf_counter() - t0
            model.eval()
            val_cos = _mean_cosine(model, V, A, val_dev, offs, device, precision, cfg.eval_batch_size)
            sched.epoch_end(val_cos)
            improved = state["best_val_cosine"] is None or val_cos > state["best_val_cosine"] + cfg.min_delta
            if improved:
                state.update(best_val_cosine=val_cos, best_epoch=epoch, bad_epochs=0)
                best_state = cpu_state(model)
            else:
                state["bad_epochs"] += 1
            n_train = len(train_t)
            record = {"epoch": epoch, "train_loss": sums["loss"] / n_train, "train_cosine": sums["cosine"] / n_train,
                      "val_cosine": val_cos, "lr": sums["lr"], "seconds": time.perf_counter() - t0,
                      "train_seconds": train_seconds, "samples_per_s": n_train / train_seconds,
                      "grad_norm": sums["grad_norm"] / sums["batches"] if cfg.grad_clip else None,
                      "terms": {k: v / n_train for k, v in sums["terms"].items()}, "best": improved}
            state["history"].append(record)
            state["epoch"] = epoch
            state["elapsed"] += record["seconds"]
            stop = bool(cfg.patience) and state["bad_epochs"] >= cfg.patience
            state["stopped_early"] = stop and epoch < cfg.epochs
            state["finished"] = stop or epoch >= cfg.epochs
            state["scheduler"] = sched.state_dict()
            save_checkpoint(ckdir, model, opt, state, best_state, improved)
            if callback is not None:
                callback(dict(record))

        _warn_if_worse(cfg, state)
        model.load_state_dict({k: v.to(device) for k, v in best_state.items()})  # the best weights become the model
        model.eval()
        return model, _write_model_folder(out_dir, cfg, model, loss_fn, state, precision, device, train_t, val_t, meta)


def _warn_if_worse(cfg: TrainConfig, state: dict) -> None:
    """A training whose best epoch is below where it started (a diverged learning rate ends at val cosine ~0 without
    a single NaN) says so: the model it saves is worse than the untrained one."""
    start, best = state.get("initial_val_cosine"), state["best_val_cosine"]
    if start is not None and best is not None and best < start - 0.01:
        warnings.warn(f"training made the model worse: validation cosine {start:.4f} before the first epoch, "
                      f"{best:.4f} at best (epoch {state['best_epoch']}); is the learning rate ({cfg.lr:g}) too high?",
                      stacklevel=3)


@contextlib.contextmanager
def _threads(cfg: TrainConfig):
    """The run's torch thread count (cfg.threads), put back afterwards; "auto" joins the fits sharing the cores."""
    old = torch.get_num_threads()
    if cfg.threads == "auto":
        running_fits.enter()
    elif cfg.threads:
        torch.set_num_threads(cfg.threads)
    try:
        yield
    finally:
        if cfg.threads == "auto":
            running_fits.leave()
        if cfg.threads:
            torch.set_num_threads(old)


def _start_or_resume(cfg, ckdir: Path, model, opt, sched, fingerprint: str, precision: str, resume: bool):
    """(state, best weights): a fresh state, or the checkpoint's when `resume` and it belongs to this config and
    data (model, optimizer, scheduler and RNG restored in place)."""
    cfg_key = {k: v for k, v in cfg.to_dict().items() if k not in RESUME_FREE}
    state = {"format": CHECKPOINT_FORMAT, "epoch": 0, "step": 0, "best_val_cosine": None, "best_epoch": 0,
             "bad_epochs": 0, "finished": False, "stopped_early": False, "elapsed": 0.0, "history": [],
             "scheduler": None, "config": cfg_key, "fingerprint": fingerprint, "precision": precision,
             "resumed_from": []}
    if not (resume and (ckdir / CHECKPOINT_JSON).is_file()):
        return state, None
    saved, tensors, best = load_checkpoint(ckdir)
    if saved.get("config") != cfg_key or saved.get("fingerprint") != fingerprint or saved.get("precision") != precision:
        warnings.warn(f"{ckdir}: checkpoint belongs to another config or data set; training from scratch", stacklevel=3)
        return state, None
    model.load_state_dict(tensors["model"])
    opt.load_state_dict(tensors["optimizer"])
    torch.set_rng_state(tensors["rng_cpu"])
    if tensors["rng_cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(tensors["rng_cuda"])
    sched.load_state_dict(saved["scheduler"])
    saved["resumed_from"] = [*saved.get("resumed_from", []), saved["epoch"]]
    return saved, best


def batch_bounds(n: int, batch_size: int) -> np.ndarray:
    """Start and end offsets of an epoch's batches: ceil(n / batch_size) near-equal batches (sizes differ by at most
    one), so no epoch ends on a small remainder batch."""
    n_batches = math.ceil(n / batch_size)
    return np.linspace(0, n, n_batches + 1).round().astype(np.int64)


def _train_epoch(cfg, model, opt, sched, loss_fn, V: torch.Tensor, A: torch.Tensor | None, train_t: np.ndarray,
                 epoch: int, step: int, device, precision: str) -> dict:
    """One pass over the training windows in the order drawn from (seed, epoch); returns the sums the history
    record is made of and the optimizer step reached."""
    n_rows = V.shape[0]
    bounds = batch_bounds(len(train_t), cfg.batch_size)
    n_batches = len(bounds) - 1
    offs = torch.arange(-cfg.context, 0, device=device)
    n_hard = loss_fn.hard_negatives  # neighbouring rows as extra negatives: after the target, before the context
    neg_offs = torch.cat([torch.arange(1, n_hard + 1), torch.arange(-cfg.context - n_hard, -cfg.context)]).to(device)
    params = [p for p in model.parameters() if p.requires_grad]
    clip = float(cfg.grad_clip or 0.0)
    # shuffle order and dropout RNG are functions of (seed, epoch) only: resume-exact
    torch.manual_seed(_derived_seed(cfg.seed, epoch, 1))
    order = np.random.default_rng([cfg.seed, epoch]).permutation(len(train_t))
    perm = torch.from_numpy(train_t[order]).to(device)
    model.train()
    sums = {"loss": 0.0, "cosine": 0.0, "grad_norm": 0.0, "terms": {}, "batches": n_batches, "lr": cfg.lr}
    for b in range(n_batches):
        idx = perm[bounds[b]:bounds[b + 1]]
        tgt = V[idx]
        lr = cfg.lr * sched.factor(step)
        for g in opt.param_groups:
            g["lr"] = lr
        with autocast(device, precision):
            pred = model(*_inputs(V, A, idx, offs))
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
            sums["grad_norm"] += float(torch.nn.utils.clip_grad_norm_(params, clip, foreach=True))
        opt.step()
        step += 1
        n = len(idx)
        sums["loss"] += lv * n
        with torch.no_grad():
            sums["cosine"] += float(F.cosine_similarity(pred.detach().float(), tgt, dim=-1, eps=1e-8).sum())
        for k, v in terms.items():
            sums["terms"][k] = sums["terms"].get(k, 0.0) + v * n
        sums["lr"] = lr
    sums["step"] = step
    return sums


def _write_model_folder(out_dir: Path, cfg, model, loss_fn, state: dict, precision: str, device, train_t, val_t,
                        meta: dict | None) -> dict:
    """The finished run's model folder (weights, config, history, validation metrics); returns the summary."""
    training = {"best_epoch": state["best_epoch"], "best_val_cosine": state["best_val_cosine"],
                "initial_val_cosine": state.get("initial_val_cosine"), "init": cfg.init,
                "epochs_run": state["epoch"], "stopped_early": state["stopped_early"],
                "seconds": state["elapsed"], "precision": precision, "device": device.type,
                "parameters": count_parameters(model), "train_windows": int(len(train_t)),
                "val_windows": int(len(val_t)), "resumed_from": state.get("resumed_from", [])}
    config = {"train": cfg.to_dict(), "loss": loss_fn.config(), "seed": cfg.seed, "precision": precision,
              **(meta or {})}
    save_model(out_dir, model, config)
    write_json(out_dir / "history.json", state["history"])
    write_json(out_dir / "metrics.json", {"val_cosine": state["best_val_cosine"], "training": training})
    return {"arch": cfg.arch, "model_dir": str(out_dir), "val_cosine": state["best_val_cosine"], **training}

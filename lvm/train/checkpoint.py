"""The training checkpoint a run resumes from (not the trained model: that is lvm.models.io).

After every epoch `out_dir/checkpoint/` receives the weights, optimizer state and RNG states (`state-EEEEEE.pt`,
read back only with `torch.load(weights_only=True)`), the best weights so far (`best-EEEEEE.safetensors`) and
`checkpoint.json` (epoch, step, scheduler, early-stopping state, history, config), each written to a temporary
file and renamed; `checkpoint.json` is written last and is the commit point, so a process killed at any instant
leaves a consistent checkpoint.
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from lvm.util.atomic import read_json_object, write_atomic, write_json

CHECKPOINT_DIR = "checkpoint"
CHECKPOINT_JSON = "checkpoint.json"
CHECKPOINT_FORMAT = 1
RESUME_FREE = ("threads", "eval_batch_size", "device")  # fields that may change between a run and its resumption


def cpu_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu", copy=True).contiguous() for k, v in model.state_dict().items()}


def save_checkpoint(ckdir: Path, model, opt, state: dict, best_state: dict | None, best_is_new: bool) -> None:
    """Write the state file (and the best weights when they changed), then checkpoint.json (the commit point),
    then delete files no longer referenced. A failed write (a full disk) removes what this call wrote: the previous
    checkpoint stays the committed one, with nothing orphaned beside it."""
    ckdir.mkdir(parents=True, exist_ok=True)
    epoch = state["epoch"]
    state_file = f"state-{epoch:06d}.pt"
    tensors = {"model": cpu_state(model), "optimizer": opt.state_dict(), "rng_cpu": torch.get_rng_state(),
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
    clean_checkpoint_dir(ckdir, state)


def clean_checkpoint_dir(ckdir: Path, state: dict | None) -> None:
    """Delete state/best/temporary files that `state` (the committed checkpoint.json) does not reference: what an
    earlier epoch, or a writer that died, left behind. Only called by the folder's lock holder."""
    keep = {CHECKPOINT_JSON} | {(state or {}).get(k) for k in ("state_file", "best_file")}
    for f in ckdir.iterdir():
        if f.name not in keep and (f.name.startswith(("state-", "best-")) or f.name.endswith(".tmp")):
            f.unlink(missing_ok=True)


def clean_dead_writers(out_dir: Path) -> None:
    """Temporary files of a writer that died (we hold the lock, so no live writer owns them)."""
    for f in out_dir.glob(".*.tmp"):
        f.unlink(missing_ok=True)
    ckdir = out_dir / CHECKPOINT_DIR
    if ckdir.is_dir():
        try:
            state = _read_checkpoint_json(ckdir / CHECKPOINT_JSON) if (ckdir / CHECKPOINT_JSON).is_file() else None
        except ValueError:
            return  # a damaged checkpoint.json: keep everything for the user to look at
        clean_checkpoint_dir(ckdir, state)


def load_checkpoint(ckdir: Path):
    """(state dict from JSON, tensors from the state file, best weights) - nothing is unpickled. A damaged file is
    a ValueError that names it."""
    state = _read_checkpoint_json(ckdir / CHECKPOINT_JSON)
    if state.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{ckdir / CHECKPOINT_JSON}: unknown checkpoint format {state.get('format')!r}")
    path = _inside(ckdir, state.get("state_file"), "state_file")
    try:
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
        best_path = _inside(ckdir, state["best_file"], "best_file")
        try:
            best = load_file(best_path)
        except Exception as e:  # SafetensorError, OSError
            raise ValueError(f"{ckdir / state['best_file']}: not readable safetensors ({e}); start afresh without "
                             f"--resume") from None
    return state, tensors, best


def _inside(ckdir: Path, name, key: str) -> Path:
    """A file named in checkpoint.json, which must be a plain file name inside the checkpoint folder (never a path
    elsewhere: the JSON is data, not a pointer to follow)."""
    if not isinstance(name, str) or not name or Path(name).name != name or name in (".", ".."):
        raise ValueError(f"{ckdir / CHECKPOINT_JSON}: {key} must be a file name inside {ckdir}, got {name!r}; "
                         "start afresh without --resume")
    return ckdir / name


def _read_checkpoint_json(path: Path) -> dict:
    return read_json_object(path, "; start afresh without --resume")


def read_checkpoint_info(out_dir) -> dict | None:
    """checkpoint.json of a model folder (epoch, history, best so far...), or None when there is none."""
    path = Path(out_dir) / CHECKPOINT_DIR / CHECKPOINT_JSON
    return _read_checkpoint_json(path) if path.is_file() else None

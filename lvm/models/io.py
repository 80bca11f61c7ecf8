"""Save and load a trained model folder: model.safetensors + config.json; assemble an ensemble's folder.

Nothing here unpickles: weights are safetensors, the rest is JSON. `load_model` rebuilds the architecture
from config.json with `build_model` and loads the weights strictly, so a folder whose weights do not match
its config is refused with a message naming the folder instead of giving a half-loaded model.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from lvm.models import build_model
from lvm.models.ensemble import Ensemble
from lvm.util.atomic import read_json_object, write_atomic, write_json

WEIGHTS = "model.safetensors"
CONFIG = "config.json"
MODEL_FILES = (WEIGHTS, CONFIG, "metrics.json", "history.json")  # a trained model folder, without checkpoint/
REQUIRED = ("arch", "dim", "context", "model")


def save_model(folder, model: torch.nn.Module, config: dict) -> Path:
    """Write model.safetensors and config.json into `folder` (created if needed); returns the folder.

    Keys missing from `config` (arch, dim, context, residual, article, model) are taken from the model itself; keys
    that contradict the model raise ValueError before anything is written.
    """
    folder = Path(folder)
    config = dict(config)
    if hasattr(model, "build_config"):
        built = model.build_config()
        given = dict(config.get("model", {}))
        config["model"] = {**given, **built.pop("model")}  # the full build kwargs, defaults included
        if any(config["model"][k] != v for k, v in given.items()):
            raise ValueError(f"save_model({folder}): config['model']={given} but the model was built with "
                             f"{config['model']}")
        for key, value in built.items():
            config.setdefault(key, value)
            if config[key] != value:
                raise ValueError(f"save_model({folder}): config[{key!r}]={config[key]!r} but the model has {value!r}")
    missing = [k for k in REQUIRED if k not in config]
    if missing:
        raise ValueError(f"save_model({folder}): config lacks {missing}")
    text = json.dumps(config, indent=2)  # fail on non-JSON values before touching the folder

    state = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    folder.mkdir(parents=True, exist_ok=True)
    write_atomic(folder / WEIGHTS, lambda p: save_file(state, p, metadata={"arch": str(config["arch"])}), fsync=True)
    write_atomic(folder / CONFIG, lambda p: Path(p).write_text(text + "\n"), fsync=True)
    return folder


def read_config(folder) -> dict:
    """config.json of a model folder, checked for the keys `load_model` needs."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"model folder not found: {folder}")
    path = folder / CONFIG
    if not path.is_file():
        raise FileNotFoundError(f"model folder {folder} has no {CONFIG}")
    config = read_json_object(path)
    missing = [k for k in REQUIRED if k not in config]
    if missing:
        raise ValueError(f"model folder {folder}: {CONFIG} lacks {missing}")
    if not isinstance(config["model"], dict):
        raise ValueError(f"model folder {folder}: {CONFIG} 'model' must be an object of build_model kwargs")
    check_bounds(config, f"model folder {folder}: {CONFIG}")
    return config


#: sane ranges of the sizes a config names: a hostile or mistyped file is refused before anything is allocated
#: from it (a `context` of 1e9 once made the server's warm-up ask for 512 GB).
BOUNDS = {"dim": (1, 65_536), "context": (1, 4_096), "hidden": (1, 65_536), "layers": (1, 256), "heads": (1, 1_024),
          "ffn": (1, 262_144), "d_state": (1, 4_096), "expand": (1, 16), "headdim": (1, 4_096)}


def check_bounds(config: dict, where: str) -> None:
    """Every size in a model config (top level and its "model" kwargs, an ensemble's members too) is a whole
    number inside BOUNDS; a ValueError names the field, its value and the range."""
    def walk(cfg: dict, prefix: str):
        for key, (lo, hi) in BOUNDS.items():
            if key in cfg:
                v = cfg[key]
                if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
                    raise ValueError(f"{where}: {prefix}{key} must be a whole number from {lo} to {hi:,}, "
                                     f"got {v!r}")
        model = cfg.get("model")
        if isinstance(model, dict):
            walk(model, prefix + "model.")
            for i, member in enumerate(model.get("members") or []):
                if isinstance(member, dict):
                    walk(member, f"{prefix}model.members[{i}].")

    walk(config, "")


def load_model(folder, device: str | torch.device = "cpu") -> tuple[torch.nn.Module, dict]:
    """Rebuild the model described by folder/config.json and load folder/model.safetensors (strict).

    Returns (model in eval mode on `device`, config). FileNotFoundError for a missing folder or file,
    ValueError for a bad config, unreadable weights, or weights that do not fit the config.
    """
    folder = Path(folder)
    config = read_config(folder)
    weights = folder / WEIGHTS
    if not weights.is_file():
        raise FileNotFoundError(f"model folder {folder} has no {WEIGHTS}")
    try:  # the header alone: shapes are checked before anything of the model's size is allocated
        with safe_open(str(weights), framework="pt") as f:
            shapes = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
    except (SafetensorError, OSError, ValueError) as e:
        raise ValueError(f"model folder {folder}: cannot read {WEIGHTS} ({e})") from None
    expected = {k: tuple(v.shape) for k, v in _build(config, folder, torch.device("meta")).state_dict().items()}
    problems = [f"missing {k}" for k in expected if k not in shapes]
    problems += [f"unexpected {k}" for k in shapes if k not in expected]
    problems += [f"{k}: shape {shapes[k]} != {v}" for k, v in expected.items() if k in shapes and shapes[k] != v]
    if problems:
        more = f" (+{len(problems) - 5} more)" if len(problems) > 5 else ""
        raise ValueError(f"model folder {folder}: {WEIGHTS} does not match {CONFIG} "
                         f"(arch={config['arch']}, dim={config['dim']}): {'; '.join(problems[:5])}{more}")
    model = _build(config, folder, torch.device("cpu"))
    try:
        state = load_file(weights)
    except (SafetensorError, OSError, ValueError) as e:
        raise ValueError(f"model folder {folder}: cannot read {WEIGHTS} ({e})") from None
    model.load_state_dict(state, strict=True)
    return model.to(device).eval(), config


def _build(config: dict, folder: Path, device: torch.device) -> torch.nn.Module:
    """The architecture config.json describes; on the meta device it costs no memory, whatever the sizes say."""
    try:
        with device:
            return build_model(config["arch"], config["dim"], context=config["context"],
                               residual=config.get("residual", False), article=config.get("article", False),
                               **config["model"])
    except (ValueError, TypeError) as e:
        raise ValueError(f"model folder {folder}: {CONFIG} does not describe a model: {e}") from None


#: config.json keys every member of an ensemble must share: the data and encoder its predictions are about
SHARED_KEYS = ("encoder", "data_hash", "split", "dataset")


def save_ensemble(member_dirs: dict[str, str | Path], folder) -> Path:
    """A model folder holding the ensemble (lvm.models.ensemble) of the trained models in `member_dirs`
    ({name: folder}): their weights in one state_dict, the keys they share (SHARED_KEYS) and where each came from
    in config.json, each member's validation cosine in metrics.json. Members trained on other data, another
    encoder, D, context or article input are refused."""
    if len(member_dirs) < 2:
        raise ValueError(f"an ensemble needs at least 2 trained models, got {sorted(member_dirs)}")
    loaded = {name: load_model(d) for name, d in member_dirs.items()}
    shared = {}
    for key in SHARED_KEYS:
        values = {name: cfg.get(key) for name, (_, cfg) in loaded.items()}
        if len({json.dumps(v, sort_keys=True) for v in values.values()}) > 1:
            raise ValueError(f"ensemble members disagree on {key!r}: {values}")
        shared[key] = next(iter(values.values()))
    model = Ensemble([m for m, _ in loaded.values()])
    folder = Path(folder)
    save_model(folder, model, {**shared, "members_from": {n: str(d) for n, d in member_dirs.items()},
                               "member_names": list(member_dirs)})
    val = {}
    for name, d in member_dirs.items():
        path = Path(d) / "metrics.json"
        val[name] = read_json_object(path).get("val_cosine") if path.is_file() else None
    write_json(folder / "metrics.json", {"members_val_cosine": val})
    write_json(folder / "history.json", [])
    return folder

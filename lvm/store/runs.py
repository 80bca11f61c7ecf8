"""The training run folder (docs/ARCHITECTURE.md): what a run used and concluded, as JSON a person can read.

Its writer (the train flow, through `write_run`) and its readers (`lvm diagnose`, the diagnose task) meet here, so
the folder's layout is known in one place."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

from lvm.util.atomic import write_json


def write_run(run_dir: str | Path, run: dict, comparison: dict | None = None, decision: dict | None = None) -> Path:
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    write_json(run_dir / "run.json", {"created_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                                      **run})
    if comparison is not None:
        write_json(run_dir / "comparison.json", comparison)
    if decision is not None:
        write_json(run_dir / "decision.json", decision)
    return run_dir


def _resolve(run_dir: Path, p: str) -> str:
    """A path from run.json as written, or relative to the run folder when it is neither absolute nor found from
    here: a run folder that was moved or copied elsewhere still finds the files it carries."""
    q = Path(p)
    return str(q if q.is_absolute() or q.exists() else run_dir / q)


def read_run(run_dir: str | Path) -> dict:
    """run.json of a training run folder, with its paths (data_path, split_path, every model folder) resolved.

    FileNotFoundError when the folder has no run.json, ValueError when it is not JSON or lacks data_path or
    context: a run folder that cannot be read is named, not half-read."""
    run_dir = Path(run_dir)
    path = run_dir / "run.json"
    if not path.is_file():
        raise FileNotFoundError(f"{run_dir} is not a training run folder: it has no run.json")
    try:
        run = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path} is not valid JSON ({e})") from None
    for key in ("data_path", "context"):
        if key not in run:
            raise ValueError(f"{path} lacks {key!r}")
    run["data_path"] = _resolve(run_dir, run["data_path"])
    if run.get("split_path"):
        run["split_path"] = _resolve(run_dir, run["split_path"])
    run["models"] = {arch: _resolve(run_dir, d) for arch, d in (run.get("models") or {}).items()}
    return run


def read_decision(run_dir: str | Path) -> dict:
    """decision.json of a run folder, or {} when there is none or it is unreadable (a run that stopped before
    deciding still has a diagnosis)."""
    path = Path(run_dir) / "decision.json"
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError:
        return {}


def run_of_model(model_dir: str | Path, run_dir: str | Path) -> Path:
    """A run folder for one model trained by hand (`lvm train`), so that `lvm diagnose MODEL_DIR` reads what a
    flow run's diagnosis reads: run.json (the table, its hash, encoder, context, the model) and the split
    re-drawn from the record in config.json (checked against its article-id hash). ValueError names what is
    missing or changed."""
    from lvm.data.dataset import file_hash, read_table, save_split, split_from_record
    from lvm.models.io import read_config

    model_dir, run_dir = Path(model_dir), Path(run_dir)
    config = read_config(model_dir)
    data = config.get("dataset")
    if not data or not Path(data).exists():
        raise ValueError(f"{model_dir}/config.json names no training table that is still there ({data!r}): the "
                         "diagnosis needs the table the model was trained on")
    rec = config.get("split") or {}
    table = read_table(data, validate=False)
    split = split_from_record(table, rec)
    if rec.get("article_ids_sha256") and split.record()["article_ids_sha256"] != rec["article_ids_sha256"]:
        raise ValueError(f"{data} no longer splits into the articles {model_dir} was trained on (the table "
                         "changed since): diagnose with the table it was trained on")
    run_dir.mkdir(parents=True, exist_ok=True)
    split_path = save_split(split, run_dir / "split.json")
    return write_run(run_dir, {"run_name": run_dir.name, "data_path": str(data), "data_sha256": file_hash(data),
                               "encoder": config.get("encoder"), "split_path": str(split_path),
                               "context": int(config["context"]), "models": {config["arch"]: str(model_dir)},
                               "failed": {}, "from_model_folder": str(model_dir)})

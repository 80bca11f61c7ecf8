"""Train one architecture: a thin wrapper around lvm.train that reports progress to Prefect."""

from __future__ import annotations

import hashlib
import json

from prefect import get_run_logger, task
from prefect.artifacts import create_progress_artifact, update_progress_artifact

from lvm.util.paths import runs_dir
from tasks.caching import by_inputs
from tasks.records import DatasetRecord, SplitRecord

TRANSIENT = (OSError, TimeoutError, ConnectionError, MemoryError)


def _retry_transient(task, task_run, state) -> bool:
    """Retry I/O hiccups and memory pressure; a bad config or a bug fails at once."""
    try:
        state.result()
    except TRANSIENT:
        return True
    except Exception:
        return False
    return False


def where_am_i() -> dict:
    """Which machine, process and (on Dask) worker ran a task: recorded with every training."""
    import os
    import socket

    info = {"host": socket.gethostname(), "pid": os.getpid()}
    try:
        from distributed import get_worker

        info["dask_worker"] = get_worker().name
    except (ImportError, ValueError):
        pass
    return info


def model_dir_for(dataset: DatasetRecord, split: SplitRecord, config: dict) -> str:
    """Content-addressed model folder: same data, split and config → same folder (the cache points at it)."""
    key = hashlib.sha256(json.dumps({"data": dataset.sha256, "split": split.article_ids_sha256,
                                     "config": config}, sort_keys=True).encode()).hexdigest()[:16]
    return str(runs_dir() / "models" / f"{config['arch']}-{key}")


@task(name="train", cache_policy=by_inputs(), persist_result=True, retries=2, retry_delay_seconds=5,
      retry_condition_fn=_retry_transient, task_run_name="train-{config[arch]}")
def train_architecture(dataset: DatasetRecord, split: SplitRecord, config: dict, code_version: str = "") -> dict:
    """Train `config["arch"]` on the split's train rows (early stopping on val); returns a small summary record
    with the model folder. Resumes from the folder's last checkpoint if an earlier attempt was interrupted.
    `code_version` (tasks.caching.code_version of the training code) is part of the cache key and of the model
    folder's name, so changed code neither reuses a cached result nor resumes an old checkpoint."""
    from lvm.train.config import TrainConfig
    from lvm.train.on_table import train_on_table

    logger = get_run_logger()
    cfg = TrainConfig.from_dict(config)
    out = model_dir_for(dataset, split, {**config, "code": code_version})
    progress = create_progress_artifact(progress=0.0, description=f"{cfg.arch}: epochs done of {cfg.epochs}")

    def on_epoch(rec: dict) -> None:
        update_progress_artifact(progress, progress=100.0 * rec["epoch"] / cfg.epochs)
        logger.info("%s epoch %d/%d  train_loss %.4f  train_cos %.4f  val_cos %.4f  (%.1fs)", cfg.arch, rec["epoch"],
                    cfg.epochs, rec["train_loss"], rec["train_cosine"], rec["val_cosine"], rec["seconds"])

    # held_out=False: the evaluate task scores the test split once, for every architecture and baseline
    summary = train_on_table(dataset.path, cfg, out, split_path=split.path, callback=on_epoch, resume=True,
                             held_out=False)
    update_progress_artifact(progress, progress=100.0)
    return {"arch": cfg.arch, "model_dir": out, "ran_on": where_am_i(),
            **{k: v for k, v in summary.items() if k not in ("arch", "model_dir")}}


@task(name="ensemble", cache_policy=by_inputs(), persist_result=True, task_run_name="ensemble")
def assemble_ensemble(dataset: DatasetRecord, split: SplitRecord, members: dict[str, str],
                      code_version: str = "") -> dict:
    """The ensemble of the trained models `members` ({arch: model folder}) as one more model folder (the mean of
    their unit predictions, lvm.models.ensemble); nothing is trained."""
    from lvm.models.io import save_ensemble

    out = model_dir_for(dataset, split, {"arch": "ensemble", "members": members, "code": code_version})
    save_ensemble(members, out)
    get_run_logger().info("ensemble of %s in %s", ", ".join(members), out)
    return {"arch": "ensemble", "model_dir": out, "members": sorted(members)}

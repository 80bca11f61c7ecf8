"""A table in, a model folder out: `train_on_table` reads and splits a sentence table, runs `fit` on its training
windows, and (run alone, as `lvm train` does) scores the best model on the held-out parts against the baselines."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from lvm.data.dataset import DEFAULT_FRACTIONS, file_hash, load_split, read_table, split_articles
from lvm.data.table import window_targets
from lvm.evaluation.baselines import cached_baselines
from lvm.evaluation.compare import held_out_scores
from lvm.evaluation.metrics import article_starts
from lvm.evaluation.predictors import windows_predict
from lvm.train.config import TrainConfig
from lvm.train.trainer import ModelFolderBusy, _fit
from lvm.util.atomic import write_json
from lvm.util.locking import folder_lock


def train_on_table(table_path, cfg: TrainConfig, out_dir, split_seed: int = 0, fractions=DEFAULT_FRACTIONS,
                   callback: Callable[[dict], None] | None = None, resume: bool = False,
                   split_path=None, baselines: bool | dict = True, held_out: bool = True) -> dict:
    """Read a sentence table, split it by article (or use the split saved at `split_path`), fit on train with
    early stopping on val, then evaluate the best model on val and the held-out test split against the baselines
    fitted on train only. Writes the model folder (metrics.json: the test metrics at top level, then best
    baseline, margin, `held_out` {val, test} with every baseline, training summary, split record, data hash,
    encoder) and returns a small JSON-able summary.

    baselines: True = fit them here (memoised per process; the ridge fit is the slow part at D=768),
    a dict of fitted `lvm.evaluation.baselines.Baseline`s to reuse, or False to leave them out of metrics.json.
    held_out=False: validation only (the flow scores the test split once, for every model, in its evaluate stage)."""
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
        model, summary = _fit(cfg, table.vectors, parts["train"], parts["val"], out_dir, callback, resume, meta,
                              table.position)
        model = model.to("cpu")
        if not held_out:
            return {"arch": cfg.arch, "model_dir": str(out_dir), "part": "val", "cosine": summary["best_val_cosine"],
                    **{k: v for k, v in summary.items() if k not in ("arch", "model_dir")}, "data_hash": data_hash}
        if baselines is True:
            baselines = cached_baselines(table.vectors, parts["train"], C, data_hash, record,
                                         article_starts(table.position))
        held = held_out_scores(lambda w: windows_predict(model, w), table, split, C, baselines=baselines or None,
                               arch=cfg.arch)
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

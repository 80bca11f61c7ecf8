"""Evaluate every trained model and every baseline on the held-out test articles (and an OOD table)."""

from __future__ import annotations

from prefect import task

from lvm.evaluation.compare import compare
from tasks.caching import by_inputs
from tasks.records import DatasetRecord, SplitRecord


@task(name="evaluate", cache_policy=by_inputs(), persist_result=True)
def evaluate_models(dataset: DatasetRecord, split: SplitRecord, trained: dict, context: int, part: str = "test",
                    code_version: str = "", ood: DatasetRecord | None = None) -> dict:
    """`trained` maps arch → model folder; `code_version` is only part of the cache key; `ood` a second validated
    table (load_and_validate's record) scored whole. Returns {"part", "n", "models": {arch: metrics + forward
    suite}, "baselines": {...}, "ood": {...}}."""
    return compare(dataset.path, split.path, trained, context, part, ood.path if ood else None)

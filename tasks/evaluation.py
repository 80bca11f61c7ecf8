"""Evaluate every trained model and every baseline on the held-out test articles (and an OOD table), and the
model in production against the run's best on the same windows."""

from __future__ import annotations

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from lvm.data.dataset import load_split
from lvm.evaluation.champion import corpus_changes, production_champion, score_champion
from lvm.evaluation.compare import compare
from lvm.util.paths import registry_dir
from tasks.caching import by_inputs
from tasks.records import DatasetRecord, SplitRecord


@task(name="evaluate", cache_policy=by_inputs(), persist_result=True, task_run_name="evaluate")
def evaluate_models(dataset: DatasetRecord, split: SplitRecord, trained: dict, context: int, part: str = "test",
                    code_version: str = "", ood: DatasetRecord | None = None) -> dict:
    """`trained` maps arch → model folder; `code_version` is only part of the cache key; `ood` a second validated
    table (load_and_validate's record) scored whole. Returns {"part", "n", "models": {arch: metrics + forward
    suite}, "baselines": {...}, "ood": {...}}."""
    return compare(dataset.path, split.path, trained, context, part, ood.path if ood else None,
                   log=get_run_logger().info)


@task(name="find-champion", cache_policy=NO_CACHE, task_run_name="find-champion")
def find_champion(dataset: DatasetRecord, split: SplitRecord, context: int,
                  registry_root: str | None = None) -> dict | None:
    """The registry's `production` model, when there is one, checked against this run's encoder, D and context
    (refused, naming both, before anything is trained); with the articles added since it was trained. Never
    cached: production moves between runs."""
    from lvm.store.registry import Registry

    champion = production_champion(registry_root or registry_dir(), dataset.encoder, dataset.dim, context)
    if champion is None:
        return None
    previous = Registry(registry_root or registry_dir()).articles(champion["version"])
    changes = corpus_changes(load_split(split.path).articles, previous)
    get_run_logger().info("champion: production v%d (%s); %d article(s) added since it was trained",
                          champion["version"], champion["arch"], changes["articles_added_count"])
    return {**champion, "changes": changes}


@task(name="score-champion", cache_policy=by_inputs(), persist_result=True, task_run_name="score-champion")
def score_champion_task(dataset: DatasetRecord, split: SplitRecord, champion: dict, challenger_dir: str,
                        challenger_arch: str, context: int, code_version: str = "") -> dict:
    """Production and the run's best model on the same test windows, with the paired difference
    (lvm.evaluation.champion.score_champion); `code_version` is only part of the cache key."""
    return score_champion(dataset.path, split.path, champion, challenger_dir, context, challenger_arch)

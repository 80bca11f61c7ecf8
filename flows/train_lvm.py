"""Flow: dataset → validate → split → train architectures in parallel → evaluate vs baselines (held-out cosine and
the forward suite) → the best model against the one in production → deploy/hold/investigate.

Run it with `make run` (built-in corpus, bundled encoder, Prefect's temporary local server) or `lvm run --help`
(flows/cli.py). Every stage is cached across runs by content: a re-run with nothing changed
does no work again, and changing one parameter re-runs only what depends on it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal, Optional

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.context import get_run_context
from pydantic import BaseModel, Field

import lvm.defaults as D
from lvm.data.dataset import is_table_path
from lvm.decision import (
    challenge,
    champion_table,
    decide,
    gate_table,
)
from lvm.evaluation.compare import compact_table, markdown_table, table_rows
from lvm.store.run_records import decided, decision_markdown, lineage, run_record
from lvm.store.runs import write_run
from lvm.train.init import init_sources, weights_sha256
from lvm.util.paths import registry_dir, runs_dir
from tasks.branches import deploy, diagnose_run, hold
from tasks.caching import code_version
from tasks.data import load_and_validate, split_dataset
from tasks.evaluation import evaluate_models, find_champion, score_champion_task
from tasks.records import DatasetRecord, LossWeights, ModelOptions, TrainOptions, given
from tasks.runners import make_runner
from tasks.training import assemble_ensemble, train_architecture


class ModelResult(BaseModel):
    arch: str
    model_dir: str
    cosine: float
    metrics: dict


class TrainLVMResult(BaseModel):
    """What the flow returns (and `make run` prints)."""
    decision: Literal["deploy", "hold", "investigate"]
    reason: str
    best_arch: Optional[str] = None
    best_cosine: Optional[float] = None
    models: list[ModelResult] = Field(default_factory=list)
    baselines: dict = Field(default_factory=dict)
    failed: dict[str, str] = Field(default_factory=dict)
    run_dir: str
    dataset: DatasetRecord
    registry: Optional[dict] = None
    report: Optional[str] = None
    table: str = ""
    gates: dict = Field(default_factory=dict)  # the best model's forward gates: value, threshold, passed
    ood: Optional[dict] = None                 # {data, n, val_minus_ood} when ood_data was given
    champion: dict = Field(default_factory=dict)  # production against the best model: lvm.decision.challenge
    champion_table: str = ""
    split: Optional[dict] = None               # the split record (method, seed, articles per part) and its path
    flow_run_id: Optional[str] = None


def _train_config(arch, epochs, context, seed, loss, model_options, train_options, threads, init) -> dict:
    """One architecture's TrainConfig fields: the flow's option groups as the plain dicts the library takes."""
    model = given(model_options.get(arch, model_options.get("*")))
    return {"arch": arch, "epochs": epochs, "context": context, "seed": seed, "loss": given(loss) or None,
            "model": model, "threads": threads, **given(train_options), **({"init": init} if init else {})}


def _train_all(dataset, split, configs, runner, workers, dask_address, code: str):
    """Submit every training to the chosen task runner; returns (trained records, failures). `code`: the training
    code's version (tasks.caching.code_version), part of each training's cache key and model folder."""
    logger = get_run_logger()
    trained, failed = {}, {}
    with make_runner(runner, workers, dask_address) as task_runner:
        futures = {c["arch"]: task_runner.submit(train_architecture, {
            "dataset": dataset, "split": split, "config": c,
            "code_version": code + (f"+init:{weights_sha256(c['init'])[:16]}" if c.get("init") else "")})
            for c in configs}
        for arch, fut in futures.items():
            fut.wait()
            state = fut.state
            if state.is_completed():
                trained[arch] = fut.result()
            else:
                try:
                    fut.result()
                    msg = state.message or state.name
                except Exception as exc:  # the task's own error, kept so one failure does not lose the others
                    msg = f"{type(exc).__name__}: {exc}"
                failed[arch] = msg
                logger.error("training %s failed: %s", arch, msg)
    return trained, failed


def check_parameters(data: str, architectures: list[str], epochs: int, context: int, fractions,
                     baseline_threshold: float | None, deploy_threshold: float | None, init: str | None = None
                     ) -> None:
    """Refuse parameters that cannot give a run, before any work, each naming the parameter and the rule."""
    from lvm.models import MODELS

    unknown = [a for a in architectures if a not in MODELS]
    if not architectures or unknown:
        raise ValueError(f"architectures must name at least one of {', '.join(MODELS)}; unknown: "
                         f"{unknown or '(none given)'}")
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"epochs must be a whole number >= 1, got {epochs!r}")
    if isinstance(context, bool) or not isinstance(context, int) or not 1 <= context <= 4096:
        raise ValueError(f"context must be a whole number from 1 to 4096, got {context!r}")
    if len(fractions) != 3 or min(fractions) < 0 or abs(sum(fractions) - 1) > 1e-6 or fractions[0] <= 0:
        raise ValueError(f"fractions must be three shares (train, val, test) >= 0 summing to 1, train > 0; got "
                         f"{tuple(fractions)}")
    for name, v in (("baseline_threshold", baseline_threshold), ("deploy_threshold", deploy_threshold)):
        if v is not None and not -1 <= v <= 1:
            raise ValueError(f"{name} must be a cosine from -1 to 1 (or left out: derived from the run), got {v}")
    if baseline_threshold is not None and deploy_threshold is not None and baseline_threshold > deploy_threshold:
        raise ValueError(f"need baseline_threshold <= deploy_threshold, got {baseline_threshold}, {deploy_threshold}")
    if data != "builtin" and not os.path.exists(data):
        raise FileNotFoundError(f"{data}: no such table or corpus (data must be a sentence table, a corpus file or "
                                "folder, or builtin)")
    if init is not None and not os.path.isfile(os.path.join(init, "config.json")):
        raise FileNotFoundError(f"{init}: not a model folder (init must be a trained model's folder, with "
                                "config.json)")


def _run_name() -> str:
    """The flow run's name, also its run folder's: what it trained on and when (UTC): train-sotu-20261207-0512-3f2a."""
    import time
    import uuid

    from prefect.runtime import flow_run

    data = str((flow_run.parameters or {}).get("data", "builtin"))
    name = Path(data).name.split(".")[0] or "data"
    return f"train-{name}-{time.strftime('%Y%m%d-%H%M', time.gmtime())}-{uuid.uuid4().hex[:4]}"


@flow(name="lvm-train", log_prints=True, flow_run_name=_run_name)
def train_lvm(
    data: str = "builtin",
    architectures: list[str] = list(D.ARCHITECTURES),
    epochs: int = D.EPOCHS,
    context: int = D.CONTEXT,
    loss: Optional[LossWeights] = None,
    model_options: Optional[dict[str, ModelOptions]] = None,
    train_options: Optional[TrainOptions] = None,
    baseline_threshold: Optional[float] = None,
    deploy_threshold: Optional[float] = None,
    seed: int = D.SEED,
    fractions: tuple[float, float, float] = D.FRACTIONS,
    encoder: Optional[str] = None,
    runner: Literal["threads", "processes", "dask"] = D.RUNNER,
    workers: Optional[int] = None,
    dask_address: Optional[str] = None,
    registry: Optional[str] = None,
    ood_data: Optional[str] = None,
    require_forward: bool = True,
    min_forward_margin: float = D.MIN_FORWARD_MARGIN,
    min_shuffle_drop: float = D.MIN_SHUFFLE_DROP,
    min_last_input_gain: float = D.MIN_LAST_INPUT_GAIN,
    max_paraphrase_ratio: Optional[float] = D.MAX_PARAPHRASE_RATIO,
    split_method: Literal["hash", "permutation"] = D.SPLIT_METHOD,
    challenge_production: bool = True,
    min_improvement: float = D.MIN_IMPROVEMENT,
    ensemble: bool = True,
    init: Optional[str] = None,
) -> TrainLVMResult:
    """Train and compare next-sentence-embedding models and act on the result.

    Args:
        data: A sentence table (.parquet, a folder of shards, or a seed .npz), a corpus (file or folder, embedded
            first), or `builtin`.
        architectures: The architectures to train (lvm models lists them).
        epochs: Most epochs per training (early stopping on validation cosine usually ends sooner).
        context: Sentences of context a model reads.
        loss: Loss weights, e.g. {"cosine": 1.0, "infonce": 0.1}; empty: the measured default.
        model_options: Build options per architecture ("*" for all), e.g. {"*": {"hidden": 64, "layers": 1}}.
        train_options: Other training settings (batch_size, lr, patience, precision, ...).
        baseline_threshold: Investigate below this held-out cosine; empty: the global-mean vector's cosine on this
            run's test articles.
        deploy_threshold: Deploy at or above it (and every other rule); empty: the baseline threshold + 0.0684.
        seed: The split's and the trainings' seed.
        fractions: Train, validation and test shares of the articles.
        encoder: For a corpus: the encoder that embeds it (default: the bundled MiniLM).
        runner: threads (measured as fast as processes on 2 cores), processes, or dask.
        workers: Trainings at a time (default: min(architectures, cores)).
        dask_address: A Dask scheduler's address (with runner dask; default: a temporary LocalCluster).
        registry: The model registry folder (default: data/registry).
        ood_data: A second sentence table of the same encoder, scored whole (the validation minus OOD gap).
        require_forward: Deploy only a model that passes the forward gates (README "The forward gate").
        min_forward_margin: cos(pred, next) - cos(pred, sentence before the window) and its interval must exceed it.
        min_shuffle_drop: Shuffling the context must cost at least this much cosine (interval above zero).
        min_last_input_gain: The prediction must beat copying the last input by this much.
        max_paraphrase_ratio: The prediction may not sit closer to its context than real next sentences do times
            this; empty leaves the gate out.
        split_method: hash (an article's part depends on its id and the seed only: a grown corpus never moves a
            test article into training) or permutation (exact shares, fixed tables).
        challenge_production: Score production on this run's test windows; replace it only when beaten by
            min_improvement with the interval above zero.
        min_improvement: The cosine a challenger must gain over production.
        ensemble: With two or more trained architectures, their ensemble is one more candidate.
        init: A trained model folder to fine-tune from (an ensemble: each member's architecture); the others train
            from scratch.
    """
    logger = get_run_logger()
    flow_run = get_run_context().flow_run
    run_name, run_id = flow_run.name, str(flow_run.id)
    check_parameters(data, architectures, epochs, context, fractions, baseline_threshold, deploy_threshold, init)
    code = {"training": code_version("tasks.training"), "evaluation": code_version("tasks.evaluation")}
    dataset = load_and_validate(_table_of(data, encoder, runner, workers, dask_address), context)
    logger.info("dataset %s: %d articles, %d sentences, D=%d, encoder %s", dataset.path, dataset.articles,
                dataset.sentences, dataset.dim, dataset.encoder)
    split = split_dataset(dataset, tuple(fractions), seed, split_method)
    champion = find_champion(dataset, split, context, registry) if challenge_production else None

    n_workers = workers or min(len(architectures), os.cpu_count() or 1)
    configs = [_train_config(a, epochs, context, seed, loss, model_options or {}, train_options,
                             _threads(runner, n_workers, architectures), start)
               for a, start in _init_of(init, architectures).items()]
    trained, failed = _train_all(dataset, split, configs, runner, n_workers, dask_address, code["training"])
    if ensemble and len(trained) >= 2:  # one more candidate: the mean of the trained models' predictions
        trained["ensemble"] = assemble_ensemble(dataset, split, {a: t["model_dir"] for a, t in trained.items()},
                                                code_version=code["training"])

    gates = dict(require_forward=require_forward, min_forward_margin=min_forward_margin,
                 min_shuffle_drop=min_shuffle_drop, min_last_input_gain=min_last_input_gain,
                 max_paraphrase_ratio=max_paraphrase_ratio)
    ood = load_and_validate(ood_data, context) if ood_data else None
    run = run_record(run_name, run_id, dataset, split, context, trained, failed,
                     {"baseline": baseline_threshold, "deploy": deploy_threshold}, gates, ood)
    comparison = evaluate_models(dataset, split, run["models"], context, code_version=code["evaluation"],
                                 ood=ood) if trained else {"part": "test", "n": 0, "models": {}, "baselines": {}}
    decision = decide(comparison["models"], comparison["baselines"], baseline_threshold, deploy_threshold, **gates)
    versus = score_champion_task(dataset, split, {k: v for k, v in champion.items() if k != "changes"},
                                 trained[decision.best_arch]["model_dir"], decision.best_arch, context,
                                 code_version=code["evaluation"]) if champion and decision.best_arch else None
    decision = challenge(decision, versus, min_improvement)
    run = decided(run, decision, champion)
    run_dir = write_run(runs_dir() / run_name, run, comparison, decision.to_dict())

    registry_out, report = _act(decision, trained, comparison, dataset, split, run, run_dir, registry,
                                lineage(dataset, split.model_dump(), champion, decision, code["training"]))
    table = _publish(decision, comparison, dataset, split, seed, failed, registry_out, report, run_dir, registry)
    if not trained:  # recorded above (run folder, artifacts); the run itself fails, so automation sees it
        raise RuntimeError(f"no architecture finished training ({', '.join(f'{a}: {m}' for a, m in failed.items())});"
                           f" run folder {run_dir}")
    return _result(decision, comparison, trained, failed, run_dir, dataset, split, registry_out, report, table,
                   run_id)


def _result(decision, comparison, trained, failed, run_dir, dataset, split, registry_out, report, table,
            run_id) -> TrainLVMResult:
    ood = comparison.get("ood")
    return TrainLVMResult(
        decision=decision.branch, reason=decision.reason, best_arch=decision.best_arch,
        best_cosine=decision.best_cosine, baselines=comparison["baselines"], failed=failed, run_dir=str(run_dir),
        dataset=dataset, registry=registry_out, report=report, table=table, gates=decision.gates,
        ood={k: ood[k] for k in ("data", "n", "val_minus_ood")} if ood else None, champion=decision.champion,
        champion_table=champion_table(decision), split=split.model_dump(), flow_run_id=run_id,
        models=[ModelResult(arch=a, model_dir=t["model_dir"], cosine=comparison["models"][a]["cosine"],
                            metrics=comparison["models"][a]) for a, t in trained.items()])


def _table_of(data: str, encoder, runner: str, workers, dask_address) -> str:
    """The sentence table of `data`: itself, or for a corpus the table the dataset flow builds (a subflow)."""
    if is_table_path(data):
        return data
    from flows.build_dataset import build_dataset_flow

    return build_dataset_flow(corpus=data, encoder=encoder, runner="dask" if runner == "dask" else "local",
                              workers=workers, dask_address=dask_address, notify=False)


def _threads(runner: str, n_workers: int, architectures: list[str]):
    """Torch threads per training: with threads the trainings share the cores, re-balanced every epoch (the last
    one left running is not stuck on one core); one process per training gets a fixed share."""
    if runner == "threads":
        return "auto"
    return max(1, (os.cpu_count() or 1) // max(1, min(n_workers, len(architectures))))


def _init_of(init: str | None, architectures: list[str]) -> dict[str, str | None]:
    """Each architecture's starting weights: a model folder for those `init` can start, else None (logged)."""
    inits = init_sources(init, architectures) if init else {}
    if init:
        get_run_logger().info("fine-tuning from %s: %s; from scratch: %s", init, ", ".join(inits) or "none",
                              ", ".join(a for a in architectures if a not in inits) or "none")
    return {a: inits.get(a) for a in architectures}


def _act(decision, trained: dict, comparison: dict, dataset, split, run: dict, run_dir, registry, lineage: dict):
    """(registry record, report path): deploy registers the best model as production, hold as candidate,
    investigate writes the diagnosis; a best model that is production already registers nothing."""
    best, run_id = decision.best_arch, run["flow_run_id"]
    if decision.champion.get("same_model"):
        return None, None
    if decision.branch == "deploy":
        return deploy(trained[best]["model_dir"], dataset, comparison["models"][best], run_id, registry, lineage,
                      split.path), None
    if decision.branch == "hold" and best:
        return hold(trained[best]["model_dir"], dataset, comparison["models"][best], decision.reason, run_id,
                    registry, lineage, split.path), None
    if decision.branch == "investigate" and trained:
        evidence = {k: run[k] for k in ("data_sha256", "split_path", "models", "context", "gates",
                                        "baseline_threshold", "deploy_threshold")}
        diagnosis = diagnose_run(str(run_dir), evidence)
        create_markdown_artifact(markdown=diagnosis["markdown"], key="lvm-diagnosis",
                                 description=f"Diagnosis: {diagnosis['verdict']}")
        return None, diagnosis["report"]
    return None, None


def _publish(decision, comparison: dict, dataset, split, seed: int, failed: dict, registry_out, report,
             run_dir, registry) -> str:
    """The run's artifacts in the Prefect UI (models against baselines, the decision, the registry's versions);
    returns the Markdown table."""
    from lvm.store.registry import Registry

    versions = Registry(registry or registry_dir()).list()
    if versions:
        create_table_artifact(key="lvm-registry", description="Registered versions: aliases and held-out scores",
                              table=[{"version": f"v{v['version']}", "arch": v.get("arch"),
                                      "aliases": ", ".join(v.get("aliases") or []) or "-",
                                      "cosine": round(float((v.get("metrics") or {}).get("cosine") or 0.0), 4),
                                      "created": v.get("created_at")} for v in reversed(versions)])
    table = markdown_table(comparison) if comparison["models"] else "(no model finished)"
    create_table_artifact(table=table_rows(comparison), key="lvm-models-vs-baselines",
                          description=f"Held-out ({comparison['part']}) metrics, {comparison['n']} windows")
    create_markdown_artifact(key="lvm-decision", description=f"Decision: {decision.branch}", markdown=decision_markdown(
        decision, dataset, split, seed, compact_table(comparison) if comparison["models"] else table,
        champion_table(decision), gate_table(decision), failed, registry_out, report, run_dir))
    return table


def where_in_the_ui(flow_run_id: str | None) -> str:
    """The run's page in the Prefect UI, as it really is: the server the run used, or, after a temporary server
    (gone now), where `make server` will show it (the same Prefect home)."""
    from prefect.settings import get_current_settings

    settings = get_current_settings()
    api = settings.api.url
    page = f"/runs/flow-run/{flow_run_id}" if flow_run_id else ""
    what = "artifacts lvm-decision, lvm-models-vs-baselines and each training's progress"
    if api:
        return f"in the Prefect UI ({what}): {str(api).rstrip('/').removesuffix('/api')}{page}"
    port = os.environ.get("PREFECT_PORT", "4200")
    project_home = Path(__file__).resolve().parents[1] / "data" / "prefect-home"  # scripts/serve_deployments.sh's
    home = Path(settings.home).resolve()
    server = "make server" if home == project_home else f"PREFECT_HOME={home} make server"
    return (f"this run used a temporary Prefect server, stopped now; its records ({what}) are in the Prefect home "
            f"{settings.home}: `{server}` shows them at http://127.0.0.1:{port}{page}")


"""The three outcomes of a training run: deploy (promote to production), hold (register as candidate),
investigate (`diagnose_run`: the diagnosis and its report). Each is one library call; the flow picks one."""

from __future__ import annotations

from prefect import get_run_logger, task

from lvm.data.dataset import load_split
from lvm.store.registry import Registry
from lvm.util.paths import registry_dir
from tasks.caching import by_inputs
from tasks.records import DatasetRecord


def _register(model_dir: str, dataset: DatasetRecord, metrics: dict, flow_run_id: str | None, alias: str,
              registry_root: str | None, lineage: dict | None = None, split_path: str | None = None) -> dict:
    reg = Registry(registry_root or registry_dir())
    lineage = {**(lineage or {}), "flow_run_id": flow_run_id}
    articles = load_split(split_path).articles if split_path else None
    version = reg.register(model_dir, data_hash=dataset.sha256, encoder=dataset.encoder,
                           encoder_dim=dataset.dim, flow_run_id=flow_run_id, metrics=metrics, alias=alias,
                           lineage=lineage, articles=articles)
    return {"registry": str(reg.root), "version": version, "alias": alias}


@task(name="deploy", cache_policy=by_inputs() - "flow_run_id", persist_result=True, task_run_name="deploy")
def deploy(model_dir: str, dataset: DatasetRecord, metrics: dict, flow_run_id: str | None = None,
           registry_root: str | None = None, lineage: dict | None = None, split_path: str | None = None) -> dict:
    """Register the best model and point `production` at it; a running LVM server follows the alias. `lineage`
    goes into the version (with the flow run id), the split's article ids beside it (articles.json)."""
    out = _register(model_dir, dataset, metrics, flow_run_id, "production", registry_root, lineage, split_path)
    get_run_logger().info("promoted version v%d to production in %s", out["version"], out["registry"])
    return out


@task(name="hold", cache_policy=by_inputs() - "flow_run_id", persist_result=True, task_run_name="hold")
def hold(model_dir: str, dataset: DatasetRecord, metrics: dict, reason: str, flow_run_id: str | None = None,
         registry_root: str | None = None, lineage: dict | None = None, split_path: str | None = None) -> dict:
    """Register the best model as `candidate` only: production is left as it is."""
    out = _register(model_dir, dataset, metrics, flow_run_id, "candidate", registry_root, lineage, split_path)
    get_run_logger().info("registered v%d as candidate (not deployed): %s", out["version"], reason)
    return {**out, "reason": reason}


@task(name="diagnose", cache_policy=by_inputs() - "run_dir", persist_result=True, task_run_name="diagnose")
def diagnose_run(run_dir: str, evidence: dict) -> dict:
    """Diagnose the run from its evidence and write the report into the run folder. Cached by the evidence
    (data, split, model folders), not by the run folder: the same evidence gives the same diagnosis, so a cache hit
    returns the earlier run's report (its path and markdown) and writes nothing into the new run folder."""
    from lvm.diagnosis.evidence import diagnose
    from lvm.diagnosis.render import markdown_with_images, write_report

    diagnosis = diagnose(run_dir, log=get_run_logger().info)
    report = write_report(diagnosis)["report.md"]  # into the run folder's report/
    get_run_logger().info("diagnosis: %s (report: %s)", diagnosis.verdict, report)
    return {"verdict": diagnosis.verdict, "report": report, "markdown": markdown_with_images(diagnosis)}

"""The records a training run leaves, built from what its stages returned: run.json's content, the lineage kept
with a registered version, and the decision's Markdown. Pure functions of plain values, so the flow reads as its
stage calls and a test can build any of them without Prefect. `dataset` and `split` are any objects with the
fields of tasks.records' DatasetRecord (path, sha256, encoder, articles, sentences, dim) and SplitRecord (path,
method, articles)."""

from __future__ import annotations


def run_record(run_name: str, run_id: str, dataset, split, context: int, trained: dict, failed: dict,
               thresholds_given: dict, gates: dict, ood=None) -> dict:
    """run.json before the decision (docs/ARCHITECTURE.md, "Training run folder")."""
    run = {"run_name": run_name, "flow_run_id": run_id, "data_path": dataset.path, "data_sha256": dataset.sha256,
           "encoder": dataset.encoder, "split_path": split.path, "context": context,
           "models": {a: t["model_dir"] for a, t in trained.items()}, "failed": failed,
           "ran_on": {a: t.get("ran_on") for a, t in trained.items()}, "thresholds_given": thresholds_given,
           "gates": gates}
    if ood is not None:
        run["ood_data_path"], run["ood_data_sha256"] = ood.path, ood.sha256
    return run


def decided(run: dict, decision, champion: dict | None) -> dict:
    """run.json with what the decision settled: the thresholds it used (derived or given) and production."""
    return {**run, "baseline_threshold": decision.baseline_threshold, "deploy_threshold": decision.deploy_threshold,
            "champion": champion}


def lineage(dataset, split_record: dict, champion: dict | None, decision, code_version: str) -> dict:
    """Where a registered version came from: data, split, production before it and the difference to it, the
    training code's version, the articles added since production was trained."""
    return {"data_hash": dataset.sha256, "data_path": dataset.path, "split": split_record,
            "articles": dataset.articles, "previous_production": champion["version"] if champion else None,
            "code_version": code_version, "vs_production": (decision.champion or {}).get("difference"),
            **(champion["changes"] if champion else {"articles_added_count": dataset.articles,
                                                      "previous_known": False})}


def decision_markdown(decision, dataset, split, seed: int, table: str, champion_md: str, gates_md: str,
                      failed: dict, registry_out: dict | None, report: str | None, run_dir) -> str:
    """The lvm-decision artifact: the verdict and its reason, champion and gates, thresholds, data, the table."""
    said = decision.thresholds.get("said", "(none: no model)")
    lines = [f"# Decision: **{decision.branch.upper()}**", decision.reason, champion_md, gates_md,
             f"Thresholds: {said}. Dataset `{dataset.path}` ({dataset.articles} articles, {dataset.sentences} "
             f"sentences, D={dataset.dim}, {dataset.encoder}); {split.method} split, seed {seed}, "
             + ", ".join(f"{k} {v}" for k, v in dict(split.articles).items()) + " articles.", table]
    if failed:
        lines.append("Failed: " + "; ".join(f"{a}: {m}" for a, m in failed.items()))
    if registry_out:
        lines.append(f"Registry: version v{registry_out.get('version')} in `{registry_out.get('registry')}`"
                     + (f", alias {registry_out['alias']}" if registry_out.get("alias") else ""))
    if report:
        lines.append(f"Report: `{report}`")
    lines.append(f"Run folder: `{run_dir}`")
    return "\n\n".join(lines) + "\n"

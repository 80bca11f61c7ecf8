"""prefect.yaml: both deployments point at real flows, the retrain is on a valid weekly cron schedule on the user's
corpus, and new text triggers it through the event the dataset flow emits."""

import importlib
import inspect
from pathlib import Path

import yaml
from prefect.flows import Flow

ROOT = Path(__file__).resolve().parents[1]


def _deployments() -> dict:
    spec = yaml.safe_load((ROOT / "prefect.yaml").read_text())
    return {d["name"]: d for d in spec["deployments"]}


def test_deployments_point_at_flows_and_retrain_is_scheduled():
    deps = _deployments()
    assert set(deps) == {"lvm-train", "lvm-build-dataset"}
    for d in deps.values():
        path, name = d["entrypoint"].split(":")
        module = importlib.import_module(path.removesuffix(".py").replace("/", "."))
        flow = getattr(module, name)
        assert isinstance(flow, Flow)
        assert d["work_pool"]["name"] == "lvm-local"
        assert set(d["parameters"]) <= set(inspect.signature(flow.fn).parameters), d["parameters"]
    from prefect.client.schemas.schedules import CronSchedule

    for d in deps.values():
        for cron in d["schedules"]:
            CronSchedule(cron=cron["cron"], timezone=cron["timezone"])  # raises on an invalid cron
    cron = deps["lvm-train"]["schedules"][0]
    assert cron["cron"].split()[4] != "*", "the retrain should be weekly"
    # the defaults are declared once, by the flow's owners (TrainConfig, lvm.decision), not repeated here
    assert not {"epochs", "context", "baseline_threshold", "deploy_threshold", "min_improvement"} & set(
        deps["lvm-train"]["parameters"])


def test_retrain_reads_the_users_corpus_and_is_triggered_by_new_text():
    """The retrain and the dataset flow read the same folder, and the retrain's trigger expects exactly the event
    (and resource) that tasks.data.announce_table emits."""
    from prefect.events import DeploymentEventTrigger

    from lvm.ingest.build import corpus_name
    from tasks.data import DATASET_UPDATED

    deps = _deployments()
    train, build = deps["lvm-train"], deps["lvm-build-dataset"]
    assert train["parameters"]["data"] == build["parameters"]["corpus"] != "builtin"
    (spec,) = train["triggers"]
    trigger = DeploymentEventTrigger(**spec)  # raises on a malformed trigger
    assert trigger.expect == {DATASET_UPDATED} and trigger.enabled
    pattern = spec["match"]["prefect.resource.id"]
    resource = f"lvm.dataset.{corpus_name(build['parameters']['corpus'])}"
    assert pattern.endswith("*") and resource.startswith(pattern[:-1])

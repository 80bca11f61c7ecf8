"""prefect.yaml: both deployments point at real flows, and the retrain is on a valid weekly cron schedule."""

import importlib
from pathlib import Path

import yaml
from prefect.flows import Flow

ROOT = Path(__file__).resolve().parents[1]


def test_deployments_point_at_flows_and_retrain_is_scheduled():
    spec = yaml.safe_load((ROOT / "prefect.yaml").read_text())
    deps = {d["name"]: d for d in spec["deployments"]}
    assert set(deps) == {"lvm-train", "lvm-build-dataset"}
    for d in deps.values():
        path, name = d["entrypoint"].split(":")
        module = importlib.import_module(path.removesuffix(".py").replace("/", "."))
        assert isinstance(getattr(module, name), Flow)
        assert d["work_pool"]["name"] == "lvm-local"
    from prefect.client.schemas.schedules import CronSchedule

    cron = deps["lvm-train"]["schedules"][0]
    CronSchedule(cron=cron["cron"], timezone=cron["timezone"])  # raises on an invalid cron
    assert cron["cron"].split()[4] != "*", "the retrain should be weekly"
    # the defaults are declared once, by the flow's owners (TrainConfig, lvm.decision), not repeated here
    assert not {"epochs", "context", "baseline_threshold", "deploy_threshold"} & set(deps["lvm-train"]["parameters"])

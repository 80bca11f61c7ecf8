"""The Prefect flows in Prefect's test harness: tiny models on real text, every branch, failures, caching."""

import json
from pathlib import Path

import pytest
from conftest import copy_sotu12, prefect_harness

TINY = {"*": {"hidden": 32, "layers": 1}, "transformer": {"hidden": 32, "layers": 1, "heads": 2, "ffn": 64}}


@pytest.fixture(scope="module", autouse=True)
def harness(tmp_path_factory):
    """One Prefect server and one data folder for the module."""
    with prefect_harness(tmp_path_factory.mktemp("lvm-data")) as data:
        yield data


@pytest.fixture(scope="module")
def sotu_table(harness, corpus_dir):
    """Twelve real State of the Union speeches embedded with the hash encoder (fast, no model download)."""
    from flows.build_dataset import build_dataset_flow

    return build_dataset_flow(corpus=str(copy_sotu12(corpus_dir, harness / "sotu12")), encoder="hash:32")


def _run(table, **kw):
    from flows.train_lvm import train_lvm

    params = dict(data=table, architectures=["lstm", "gru"], epochs=2, model_options=TINY, runner="threads")
    params.update(kw)
    return train_lvm(**params)


def test_investigate_branch_writes_a_diagnosis(sotu_table, harness, corpus_dir):
    """Also: the forward suite for every model and baseline in comparison.json, the gates in decision.json, the
    offset-sweep plot in the report, and an out-of-distribution table (other speeches) with its gap."""
    import shutil

    from flows.build_dataset import build_dataset_flow

    other = harness / "sotu-other"
    other.mkdir()
    for f in sorted((corpus_dir / "sotu").glob("*.txt"))[12:15]:
        shutil.copy(f, other)
    ood = build_dataset_flow(corpus=str(other), encoder="hash:32")
    r = _run(sotu_table, baseline_threshold=0.99, deploy_threshold=0.99, ood_data=ood)
    assert r.decision == "investigate" and r.best_arch in ("lstm", "gru", "ensemble")
    assert "below the baseline threshold 0.99" in r.reason
    assert Path(r.report).is_file() and Path(r.run_dir, "decision.json").is_file()
    assert Path(r.report).with_name("offset_sweep.png").is_file()
    run = json.loads(Path(r.run_dir, "run.json").read_text())
    assert set(run["models"]) == {"lstm", "gru", "ensemble"} and run["failed"] == {}  # and their ensemble
    assert {"global_mean", "last_context", "context_mean", "ridge", "article_mean", "article_blend"} == \
        set(r.baselines)
    comp = json.loads(Path(r.run_dir, "comparison.json").read_text())
    for m in [*comp["models"].values(), *comp["baselines"].values()]:
        assert m["forward"]["offsets"]["k"][0] == -7 and "forward_margin" in m and "shuffle_drop" in m
    assert set(comp["ood"]["val_minus_ood"]) >= {"lstm", "gru", "ridge"} and r.ood["n"] > 0
    dec = json.loads(Path(r.run_dir, "decision.json").read_text())
    assert set(dec["gates"]) >= {"forward_margin", "shuffle_drop", "last_input_gain"} and dec["require_forward"]
    assert r.gates == dec["gates"]


def test_hold_branch_registers_a_candidate_only(sotu_table, harness):
    from lvm.store.registry import Registry

    r = _run(sotu_table, baseline_threshold=0.0, deploy_threshold=0.99)
    assert r.decision == "hold" and r.registry["alias"] == "candidate"
    reg = Registry(harness / "registry")
    assert reg.aliases().get("candidate") == r.registry["version"] and "production" not in reg.aliases()


def test_a_failing_architecture_does_not_lose_the_others(sotu_table):
    r = _run(sotu_table, architectures=["lstm", "transformer"],
             model_options={"*": {"hidden": 32, "layers": 1}, "transformer": {"hidden": 30, "heads": 4}},
             baseline_threshold=0.99, deploy_threshold=0.99)
    assert set(r.failed) == {"transformer"} and "ValueError" in r.failed["transformer"]
    assert [m.arch for m in r.models] == ["lstm"] and r.decision == "investigate"


def test_processes_runner_rerun_is_cached_and_epochs_retrain_only(sotu_table, harness):
    """Default runner (processes). Same parameters again: every task Cached. More epochs: only training re-runs."""
    from prefect import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    def states(result_run_dir):
        run_id = json.loads(Path(result_run_dir, "run.json").read_text())["flow_run_id"]
        with get_client(sync_client=True) as c:
            trs = c.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run_id])))
        return {t.name: t.state.name for t in trs}  # clean task run names (#27)

    kw = dict(architectures=["lstm", "gru"], runner="processes", baseline_threshold=0.99, deploy_threshold=0.99)
    first = _run(sotu_table, **kw)
    again = _run(sotu_table, **kw)
    s = states(again.run_dir)
    assert s["train-lstm"] == s["train-gru"] == "Cached" and s["load-and-validate"] == "Cached"
    assert s["split-by-article"] == "Cached" and s["evaluate"] == "Cached", s
    assert [m.cosine for m in again.models] == [m.cosine for m in first.models]
    more = _run(sotu_table, **{**kw, "epochs": 3})
    s = states(more.run_dir)
    assert s["load-and-validate"] == "Cached" and s["split-by-article"] == "Cached"
    assert s["train-lstm"] == "Completed" and s["train-gru"] == "Completed" and s["evaluate"] == "Completed"


def test_deploy_branch_promotes_to_production_and_the_server_serves_it(harness, tmp_path):
    """Deploy needs a model above the threshold that beats every baseline. On tiny real-text runs no network does
    (and the flow rightly refuses to deploy it), so this uses learnable non-linear data (conftest.quadratic_table)."""
    from conftest import quadratic_table
    from fastapi.testclient import TestClient

    from lvm.data.dataset import write_table
    from lvm.server.app import create_app
    from lvm.store.registry import Registry

    table = write_table(quadratic_table(200, dim=16, seed=0), tmp_path / "quadratic.parquet")
    r = _run(str(table), architectures=["lstm"], epochs=12, model_options={"*": {"hidden": 64, "layers": 1}},
             train_options={"lr": 3e-3, "batch_size": 64}, baseline_threshold=0.5, deploy_threshold=0.6)
    assert r.decision == "deploy", r.reason
    assert r.best_cosine >= 0.6 and r.best_cosine > max(b["cosine"] for b in r.baselines.values())
    assert all(g["passed"] for g in r.gates.values()) and "passes every forward gate" in r.reason
    reg = Registry(harness / "registry")
    assert reg.aliases()["production"] == r.registry["version"]
    with TestClient(create_app(reg.root)) as client:
        info = client.get("/model").json()
        assert info["version"] == r.registry["version"] and info["arch"] == "lstm"


def test_train_flow_accepts_a_seed_npz(sotu_table, harness):
    """`data=seed.npz`: the original project's window file is a sentence table to the flow (not a corpus)."""
    from lvm.data.dataset import read_table
    from lvm.data.seed_npz import export_npz

    npz = export_npz(read_table(sotu_table), harness / "seed.npz", context=5)
    # a registry of its own: production in the module's registry (the deploy test's) holds other vectors, which a
    # retrain rightly refuses to compare with (tests/test_retrain.py)
    r = _run(str(npz), architectures=["lstm"], epochs=1, baseline_threshold=0.99, deploy_threshold=0.99,
             registry=str(harness / "registry-npz"))
    run = json.loads(Path(r.run_dir, "run.json").read_text())
    assert run["data_path"] == str(npz) and list(run["models"]) == ["lstm"] and run["failed"] == {}


def test_a_run_where_no_candidate_trained_fails_with_its_record_kept(sotu_table, harness):
    """Automation must see failure: the flow run fails (the caller gets the error) when nothing trained, and the
    run folder still records the decision and why (#28 item 1)."""
    from prefect import get_client

    with pytest.raises(RuntimeError, match="no architecture finished training.*transformer: .*ValueError"):
        _run(sotu_table, architectures=["transformer"], model_options={"transformer": {"hidden": 30, "heads": 4}},
             challenge_production=False)
    with get_client(sync_client=True) as c:
        last = sorted(c.read_flow_runs(), key=lambda f: f.created)[-1]
    assert last.state.is_failed()
    runs = sorted((harness / "runs").iterdir(), key=lambda p: p.stat().st_mtime) if (harness / "runs").is_dir() \
        else []
    decisions = [json.loads((r / "decision.json").read_text()) for r in runs if (r / "decision.json").is_file()]
    assert decisions and decisions[-1]["branch"] == "investigate"


@pytest.mark.parametrize("args, says", [
    (["--data", "/nonexistent/table.parquet"], "/nonexistent/table.parquet: no such table or corpus"),
    (["--context", "0"], "context must be a whole number"),
    (["--epochs", "0"], "epochs must be a whole number >= 1"),
    (["--arch", "foo"], "unknown: ['foo']"),
])
def test_bad_flow_parameters_are_one_error_line_and_a_nonzero_exit(args, says, tmp_path, capsys, monkeypatch):
    """Checked before Prefect starts anything: exit 2, one error line, no run folder (#28 items 1, 3)."""
    from flows.cli import app

    monkeypatch.setenv("LVM_DATA_DIR", str(tmp_path))
    with pytest.raises(SystemExit) as info:
        app(["run", *args])
    out = capsys.readouterr()
    err = out.err.strip().splitlines()
    assert info.value.code == 2 and len(err) == 1 and err[0].startswith("error: ") and says in err[0], out.err
    assert "Traceback" not in out.err + out.out and not (tmp_path / "runs").exists()


def test_bad_data_found_inside_a_running_flow_is_one_error_line_without_a_traceback(tmp_path, harness):
    """A pickle .npz passes the parameter check (the file exists) and is refused by the load task inside the run:
    Prefect's logs of the failed task and flow keep their messages, not their tracebacks (#28 item 3)."""
    import os
    import subprocess
    import sys

    import numpy as np
    from conftest import ROOT
    from prefect.settings import PREFECT_API_URL

    npz = tmp_path / "pickle.npz"
    np.savez(npz, context_sequences=np.array([{"a": 1}], dtype=object), target_vectors=np.zeros((1, 4)))
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PREFECT_API_URL": PREFECT_API_URL.value()}
    env.pop("LVM_DEBUG", None)
    p = subprocess.run([sys.executable, "-m", "flows.cli", "run", "--data", str(npz)], env=env, cwd=tmp_path,
                       capture_output=True, text=True, timeout=300)
    out = p.stdout + p.stderr
    errors = [line for line in out.splitlines() if line.startswith("error:")]
    assert p.returncode == 2 and len(errors) == 1 and str(npz) in errors[0], out[-3000:]
    assert "Traceback" not in out and "holds Python objects (a pickle)" in out


def test_a_run_fine_tunes_from_a_model_folder_and_the_others_train_from_scratch(sotu_table, harness):
    """init (#29 item 7): the lstm starts from the given lstm's weights (its validation cosine before the first
    epoch is that model's best, on the same split), the gru from scratch; a different init folder is a new cache
    key and a new model folder."""
    first = _run(sotu_table, architectures=["lstm"], ensemble=False, challenge_production=False)
    base = first.models[0].model_dir
    tuned = _run(sotu_table, architectures=["lstm", "gru"], ensemble=False, challenge_production=False, init=base)
    dirs = {m.arch: m.model_dir for m in tuned.models}
    lstm = json.loads((Path(dirs["lstm"]) / "metrics.json").read_text())["training"]
    gru = json.loads((Path(dirs["gru"]) / "metrics.json").read_text())["training"]
    base_val = json.loads((Path(base) / "metrics.json").read_text())["val_cosine"]
    assert lstm["init"] == base and gru["init"] is None and dirs["lstm"] != base
    assert lstm["initial_val_cosine"] == pytest.approx(base_val, abs=1e-5)
    with pytest.raises(FileNotFoundError, match="not a model folder"):
        _run(sotu_table, architectures=["lstm"], init=str(harness / "nowhere"))


def test_lvm_run_is_the_flow_with_a_config_file_and_options_that_win(sotu_table, harness, tmp_path):
    """#27 item 4: `lvm run` takes every flow parameter (typed options, the rest from --config TOML or YAML); an
    option on the command line wins over the file; an unknown key names the file; nothing trained exits 1. Run as
    the program a user runs (a subprocess on the module's Prefect server)."""
    import os
    import subprocess
    import sys

    import yaml
    from conftest import ROOT
    from prefect.settings import PREFECT_API_URL

    env = {**os.environ, "PYTHONPATH": str(ROOT), "PREFECT_API_URL": PREFECT_API_URL.value()}

    def lvm(*args):
        return subprocess.run([sys.executable, "-c", "from flows.cli import main; main()", *args], env=env,
                              cwd=tmp_path, capture_output=True, text=True, timeout=600)

    cfg = tmp_path / "run.yaml"
    cfg.write_text(yaml.safe_dump({"data": sotu_table, "architectures": ["gru"], "epochs": 3, "model_options": TINY,
                                   "challenge_production": False, "ensemble": False}))
    res = lvm("run", "--config", str(cfg), "--epochs", "1", "--arch", "lstm")
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-3000:]
    assert "DECISION:" in res.stdout and "run folder:" in res.stdout
    run_dir = next(line.split(": ", 1)[1] for line in res.stdout.splitlines() if line.startswith("run folder:"))
    run = json.loads((Path(run_dir) / "run.json").read_text())
    assert list(run["models"]) == ["lstm"]  # --arch won over the file's gru
    history = json.loads((Path(run["models"]["lstm"]) / "history.json").read_text())
    assert len(history) == 1  # --epochs 1 won over the file's 3

    bad = tmp_path / "bad.toml"
    bad.write_text('data = "builtin"\nepochz = 3\n')
    res = lvm("run", "--config", str(bad))
    assert res.returncode == 2 and f"{bad}: unknown flow parameters ['epochz']" in res.stderr

    cfg.write_text(yaml.safe_dump({"data": sotu_table, "architectures": ["transformer"], "challenge_production": False,
                                   "model_options": {"transformer": {"hidden": 30, "heads": 4}}}))
    res = lvm("run", "--config", str(cfg))
    errors = [line for line in res.stderr.splitlines() if line.startswith("error:")]
    assert res.returncode == 1 and len(errors) == 1 and "no architecture finished training" in errors[0]


def test_the_ui_shows_clean_names_described_parameters_and_the_registry(sotu_table, harness):
    """#27 item 7: every task run is named without a hash suffix, the flow run by what it trained on, every
    parameter of the run form has a description, and a registered model leaves an lvm-registry artifact."""
    import re

    from prefect import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    from flows.train_lvm import train_lvm

    described = train_lvm.parameters.model_dump()["properties"]
    assert all(p.get("description") for p in described.values()), [k for k, p in described.items()
                                                                    if not p.get("description")]
    r = _run(sotu_table, architectures=["lstm"], ensemble=False, challenge_production=False,
             baseline_threshold=0.0, deploy_threshold=0.0, require_forward=False)
    run_id = json.loads((Path(r.run_dir) / "run.json").read_text())["flow_run_id"]
    with get_client(sync_client=True) as c:
        flow_run = c.read_flow_run(run_id)
        tasks = c.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run_id])))
        artifacts = c.read_artifacts()
    assert flow_run.name.startswith("train-sotu12-") and Path(r.run_dir).name == flow_run.name
    hashed = [t.name for t in tasks if re.search(r"-[0-9a-f]{3}$", t.name)]
    assert tasks and not hashed, hashed
    assert r.registry and "lvm-registry" in {a.key for a in artifacts}  # deployed or held: registered either way

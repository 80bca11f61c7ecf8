"""The training cache follows the code a task really imports (tasks.caching.code_version), not a hand-kept list."""

import json
import os
import shutil
import subprocess
import sys

from conftest import ROOT, make_table, prefect_harness

# one flow run in a fresh interpreter, on the copy of the code in PYTHONPATH; prints what the train task did
RUN = r"""
import json, sys
from pathlib import Path
from prefect import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
from flows.train_lvm import train_lvm

r = train_lvm(data=sys.argv[1], architectures=["lstm"], epochs=1, model_options={"*": {"hidden": 16, "layers": 1}},
              baseline_threshold=0.0, deploy_threshold=1.0)
run_id = json.loads(Path(r.run_dir, "run.json").read_text())["flow_run_id"]
with get_client(sync_client=True) as c:
    runs = c.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run_id])))
state = next(t.state.name for t in runs if t.name == "train-lstm")
print(json.dumps({"model_dir": r.models[0].model_dir, "cosine": r.models[0].cosine, "train": state}))
"""


def test_project_imports_are_read_from_the_source_function_level_ones_included():
    from tasks.caching import project_imports

    found = project_imports("tasks.training")
    # tasks/training.py imports lvm.train.* inside its task function; the trainer imports evaluation and models
    assert {"lvm.train.trainer", "lvm.train.checkpoint", "lvm.evaluation.metrics", "lvm.models.lstm",
            "lvm.util.hardware", "lvm.train.losses"} <= found
    assert not any(m.startswith("flows") for m in found) and "lvm.server" not in found


def test_a_function_moved_to_a_new_module_then_edited_there_is_not_served_from_the_cache(tmp_path):
    from lvm.data.dataset import write_table

    src = tmp_path / "src"
    for pkg in ("lvm", "tasks", "flows"):
        shutil.copytree(ROOT / pkg, src / pkg, ignore=shutil.ignore_patterns("__pycache__"))
    table = tmp_path / "table.parquet"
    write_table(make_table(n_articles=12, length=14, dim=16), table)
    trainer, optim = src / "lvm" / "train" / "trainer.py", src / "lvm" / "optim.py"
    text = trainer.read_text()
    start = text.index("def _make_optimizer(")
    moving = text[start:text.index("\n\n\n", start) + 1]  # the whole function
    assert "torch.optim.AdamW(groups, lr=cfg.lr, fused=True)" in moving

    with prefect_harness(tmp_path / "data"):
        from prefect.settings import PREFECT_API_URL

        env = {**os.environ, "PYTHONPATH": str(src), "PREFECT_API_URL": PREFECT_API_URL.value()}

        def run() -> dict:
            p = subprocess.run([sys.executable, "-c", RUN, str(table)], env=env, cwd=tmp_path, capture_output=True,
                               text=True, timeout=300)
            assert p.returncode == 0, p.stderr[-3000:]
            return json.loads(p.stdout.strip().splitlines()[-1])

        first = run()
        assert first["train"] == "Completed"
        again = run()
        assert again["train"] == "Cached" and again["model_dir"] == first["model_dir"]

        # the move: the optimizer's construction out of the trainer into a new module lvm/optim.py
        optim.write_text('"""The optimizer."""\n\nfrom __future__ import annotations\n\nimport torch\n\n\n' + moving)
        trainer.write_text(text.replace(moving, "").replace(
            "from lvm.train.config import TrainConfig\n",
            "from lvm.optim import _make_optimizer\nfrom lvm.train.config import TrainConfig\n"))
        moved = run()
        assert moved["train"] == "Completed" and moved["model_dir"] != first["model_dir"]
        assert moved["cosine"] == first["cosine"]  # the same maths, really re-run

        # an edit of the new module alone (SGD instead of AdamW): a hand-kept module list would miss it
        optim.write_text(optim.read_text().replace("torch.optim.AdamW(groups, lr=cfg.lr, fused=True)",
                                                   "torch.optim.SGD(groups, lr=cfg.lr)"))
        edited = run()
        assert edited["train"] == "Completed" and edited["model_dir"] != moved["model_dir"]
        assert edited["cosine"] != moved["cosine"]


def test_a_rerun_under_another_prefect_home_recomputes_where_it_crashed(tmp_path):
    """Issue #28, 12: the cache records live in the data folder, the results under $PREFECT_HOME/storage; a re-run
    under another home found a record whose result it could not read and died ("outside of the base path"). Such a
    record is now a cache miss: the task recomputes, and the home's own result serves the next run."""
    from lvm.data.dataset import write_table

    table = tmp_path / "table.parquet"
    write_table(make_table(n_articles=12, length=14, dim=16), table)
    with prefect_harness(tmp_path / "data"):
        from prefect.settings import PREFECT_API_URL

        def run(home: str) -> dict:
            env = {**os.environ, "PYTHONPATH": str(ROOT), "PREFECT_API_URL": PREFECT_API_URL.value(),
                   "PREFECT_HOME": str(tmp_path / home)}
            env.pop("PREFECT_RESULTS_LOCAL_STORAGE_PATH", None)
            env.pop("PREFECT_LOCAL_STORAGE_PATH", None)
            p = subprocess.run([sys.executable, "-c", RUN, str(table)], env=env, cwd=tmp_path, capture_output=True,
                               text=True, timeout=300)
            assert p.returncode == 0, p.stderr[-3000:]
            return json.loads(p.stdout.strip().splitlines()[-1])

        first = run("home-a")
        assert first["train"] == "Completed" and any((tmp_path / "home-a" / "storage").iterdir())
        other = run("home-b")
        assert other["train"] == "Completed" and other["cosine"] == first["cosine"]
        assert run("home-b")["train"] == "Cached"
        shutil.rmtree(tmp_path / "home-b" / "storage")  # the results gone, the records kept
        assert run("home-b")["train"] == "Completed"

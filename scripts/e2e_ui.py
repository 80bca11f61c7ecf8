"""End-to-end check in a real browser: a Prefect server, one training flow run, and headless Chromium showing the
run, its progress and its artifacts in the Prefect UI. Screenshots go to data/e2e/. Used by `make e2e`.

Steps: start `prefect server start` on a free loopback port; run the train flow against it (tiny models, the
built-in corpus with the hash encoder, so it takes about a minute); then load the flow-run page, its artifacts tab
and the decision artifact in Chromium, check the rendered DOM for what a person must see, and save screenshots.
Then what `make server` sets up on first use: the deployments of prefect.yaml on a process work pool, an empty
data/corpus given the sample, and a run of lvm-train started with the deployment's defaults (the UI's quick run),
picked up by a worker: it must complete (a few minutes: the bundled encoder, three trainings), and the deployments
page and that run's page must show it.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-dev-shm-usage", "--hide-scrollbars", "--window-size=1400,1000"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(url: str, timeout: float = 120) -> None:
    end = time.time() + timeout
    while time.time() < end:
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(f"{url} did not answer within {timeout:.0f} s")


def api(base: str, path: str, body: dict | None = None):
    req = urllib.request.Request(base + path, data=json.dumps(body).encode() if body is not None else None,
                                 headers={"Content-Type": "application/json"}, method="POST" if body else "GET")
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.loads(r.read())


def chromium(url: str, profile: Path, screenshot: Path | None = None, budget_ms: int = 20000) -> str:
    """Render `url` (letting the single-page app run for `budget_ms` of virtual time); return the DOM text."""
    exe = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if not exe:
        raise SystemExit("Chromium not found: install Debian's `chromium` package (apt-get install chromium)")
    base = [exe, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", f"--virtual-time-budget={budget_ms}"]
    if screenshot:
        subprocess.run([*base, f"--screenshot={screenshot}", url], check=True, capture_output=True, timeout=120)
    res = subprocess.run([*base, "--dump-dom", url], check=True, capture_output=True, text=True, timeout=120)
    return res.stdout


def deployment_run(base: str, env: dict, tmp: Path, profile: Path, out: Path) -> list:
    """What `make server` sets up, then what a person does in the UI: the deployments page, a run of lvm-train
    started with the deployment's own defaults (the UI's quick run: no parameters given) on a project whose
    data/corpus was empty (the sample goes there), picked up by a process worker. Failures: a list of (what, why)."""
    prefect = str(Path(sys.executable).with_name("prefect"))
    project = tmp / "project"  # the deployments' working directory: the code, and a data/corpus of its own
    project.mkdir()
    for name in ("lvm", "tasks", "flows", "prefect.yaml"):
        (project / name).symlink_to(ROOT / name)
    env = {**env, "LVM_PROJECT_DIR": str(project), "LVM_DATA_DIR": str(project / "data")}
    from lvm.ingest.corpus import write_sample_corpus

    print(f"sample corpus: {write_sample_corpus(project / 'data' / 'corpus')} files")
    subprocess.run([prefect, "work-pool", "create", "lvm-local", "--type", "process"], env=env, cwd=project,
                   check=True, capture_output=True, timeout=120)
    subprocess.run([prefect, "--no-prompt", "deploy", "--all", "--prefect-file", "prefect.yaml"], env=env,
                   cwd=project, check=True, capture_output=True, timeout=300)
    dep = api(base, "/api/deployments/name/lvm-train/lvm-train")
    run = api(base, f"/api/deployments/{dep['id']}/create_flow_run", {"state": {"type": "SCHEDULED"}})
    worker = subprocess.Popen([prefect, "worker", "start", "--pool", "lvm-local"], env=env, cwd=project,
                              stdout=open(tmp / "worker.log", "w"), stderr=subprocess.STDOUT)
    try:
        end, state = time.time() + 1500, None
        while time.time() < end:
            state = api(base, f"/api/flow_runs/{run['id']}")["state"]
            if state and state["type"] in ("COMPLETED", "FAILED", "CRASHED", "CANCELLED"):
                break
            time.sleep(5)
    finally:
        worker.terminate()
        worker.wait(timeout=60)
    failures = []
    name = state["name"] if state else "never started"
    print(f"deployment run lvm-train/lvm-train with its defaults: {name}")
    if not state or state["type"] != "COMPLETED":
        print((tmp / "worker.log").read_text()[-4000:])
        failures.append(("deployment run", name))
    checks = {"deployments.png": ("/deployments", ["lvm-train", "lvm-build-dataset"]),
              "deployment_run.png": (f"/runs/flow-run/{run['id']}", ["lvm-train", "Completed"])}
    for shot, (url, needles) in checks.items():
        dom = chromium(base + url, profile, out / shot)
        missing = [n for n in needles if n not in dom]
        print(f"{shot}: {base + url} -> {'ok' if not missing else 'missing ' + str(missing)}")
        if missing:
            failures.append((shot, missing))
    return failures


def main() -> int:
    out = ROOT / "data" / "e2e"
    out.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="lvm-e2e-"))
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {**os.environ, "PREFECT_HOME": str(tmp / "prefect"), "PREFECT_API_URL": f"{base}/api",
           "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "LVM_DATA_DIR": str(tmp / "data"), "PYTHONUNBUFFERED": "1"}
    prefect = str(Path(sys.executable).with_name("prefect"))
    server = subprocess.Popen([prefect, "server", "start", "--host", "127.0.0.1", "--port", str(port)], env=env,
                              stdout=open(tmp / "server.log", "w"), stderr=subprocess.STDOUT)
    try:
        wait_for(f"{base}/api/health")
        print(f"prefect server on {base}")
        code = ("from flows.train_lvm import train_lvm\n"
                "r = train_lvm(data='builtin', encoder='hash:32', epochs=3, architectures=['lstm', 'gru', 'mamba2'],"
                " model_options={'*': {'hidden': 32, 'layers': 1}}, baseline_threshold=0.9, deploy_threshold=0.95)\n"
                "print('RUN_DIR', r.run_dir)\n")
        res = subprocess.run([sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True, text=True,
                             timeout=600)
        if res.returncode != 0:
            print(res.stdout[-3000:], res.stderr[-3000:])
            return 1
        run_dir = next(line.split(" ", 1)[1] for line in res.stdout.splitlines() if line.startswith("RUN_DIR"))
        run_id = json.loads(Path(run_dir, "run.json").read_text())["flow_run_id"]
        print(f"flow run {run_id} finished")

        arts = api(base, "/api/artifacts/filter", {"artifacts": {"flow_run_id": {"any_": [run_id]}}})
        kinds = sorted({a["type"] for a in arts})
        progress = [a for a in arts if a["type"] == "progress"]
        assert {"markdown", "table", "progress"} <= set(kinds), kinds
        assert len(progress) == 3 and all(float(a["data"]) == 100.0 for a in progress), progress

        profile = tmp / "chromium"
        by_key = {a.get("key"): a for a in arts if a.get("key")}
        checks = {  # page → what a person must be able to read on it
            "flow_run.png": (f"/runs/flow-run/{run_id}", ["lvm-train", "Completed", "lstm epoch 3/3", "val_cos"]),
            "decision.png": (f"/artifacts/artifact/{by_key['lvm-decision']['id']}", ["INVESTIGATE", "ridge"]),
            "table.png": (f"/artifacts/artifact/{by_key['lvm-models-vs-baselines']['id']}",
                          ["global_mean", "context_mean", "lstm", "mrr"]),
            "progress.png": (f"/artifacts/artifact/{progress[0]['id']}", ["Progress: 100%"]),
        }
        failures = []
        for name, (url, needles) in checks.items():
            url = base + url
            dom = chromium(url, profile, out / name)
            missing = [n for n in needles if n not in dom]
            print(f"{name}: {url} -> {'ok' if not missing else 'missing ' + str(missing)}")
            if missing:
                failures.append((name, missing))
        failures += deployment_run(base, env, tmp, profile, out)
        print(f"screenshots in {out}")
        return 1 if failures else 0
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())

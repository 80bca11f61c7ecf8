"""Task runners for the trainings and the per-document embedding: threads (default), processes, or a Dask cluster.

Dask: `make_runner("dask", workers)` starts a temporary `distributed.LocalCluster` (`workers` processes, one
thread each) for the duration of the `with` block; `make_runner("dask", dask_address="tcp://host:8786")` uses an
existing scheduler. Data never travels through Dask: tasks pass paths on storage that every worker can read (the
sentence table, the split, model folders, embedding caches, all under LVM_DATA_DIR), and small JSON-able records.

Every worker must report to the flow's Prefect server and write under the flow's data folder:
- the API URL of the server the flow uses is exported (PREFECT_API_URL) and put into the settings that Prefect
  serialises with each task, so workers never start temporary servers of their own (their task runs, logs and
  artifacts would be invisible);
- a temporary LocalCluster gets LVM_DATA_DIR pinned to the flow's data folder;
- on an external cluster the workers must be started with LVM_DATA_DIR pointing at the same shared folder (same
  path on every machine) and the flow's PREFECT_API_URL must be reachable from them. Both are checked when the
  runner starts: a mismatch is an error that says what to set, not a run that fails at evaluation.
"""

from __future__ import annotations

import functools
import os
import socket
from urllib.parse import urlparse


def share_api_url() -> str:
    """Child processes must report to this flow's Prefect server. The URL of the server in use (the temporary one
    when PREFECT_API_URL is unset) is exported before a pool starts its workers, and returned. It is always
    overwritten with the server in use: a URL left in the environment by an earlier server (a test harness that
    has stopped) would send the children to a dead server."""
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        url = str(client.api_url).rstrip("/")
    os.environ["PREFECT_API_URL"] = url
    return url


def _worker_facts() -> dict:
    """Run on every worker of an external cluster: its machine and where it would write (what check_workers uses;
    the server a worker calls is the one the flow serialises with each task)."""
    from lvm.util.paths import data_dir

    return {"host": socket.gethostname(), "data_dir": str(data_dir())}


def check_workers(facts: dict[str, dict], data_dir: str, api_url: str) -> None:
    """Raise a clear error when a worker of an external cluster would write outside the flow's data folder, or
    could not reach the flow's Prefect server (a loopback URL and a worker on another machine)."""
    problems = []
    wrong = {w: f["data_dir"] for w, f in facts.items() if f["data_dir"] != data_dir}
    if wrong:
        problems.append(f"workers {sorted(wrong)} would write under {sorted(set(wrong.values()))} but this flow reads "
                        f"{data_dir}: start every worker with LVM_DATA_DIR={data_dir} (a folder on storage shared by "
                        "all machines, mounted at the same path)")
    host = urlparse(api_url).hostname or ""
    if host in ("127.0.0.1", "localhost", "::1"):
        remote = sorted(w for w, f in facts.items() if f["host"] != socket.gethostname())
        if remote:
            problems.append(f"the flow reports to {api_url}, which workers {remote} on other machines cannot reach: "
                            "run `prefect server start --host 0.0.0.0` and set "
                            "PREFECT_API_URL=http://<server>:4200/api "
                            "for the flow and the workers")
    if problems:
        raise RuntimeError("the Dask cluster is not set up for this flow:\n- " + "\n- ".join(problems))


@functools.cache
def _dask_runner_class():
    from prefect_dask import DaskTaskRunner

    class LVMDaskTaskRunner(DaskTaskRunner):
        """DaskTaskRunner that pins the Prefect server for its tasks and checks an external cluster's workers."""

        def __enter__(self):
            from prefect.settings import PREFECT_API_URL, temporary_settings

            from lvm.util.paths import data_dir

            url = share_api_url()
            # Prefect serialises the settings context with each task; in a flow on a temporary server that context
            # has no API URL, and each Dask worker would start a server of its own. Pin the URL for our tasks.
            self._pinned = temporary_settings(updates={PREFECT_API_URL: url})
            self._pinned.__enter__()
            try:
                super().__enter__()
                if self.address:
                    facts = self.client.run(_worker_facts)
                    check_workers(facts, str(data_dir()), url)
            except BaseException as exc:
                self._exit_all(type(exc), exc, exc.__traceback__)
                raise
            return self

        def _exit_all(self, *args):
            try:
                super().__exit__(*args)
            finally:
                pinned, self._pinned = getattr(self, "_pinned", None), None
                if pinned is not None:
                    pinned.__exit__(*args)

        def __exit__(self, *args):
            self._exit_all(*args)

    return LVMDaskTaskRunner


def make_runner(kind: str, workers: int | None = None, dask_address: str | None = None):
    """A task runner to use as a context manager. Processes give each training its own interpreter and torch
    thread pool (no GIL contention, no oversubscription: workers × threads ≤ cores). `workers` defaults to the
    number of cores (ignored with `dask_address`: the cluster has the workers it has)."""
    workers = workers or os.cpu_count() or 1
    if kind == "processes":
        from prefect.task_runners import ProcessPoolTaskRunner

        share_api_url()
        return ProcessPoolTaskRunner(max_workers=workers)
    if kind == "threads":
        from prefect.task_runners import ThreadPoolTaskRunner

        return ThreadPoolTaskRunner(max_workers=workers)
    if kind == "dask":
        from lvm.util.paths import data_dir

        runner = _dask_runner_class()
        if dask_address:
            return runner(address=dask_address)
        return runner(cluster_kwargs={"n_workers": workers, "threads_per_worker": 1, "processes": True,
                                      "env": {"LVM_DATA_DIR": str(data_dir())}})
    raise ValueError(f"unknown runner {kind!r}: choose processes, threads or dask")

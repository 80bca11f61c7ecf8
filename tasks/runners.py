"""Task runners for the trainings: processes (default), threads, or a Dask cluster."""

from __future__ import annotations


def share_api_url() -> None:
    """Child processes must report to this flow's Prefect server. Without PREFECT_API_URL each would start a
    temporary server of its own (~8 s each, and their runs and artifacts would be invisible), so the URL of the
    server in use is exported before the pool starts its workers."""
    import os

    from prefect.client.orchestration import get_client

    if not os.environ.get("PREFECT_API_URL"):
        with get_client(sync_client=True) as client:
            os.environ["PREFECT_API_URL"] = str(client.api_url).rstrip("/")


def make_runner(kind: str, workers: int, dask_address: str | None = None):
    """A task runner to use as a context manager. Processes give each training its own interpreter and torch
    thread pool (no GIL contention, no oversubscription: workers × threads ≤ cores)."""
    if kind == "processes":
        from prefect.task_runners import ProcessPoolTaskRunner

        share_api_url()
        return ProcessPoolTaskRunner(max_workers=workers)
    if kind == "threads":
        from prefect.task_runners import ThreadPoolTaskRunner

        return ThreadPoolTaskRunner(max_workers=workers)
    if kind == "dask":
        from prefect_dask import DaskTaskRunner

        share_api_url()
        if dask_address:
            return DaskTaskRunner(address=dask_address)
        return DaskTaskRunner(cluster_kwargs={"n_workers": workers, "threads_per_worker": 1, "processes": True})
    raise ValueError(f"unknown runner {kind!r}: choose processes, threads or dask")

"""Scale-out on Dask (issue #7): the train and dataset flows on a real distributed.LocalCluster of two worker
processes, against the local runners; and the sharded sentence table (lvm.data.shards) with memory-mapped vectors."""

import json
import os
from pathlib import Path

import numpy as np
import pytest
from conftest import copy_sotu12, make_table, prefect_harness

TINY = {"*": {"hidden": 32, "layers": 1}}
ARCHS = ["lstm", "gru", "mamba2"]


@pytest.fixture(scope="module", autouse=True)
def harness(tmp_path_factory):
    """One Prefect server for the module (environment restored afterwards, see conftest.prefect_harness)."""
    root = tmp_path_factory.mktemp("lvm-dask")
    with prefect_harness(root / "data-local"):
        yield root


@pytest.fixture(scope="module")
def sotu_corpus(harness, corpus_dir):
    return copy_sotu12(corpus_dir, harness / "sotu12")


@pytest.fixture(scope="module")
def sotu_table(sotu_corpus):
    from flows.build_dataset import build_dataset_flow

    return build_dataset_flow(corpus=str(sotu_corpus), encoder="hash:32")


def _task_runs(flow_run_id):
    from prefect import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    with get_client(sync_client=True) as c:
        return c.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))


def test_dataset_flow_embeds_documents_on_dask_workers(sotu_corpus, sotu_table, harness):
    """runner="dask": one task per document on a temporary LocalCluster; the same table as the local runner."""
    from flows.build_dataset import build_dataset_flow
    from lvm.data.dataset import read_table

    # the workers (spawned inside the flow) get a fresh embedding cache and refresh Prefect's cache records (kept
    # where tasks.caching was first imported), so every document is really embedded again, on the workers
    os.environ.update(LVM_DATA_DIR=str(harness / "data-dask-embed"), PREFECT_TASKS_REFRESH_CACHE="true")
    try:
        state = build_dataset_flow(corpus=str(sotu_corpus), encoder="hash:32", runner="dask", workers=2,
                                   out=str(harness / "dask-embedded.parquet"), return_state=True)
    finally:
        os.environ["LVM_DATA_DIR"] = str(harness / "data-local")
        del os.environ["PREFECT_TASKS_REFRESH_CACHE"]
    local, dask = read_table(sotu_table), read_table(state.result())
    assert np.array_equal(local.vectors, dask.vectors) and list(local.article_id) == list(dask.article_id)
    assert list((harness / "data-dask-embed" / "cache" / "embeddings" / "hash_32").glob("*.npy"))
    embeds = [t for t in _task_runs(state.state_details.flow_run_id) if t.name.startswith("embed-")]
    assert len(embeds) == 12 and {t.state.name for t in embeds} == {"Completed"}


def test_train_flow_on_two_dask_workers_matches_the_process_runner(sotu_table, harness):
    """Three trainings on an existing cluster of two worker processes (one thread each): they run on both workers,
    report to this flow's Prefect server (task runs, results, progress artifacts), and give bit-identical models and
    held-out metrics to runner="processes" with the same seeds."""
    from distributed import LocalCluster
    from prefect import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    from flows.train_lvm import train_lvm

    kw = dict(data=sotu_table, architectures=ARCHS, epochs=2, model_options=TINY, workers=2,
              train_options={"threads": 1}, baseline_threshold=0.99, deploy_threshold=0.99)
    local = train_lvm(runner="processes", **kw)

    data_b = harness / "data-dask"
    os.environ["LVM_DATA_DIR"] = str(data_b)  # the flow and the workers write here: new model folders
    try:
        # Prefect's cache records are kept where tasks.caching was imported (the first data folder), so the
        # workers are told to refresh: the trainings really run again, on Dask
        with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                          env={"LVM_DATA_DIR": str(data_b), "PREFECT_TASKS_REFRESH_CACHE": "true"}) as cluster:
            workers = {w.name for w in cluster.workers.values()}
            dask = train_lvm(runner="dask", dask_address=cluster.scheduler_address, **kw)
    finally:
        os.environ["LVM_DATA_DIR"] = str(harness / "data-local")

    assert dask.failed == {} and [m.arch for m in dask.models] == [*ARCHS, "ensemble"]
    run_id = json.loads(Path(dask.run_dir, "run.json").read_text())["flow_run_id"]
    trains = {t.name: t for t in _task_runs(run_id) if t.name.startswith("train-")}
    assert {t.state.name for t in trains.values()} == {"Completed"}, trains
    ran_on = {name: t.state.result()["ran_on"] for name, t in trains.items()}
    assert {r["dask_worker"] for r in ran_on.values()} == workers, ran_on
    with get_client(sync_client=True) as c:
        arts = c.read_artifacts(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run_id])))
    assert sum(a.type == "progress" for a in arts) == len(ARCHS)  # created on the workers, seen by this server

    for a, b in zip(local.models, dask.models):
        assert a.arch == b.arch and Path(b.model_dir).is_relative_to(data_b)
        assert (Path(a.model_dir, "model.safetensors").read_bytes()
                == Path(b.model_dir, "model.safetensors").read_bytes())
        assert a.metrics == b.metrics, a.arch
    assert local.baselines == dask.baselines


def test_external_cluster_checks(tmp_path):
    """Workers that would write outside the flow's data folder, or cannot reach a loopback server, are refused
    before anything runs, with what to set."""
    from tasks.runners import check_workers

    here = os.uname().nodename
    ok = {"tcp://a:1": {"host": here, "data_dir": "/shared/lvm", "api_url": ""}}
    check_workers(ok, "/shared/lvm", "http://127.0.0.1:4200/api")
    bad = {"tcp://a:1": {"host": here, "data_dir": "/home/w/data", "api_url": ""},
           "tcp://b:1": {"host": "other-machine", "data_dir": "/shared/lvm", "api_url": ""}}
    with pytest.raises(RuntimeError) as err:
        check_workers(bad, "/shared/lvm", "http://127.0.0.1:4200/api")
    assert "LVM_DATA_DIR=/shared/lvm" in str(err.value) and "tcp://a:1" in str(err.value)
    assert "prefect server start --host 0.0.0.0" in str(err.value) and "tcp://b:1" in str(err.value)


# ---------------------------------------------------------------------------------------------------- shards

def test_sharded_table_round_trip_with_memory_mapped_vectors(tmp_path):
    import pyarrow.parquet as pq
    import torch

    from lvm.data.dataset import read_table, write_table
    from lvm.data.shards import MANIFEST, iter_batches, materialize_vectors, open_sharded, write_shards
    from lvm.train.trainer import _as_tensor

    table = make_table(n_articles=20, length=13, dim=16)
    folder = write_shards(table, tmp_path / "tbl", rows_per_shard=50)
    manifest = json.loads((folder / MANIFEST).read_text())
    assert len(manifest["shards"]) > 3 and manifest["rows"] == len(table)
    assert all(s["rows"] % 13 == 0 for s in manifest["shards"])  # cut at article boundaries only
    write_table(table, tmp_path / "one.parquet")  # the very same schema and metadata as one file
    assert pq.read_schema(tmp_path / "one.parquet").equals(pq.read_schema(folder / "part-00000.parquet"),
                                                           check_metadata=True)

    back = read_table(folder)  # read_table dispatches a folder to lvm.data.shards.open_sharded
    assert isinstance(back.vectors, np.memmap) and Path(back.vectors.filename) == materialize_vectors(folder)
    assert np.array_equal(back.vectors, table.vectors) and back.meta == table.meta
    assert list(back.article_id) == list(table.article_id) and list(back.text) == list(table.text)
    assert np.array_equal(back.position, table.position)
    assert sum(b.num_rows for b in iter_batches(folder, ["position"], batch_size=30)) == len(table)
    tensor = _as_tensor(back.vectors, torch.device("cpu"))  # training uses the mapping itself, no copy
    assert tensor.data_ptr() == back.vectors.ctypes.data
    assert open_sharded(folder, text=False).text[0] == ""

    write_shards(make_table(n_articles=4, length=9, dim=16, seed=1), folder, rows_per_shard=50)  # replace
    assert len(read_table(folder)) == 36 and not list(tmp_path.glob(".tbl.*"))


def test_a_bad_shard_is_named_and_a_failed_write_leaves_nothing(tmp_path):
    import pyarrow.parquet as pq

    from lvm.data.schema import DataValidationError
    from lvm.data.shards import ShardWriter, write_shards
    from lvm.data.table import to_arrow

    table = make_table(n_articles=10, length=12, dim=8)
    folder = write_shards(table, tmp_path / "tbl", rows_per_shard=24)
    bad = folder / "part-00002.parquet"
    rows = pq.read_table(bad)
    vec = np.asarray(rows.column("vector").combine_chunks().flatten()).reshape(-1, 8).copy()
    vec[3, 0] = np.nan
    pq.write_table(to_arrow(np.asarray(rows.column("article_id").to_pylist(), dtype=object),
                            rows.column("position").to_numpy(), rows.column("text").to_pylist(), vec, {}), bad)
    from lvm.data.dataset import read_table

    with pytest.raises(DataValidationError) as err:
        read_table(folder)
    assert str(err.value).startswith(f"{bad}: failed validation") and "finite_values" in str(err.value)
    assert "first rows: 3" in str(err.value)

    # an article repeated in a later chunk: the writer refuses it, names the shard, and leaves no folder behind
    out = tmp_path / "dup"
    with pytest.raises(DataValidationError) as err:
        with ShardWriter(out, rows_per_shard=24) as w:
            w.write(table.article_id[:60], table.position[:60], table.text[:60], table.vectors[:60])
            w.write(table.article_id[:12], table.position[:12], table.text[:12], table.vectors[:12])
    assert "part-0000" in str(err.value) and "art00" in str(err.value)
    assert not out.exists() and not list(tmp_path.glob(".dup.*"))

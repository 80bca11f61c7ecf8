"""Flow: corpus → sentence table. Embedding is mapped over documents, each cached by its content and encoder."""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Optional, Union

from prefect import flow, get_run_logger
from prefect.task_runners import ThreadPoolTaskRunner

from lvm.data.dataset import file_hash
from lvm.ingest.backends import resolve_backend
from lvm.ingest.build import corpus_name
from lvm.ingest.corpus import corpus_fingerprint
from lvm.ingest.embedding import DEFAULT_GROUP, groups
from lvm.ingest.encoders import DEFAULT_ENCODER
from lvm.util.paths import data_dir
from tasks.caching import code_version
from tasks.data import announce_table, assemble_table_task, read_corpus_task
from tasks.embedding import embed_documents_task


def default_table_path(corpus: str | list[str], encoder: str | None) -> Path:
    stem = "+".join(corpus_name(c) for c in corpus) if isinstance(corpus, (list, tuple)) else corpus_name(corpus)
    enc = (encoder or DEFAULT_ENCODER).replace("/", "_").replace(":", "-")
    return data_dir() / f"{stem}.{enc}.parquet"


def _embed_on_dask(docs: list[dict], encoder: str | None, backend: str, workers: int | None,
                   dask_address: str | None) -> list[str]:
    """One task per document on Dask workers (each loads the encoder once: lvm.ingest.encoders caches per process).
    The biggest documents go first, so a long book does not start last and leave the other workers idle."""
    from tasks.runners import make_runner

    order = sorted(range(len(docs)), key=lambda i: -len(docs[i]["sentences"]))
    with make_runner("dask", workers, dask_address) as task_runner:
        futures = {i: task_runner.submit(embed_documents_task, {"docs": [docs[i]], "encoder": encoder,
                                                                 "backend": backend, "cache_dir": None})
                   for i in order}
        return [futures[i].result()[0] for i in range(len(docs))]


def _embed_local(docs: list[dict], encoder: str | None, backend: str) -> list[str]:
    """One task per group of about DEFAULT_GROUP sentences (whole documents): each fills the encoder's batches."""
    parts = groups([len(d["sentences"]) for d in docs], DEFAULT_GROUP)
    futures = [embed_documents_task.submit([docs[i] for i in g], encoder=encoder, backend=backend) for g in parts]
    return [p for f in futures for p in f.result()]


@flow(name="lvm-build-dataset", log_prints=True, task_runner=ThreadPoolTaskRunner(max_workers=1))
def build_dataset_flow(corpus: Union[str, list[str]] = "builtin", fmt: str = "auto", encoder: Optional[str] = None,
                       out: Optional[str] = None, runner: Literal["local", "dask"] = "local",
                       workers: Optional[int] = None, dask_address: Optional[str] = None,
                       backend: Optional[str] = None, notify: bool = True) -> str:
    """Read `corpus` (a file, a folder, WikiText raw, JSONL or `builtin`; or a list of them, whose document ids
    are then prefixed by each corpus's name), embed it and write a sentence table. Returns the table's path.

    Documents are cached one by one, so a re-run embeds only documents that changed; locally one task embeds a
    group of documents in shared batches. backend: torch | onnx | onnx-int8 (None: onnx for the bundled model).
    runner: "local" (in this process, one document at a time; torch uses every core) or "dask": a temporary
    LocalCluster of `workers` processes with one thread each (default: one per core), or the existing scheduler
    at `dask_address` (tcp://host:8786), whose workers must see the same LVM_DATA_DIR (see tasks/runners.py).
    notify: emit `lvm.dataset.updated` when the table's content changed (prefect.yaml's retrain trigger); the train
    flow turns it off for the table it builds itself, which it trains on at once."""
    logger = get_run_logger()
    corpora = list(corpus) if isinstance(corpus, (list, tuple)) else [corpus]
    out_path = str(out or default_table_path(corpus, encoder))
    docs = []
    for c in corpora:
        part = read_corpus_task(c, fmt, corpus_fingerprint(c), code_version("lvm.ingest.corpus"))
        if len(corpora) > 1:
            part = [{**d, "doc_id": f"{corpus_name(c)}/{d['doc_id']}"} for d in part]
        docs.extend(part)
    logger.info("%d documents, %d sentences", len(docs), sum(len(d["sentences"]) for d in docs))
    backend = resolve_backend(encoder, backend)
    if runner == "dask":
        vector_paths = _embed_on_dask(docs, encoder, backend, workers, dask_address)
    elif runner == "local":
        vector_paths = _embed_local(docs, encoder, backend)
    else:
        raise ValueError(f"unknown runner {runner!r}: choose local or dask")
    meta = {"encoder": encoder or DEFAULT_ENCODER, "encoder_backend": backend, "corpus": ",".join(corpora),
            "format": fmt}
    previous = file_hash(out_path) if Path(out_path).exists() else None
    table = assemble_table_task(docs, vector_paths, out_path, meta)
    if notify:
        announce_table(table, previous, ",".join(corpora), len(docs))
    return table


if __name__ == "__main__":
    print(build_dataset_flow())

"""Data tasks: read a corpus, assemble the table from the cached vectors, load + validate it, split it (embedding:
tasks/embedding.py)."""

from __future__ import annotations

from pathlib import Path

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.events import emit_event

from lvm.data.dataset import (
    DEFAULT_FRACTIONS,
    file_hash,
    read_table,
    save_split,
    split_articles,
    table_stats,
    warn_short_articles,
    write_table,
)
from lvm.data.table import DEFAULT_CONTEXT
from lvm.ingest.backends import load_encoder
from lvm.ingest.build import assemble_table, corpus_name
from lvm.ingest.corpus import Document, read_corpus
from lvm.ingest.embedding import embed_document, read_cached
from lvm.util.paths import runs_dir
from tasks.caching import by_file_content, by_inputs
from tasks.records import DatasetRecord, SplitRecord


@task(name="read-corpus", cache_policy=by_inputs(), persist_result=True, task_run_name="read-corpus")
def read_corpus_task(corpus: str, fmt: str = "auto", corpus_fingerprint: str = "",
                     reader_version: str = "") -> list[dict]:
    """Documents as small records (id, title, sentences). `corpus_fingerprint` makes the cache follow the files,
    `reader_version` (tasks.caching.code_version("lvm.ingest.corpus")) the reader's code."""
    return [{"doc_id": d.doc_id, "title": d.title, "sentences": d.sentences} for d in read_corpus(corpus, fmt)]


@task(name="assemble-table", cache_policy=by_inputs(), persist_result=True, task_run_name="assemble-table")
def assemble_table_task(docs: list[dict], vector_paths: list[str], out: str, meta: dict) -> str:
    """The cached vectors of every document as one table. An entry that went missing or corrupt since its
    embed task ran (that task's result is cached) is embedded again here, with a warning."""
    documents = [Document(d["doc_id"], d["title"], [], sentences=d["sentences"]) for d in docs]
    vectors = []
    for d, p in zip(documents, vector_paths):
        v = read_cached(Path(p), len(d.sentences))
        if v is None:  # the path is <cache_dir>/<encoder>/<key>.npy
            enc = load_encoder(meta.get("encoder"), meta.get("encoder_backend", "torch"))
            v, _ = embed_document(d, enc, Path(p).parents[1])
        vectors.append(v)
    write_table(assemble_table(documents, vectors, meta), out)
    return out


DATASET_UPDATED = "lvm.dataset.updated"  # the event prefect.yaml's retrain trigger expects


@task(name="announce-table", cache_policy=NO_CACHE, task_run_name="announce-table")
def announce_table(table: str, previous_sha256: str | None, corpus: str, documents: int) -> bool:
    """Emit DATASET_UPDATED when the table's content changed (new, changed or removed documents were embedded
    into it): a deployment trigger can then start a retrain without waiting for the weekly schedule."""
    sha = file_hash(table)
    if sha == previous_sha256:
        return False
    emit_event(DATASET_UPDATED, resource={"prefect.resource.id": f"lvm.dataset.{corpus_name(corpus)}",
                                          "prefect.resource.name": str(table)},
               payload={"table": str(table), "sha256": sha, "previous_sha256": previous_sha256, "corpus": corpus,
                        "documents": documents})
    get_run_logger().info("table %s changed: emitted %s", table, DATASET_UPDATED)
    return True


@task(name="load-and-validate", cache_policy=by_file_content(), persist_result=True, task_run_name="load-and-validate")
def load_and_validate(path: str, context: int = DEFAULT_CONTEXT) -> DatasetRecord:
    """Validate a sentence table; returns its path, content hash and stats (the cache key of everything after)."""
    table = read_table(path)
    short = warn_short_articles(table, context)  # they give no window: skipped, with a warning, not an error
    stats = table_stats(table, context)
    return DatasetRecord(path=str(Path(path).resolve()), sha256=file_hash(path), articles=stats["articles"],
                         sentences=stats["sentences"], dim=stats["dim"], encoder=table.meta.get("encoder", "unknown"),
                         windows=stats["windows"], mean_vector_norm=stats["mean_vector_norm"],
                         duplicate_rate=stats["duplicate_rate"], short_articles=len(short))


@task(name="split-by-article", cache_policy=by_inputs(), persist_result=True, task_run_name="split-by-article")
def split_dataset(dataset: DatasetRecord, fractions: tuple = DEFAULT_FRACTIONS, seed: int = 0,
                  method: str = "permutation") -> SplitRecord:
    """Article-disjoint split written as row indices beside the runs; returns its path and record."""
    split = split_articles(read_table(dataset.path, validate=False), tuple(fractions), seed, method=method)
    tag = "" if method == "permutation" else f"-{method}"  # permutation keeps the file names of earlier runs
    name = f"{dataset.sha256[:16]}-seed{seed}{tag}-{'-'.join(f'{f:g}' for f in fractions)}.json"
    path = save_split(split, runs_dir() / "splits" / name)
    return SplitRecord(path=str(path), **split.record())

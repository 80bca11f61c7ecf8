"""Flow: corpus → sentence table. Embedding is mapped over documents, each cached by its content and encoder."""

from __future__ import annotations

from pathlib import Path

from prefect import flow, get_run_logger
from prefect.task_runners import ThreadPoolTaskRunner

from lvm.corpus import corpus_fingerprint
from lvm.encoders import DEFAULT_ENCODER
from lvm.paths import data_dir
from tasks.data import assemble_table_task, embed_document_task, read_corpus_task


def default_table_path(corpus: str, encoder: str | None) -> Path:
    stem = "builtin" if corpus == "builtin" else Path(corpus).stem or "corpus"
    enc = (encoder or DEFAULT_ENCODER).replace("/", "_").replace(":", "-")
    return data_dir() / f"{stem}.{enc}.parquet"


@flow(name="lvm-build-dataset", log_prints=True, task_runner=ThreadPoolTaskRunner(max_workers=1))
def build_dataset_flow(corpus: str = "builtin", fmt: str = "auto", encoder: str | None = None,
                       out: str | None = None) -> str:
    """Read `corpus` (a file, a folder, WikiText raw, JSONL or `builtin`), embed it and write a sentence table.

    Returns the table's path. Documents are embedded one task each (mapped), so a re-run embeds only documents
    that changed, and a Dask task runner spreads them over workers."""
    logger = get_run_logger()
    out_path = str(out or default_table_path(corpus, encoder))
    docs = read_corpus_task(corpus, fmt, corpus_fingerprint(corpus))
    logger.info("%d documents, %d sentences", len(docs), sum(len(d["sentences"]) for d in docs))
    vector_paths = embed_document_task.map(docs, encoder=encoder).result()
    meta = {"encoder": encoder or DEFAULT_ENCODER, "corpus": corpus, "format": fmt}
    return assemble_table_task(docs, vector_paths, out_path, meta)


if __name__ == "__main__":
    print(build_dataset_flow())

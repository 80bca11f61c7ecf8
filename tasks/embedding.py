"""Embedding task: one task per group of documents (enough sentences to fill the encoder's batches), each
document still cached on its own (lvm.ingest.embedding), so a re-run embeds only documents that changed."""

from __future__ import annotations

from pathlib import Path

from prefect import task

from lvm.ingest.backends import load_encoder
from lvm.ingest.corpus import Document
from lvm.ingest.embedding import cache_path, embed_documents, encoder_key
from lvm.util.paths import embedding_cache_dir
from tasks.caching import by_inputs


@task(name="embed-documents", cache_policy=by_inputs(), persist_result=True, retries=2, retry_delay_seconds=2,
      task_run_name="embed-{docs[0][doc_id]}")
def embed_documents_task(docs: list[dict], encoder: str | None = None, backend: str = "torch",
                         cache_dir: str | None = None) -> list[str]:
    """Embed a group of documents in shared batches; returns the path of each document's vectors (.npy)."""
    enc = load_encoder(encoder, backend)
    documents = [Document(d["doc_id"], d["title"], [], sentences=d["sentences"]) for d in docs]
    cache = Path(cache_dir) if cache_dir else embedding_cache_dir()
    embed_documents(documents, enc, cache, group_sentences=max(1, sum(len(d.sentences) for d in documents)))
    return [str(cache_path(d, encoder_key(enc), cache)) for d in documents]

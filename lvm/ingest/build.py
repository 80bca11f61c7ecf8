"""Corpus → sentence table: read, split into sentences, embed (lvm.ingest.embedding: batched across documents,
cached per document), validate, write."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from lvm.data.dataset import write_table
from lvm.data.shards import write_shards
from lvm.data.table import SentenceTable
from lvm.ingest.backends import load_encoder, resolve_backend
from lvm.ingest.corpus import Document, read_corpus
from lvm.ingest.embedding import (
    DEFAULT_CACHE,
    DEFAULT_GROUP,
    RateLog,
    cache_root,
    embed_documents,
)
from lvm.ingest.encoders import Encoder
from lvm.ingest.row_checks import report_lines, table_row_report
from lvm.util.atomic import remove_stale_temporaries
from lvm.util.paths import check_output, default_dataset_path


def assemble_table(docs: list[Document], vectors: list[np.ndarray], meta: dict) -> SentenceTable:
    rows = [(d.doc_id, i, s) for d in docs for i, s in enumerate(d.sentences)]
    return SentenceTable.from_sentences(rows, np.concatenate(vectors) if vectors else np.zeros((0, 0)), meta)


def corpus_name(corpus: str | Path) -> str:
    """A corpus's short name: the prefix of its document ids when several corpora make one table, and part of the
    default table name."""
    return "builtin" if str(corpus) == "builtin" else Path(corpus).stem or "corpus"


def read_corpora(corpora: list[str | Path], fmt: str = "auto", detokenize: bool | None = None) -> list[Document]:
    """Several corpora as one list; with more than one, document ids are prefixed by their corpus's name."""
    if len(corpora) == 1:
        return read_corpus(corpora[0], fmt, detokenize)
    docs = []
    for c in corpora:
        name = corpus_name(c)
        for d in read_corpus(c, fmt, detokenize):
            d.doc_id = f"{name}/{d.doc_id}"
            docs.append(d)
    return docs


def build_dataset(corpus: str | Path | list, out: str | Path | None = None, fmt: str = "auto",
                  encoder: str | Encoder | None = None, cache_dir: Path | str | None = DEFAULT_CACHE, log=print,
                  detokenize: bool | None = None, backend: str | None = None,
                  group_sentences: int | None = None) -> dict:
    """Read, split, embed (cached per document, batched across documents) and write a validated sentence table.
    Returns a summary. `corpus` may be a list of corpora (each read with `fmt`). An `out` not ending in
    .parquet is written as a folder of Parquet shards (lvm.data.shards). out=None:
    lvm.util.paths.default_dataset_path(). detokenize: undo Moses tokenisation (None: WikiText and text that looks
    tokenised, see lvm.ingest.corpus.read_corpus). backend: torch | onnx | onnx-int8 (None:
    lvm.ingest.backends.resolve_backend); group_sentences <= 0 encodes one document per call."""
    corpora = list(corpus) if isinstance(corpus, (list, tuple)) else [corpus]
    out = Path(out) if out is not None else default_dataset_path()
    sharded = out.suffix.lower() != ".parquet"  # a folder of Parquet shards (lvm.data.shards), for big corpora
    check_output(out, corpora, folder=sharded)
    remove_stale_temporaries(out.parent, f".{out.name}.*")  # a killed build's half-written table
    cache_dir = cache_root(cache_dir)
    if not isinstance(encoder, Encoder):
        encoder = load_encoder(encoder, resolve_backend(encoder, backend))
    backend = getattr(encoder, "backend", "torch")  # hash:D has one path only
    docs = read_corpora(corpora, fmt, detokenize)
    corpus = ",".join(str(c) for c in corpora)
    log(f"read {len(docs)} documents, {sum(len(d.sentences) for d in docs)} sentences from {corpus}")
    vectors, hits = embed_documents(docs, encoder, cache_dir,
                                    DEFAULT_GROUP if group_sentences is None else group_sentences, RateLog(log))
    log(f"embedded with {encoder.name} ({encoder.dim}-D, {backend}): {len(docs) - hits} documents encoded, "
        f"{hits} from cache")
    table = assemble_table(docs, vectors, {"encoder": encoder.name, "encoder_backend": backend, "dim": encoder.dim,
                                           "corpus": str(corpus), "format": fmt})
    if sharded:
        write_shards(table, out)
    else:
        write_table(table, out, source=corpus)
    rows = table_row_report(table.text, encoder.name)
    for line in report_lines(rows):
        log(f"rows: {line}")
    counts = {k: v["count"] if isinstance(v, dict) else v for k, v in rows.items()}
    return {"row_checks": counts, "path": str(out), "articles": len(docs), "sentences": len(table), "dim": encoder.dim,
            "encoder": encoder.name, "backend": backend, "encoded_documents": len(docs) - hits,
            "cached_documents": hits}

"""Corpus → sentence table, with a per-document embedding cache.

Each document's vectors are cached under `cache_dir/<encoder>/<sha256 of its sentences>.npy`: adding one document
to a corpus embeds only that document, and re-running on an unchanged corpus embeds nothing.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import numpy as np

from lvm.corpus import Document, read_corpus
from lvm.atomic import write_atomic
from lvm.dataset import SentenceTable, write_table
from lvm.encoders import Encoder, get_encoder

DEFAULT_CACHE = Path("data/cache/embeddings")


def document_key(doc: Document, encoder_name: str) -> str:
    h = hashlib.sha256(encoder_name.encode())
    for s in doc.sentences:
        h.update(b"\x1e" + s.encode())
    return h.hexdigest()


def cache_path(doc: Document, encoder_name: str, cache_dir: Path) -> Path:
    """Where a document's vectors are cached: <cache_dir>/<encoder>/<document_key>.npy."""
    return Path(cache_dir) / re.sub(r"[^A-Za-z0-9_.-]+", "_", encoder_name) / f"{document_key(doc, encoder_name)}.npy"


def embed_document(doc: Document, encoder: Encoder, cache_dir: Path | None = DEFAULT_CACHE) -> tuple[np.ndarray, bool]:
    """(vectors [n, D], cache_hit) for one sentence-split document."""
    if cache_dir is None:
        return encoder.encode(doc.sentences), False
    path = cache_path(doc, encoder.name, cache_dir)
    if path.exists():
        vecs = np.load(path, allow_pickle=False)
        if vecs.shape == (len(doc.sentences), encoder.dim):
            return vecs, True
    vecs = encoder.encode(doc.sentences)
    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:  # a file object: given a name, numpy would append ".npy" to it
            np.save(f, vecs)

    write_atomic(path, write)
    return vecs, False


def assemble_table(docs: list[Document], vectors: list[np.ndarray], meta: dict) -> SentenceTable:
    rows = [(d.doc_id, i, s) for d in docs for i, s in enumerate(d.sentences)]
    return SentenceTable.from_sentences(rows, np.concatenate(vectors) if vectors else np.zeros((0, 0)), meta)


def corpus_name(corpus: str | Path) -> str:
    """A corpus's short name: the prefix of its document ids when several corpora make one table, and part of the
    default table name."""
    return "builtin" if str(corpus) == "builtin" else Path(corpus).stem or "corpus"


def read_corpora(corpora: list[str | Path], fmt: str = "auto") -> list[Document]:
    """Several corpora as one list; with more than one, document ids are prefixed by their corpus's name."""
    if len(corpora) == 1:
        return read_corpus(corpora[0], fmt)
    docs = []
    for c in corpora:
        name = corpus_name(c)
        for d in read_corpus(c, fmt):
            d.doc_id = f"{name}/{d.doc_id}"
            docs.append(d)
    return docs


def build_dataset(corpus: str | Path | list, out: str | Path, fmt: str = "auto", encoder: str | Encoder | None = None,
                  cache_dir: Path | None = DEFAULT_CACHE, log=print, backend: str | None = None,
                  group_sentences: int | None = None) -> dict:
    """Read, split, embed (cached per document, batched across documents: lvm.embedding) and write a validated
    sentence table. Returns a summary. `corpus` may be a list of corpora (each read with `fmt`).
    `backend`: torch | onnx | onnx-int8 (None: lvm.embedding.resolve_backend); `group_sentences` <= 0 encodes one
    document per call."""
    from lvm.embedding import DEFAULT_GROUP, embed_documents, resolve_backend

    backend = None if isinstance(encoder, Encoder) else resolve_backend(encoder, backend)
    enc = encoder if isinstance(encoder, Encoder) else get_encoder(encoder, backend=backend)
    backend = getattr(enc, "backend", "torch")  # hash:D has one path only
    corpora = list(corpus) if isinstance(corpus, (list, tuple)) else [corpus]
    docs = read_corpora(corpora, fmt)
    corpus = ",".join(str(c) for c in corpora)
    log(f"read {len(docs)} documents, {sum(len(d.sentences) for d in docs)} sentences from {corpus}")
    vectors, hits = embed_documents(docs, enc, cache_dir, DEFAULT_GROUP if group_sentences is None else group_sentences)
    log(f"embedded with {enc.name} ({enc.dim}-D, {backend}): {len(docs) - hits} documents encoded, {hits} from cache")
    table = assemble_table(docs, vectors, {"encoder": enc.name, "encoder_backend": backend, "dim": enc.dim,
                                           "corpus": str(corpus), "format": fmt})
    write_table(table, out)
    return {"path": str(out), "articles": len(docs), "sentences": len(table), "dim": enc.dim,
            "encoder": enc.name, "backend": backend, "encoded_documents": len(docs) - hits, "cached_documents": hits}

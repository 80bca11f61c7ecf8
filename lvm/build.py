"""Corpus → sentence table, with a per-document embedding cache.

Each document's vectors are cached under `cache_dir/<encoder>/<sha256 of its sentences>.npy`: adding one document
to a corpus embeds only that document, and re-running on an unchanged corpus embeds nothing. The key is the text
itself, so a change in how a corpus is read (e.g. its detokenising) gives new keys, never stale vectors. The default
cache is lvm.paths.embedding_cache_dir(), the one the flows use.
"""

from __future__ import annotations

import hashlib
import re
import sys
import warnings
from pathlib import Path

import numpy as np

from lvm.corpus import Document, read_corpus
from lvm.atomic import write_atomic
from lvm.dataset import SentenceTable, write_table
from lvm.encoders import Encoder, get_encoder
from lvm.paths import check_output, default_dataset_path, embedding_cache_dir

DEFAULT_CACHE = "default"  # cache_dir=DEFAULT_CACHE: lvm.paths.embedding_cache_dir(), read when called


def document_key(doc: Document, encoder_name: str) -> str:
    h = hashlib.sha256(encoder_name.encode())
    for s in doc.sentences:
        h.update(b"\x1e" + s.encode())
    return h.hexdigest()


def cache_path(doc: Document, encoder_name: str, cache_dir: Path) -> Path:
    """Where a document's vectors are cached: <cache_dir>/<encoder>/<document_key>.npy."""
    return Path(cache_dir) / re.sub(r"[^A-Za-z0-9_.-]+", "_", encoder_name) / f"{document_key(doc, encoder_name)}.npy"


def read_cached(path: Path, n: int, dim: int | None = None) -> np.ndarray | None:
    """A cache entry's vectors [n, dim], or None when it is missing. A corrupt entry (truncated, not a .npy,
    wrong shape or dtype) is deleted with a warning naming it, so the caller embeds the document again."""
    path = Path(path)
    if not path.exists():
        return None
    try:
        vecs = np.load(path, allow_pickle=False)
        ok = (vecs.ndim == 2 and vecs.shape[0] == n and (dim is None or vecs.shape[1] == dim)
              and vecs.dtype == np.float32)
        why = f"shape {vecs.shape} {vecs.dtype}, expected ({n}, {dim if dim is not None else 'D'}) float32"
    except (ValueError, OSError, EOFError) as exc:
        ok, why = False, str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    if ok:
        return vecs
    warnings.warn(f"{path}: corrupt embedding-cache entry ({why}); dropped, the document is embedded again",
                  stacklevel=2)
    path.unlink(missing_ok=True)
    return None


def _cache_dir(cache_dir) -> Path | None:
    return embedding_cache_dir() if isinstance(cache_dir, str) and cache_dir == DEFAULT_CACHE else cache_dir


def embed_document(doc: Document, encoder: Encoder, cache_dir: Path | str | None = DEFAULT_CACHE
                   ) -> tuple[np.ndarray, bool]:
    """(vectors [n, D], cache_hit) for one sentence-split document. cache_dir=None: no cache."""
    cache_dir = _cache_dir(cache_dir)
    if cache_dir is None:
        return encoder.encode(doc.sentences), False
    path = cache_path(doc, encoder.name, cache_dir)
    vecs = read_cached(path, len(doc.sentences), encoder.dim)
    if vecs is not None:
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
                  detokenize: bool | None = None) -> dict:
    """Read, split, embed (cached per document) and write a validated sentence table. Returns a summary.
    `corpus` may be a list of corpora (each read with `fmt`). out=None: lvm.paths.default_dataset_path().
    detokenize: undo Moses tokenisation (None: only for WikiText, see lvm.corpus.read_corpus)."""
    corpora = list(corpus) if isinstance(corpus, (list, tuple)) else [corpus]
    out = Path(out) if out is not None else default_dataset_path()
    check_output(out, corpora)
    cache_dir = _cache_dir(cache_dir)
    enc = encoder if isinstance(encoder, Encoder) else get_encoder(encoder)
    docs = read_corpora(corpora, fmt, detokenize)
    corpus = ",".join(str(c) for c in corpora)
    log(f"read {len(docs)} documents, {sum(len(d.sentences) for d in docs)} sentences from {corpus}")
    vectors, hits = [], 0
    from tqdm.auto import tqdm

    for d in tqdm(docs, desc="embedding documents", unit="doc", disable=len(docs) < 20, file=sys.stderr):
        v, hit = embed_document(d, enc, cache_dir)
        vectors.append(v)
        hits += hit
    log(f"embedded with {enc.name} ({enc.dim}-D): {len(docs) - hits} documents encoded, {hits} from cache")
    table = assemble_table(docs, vectors, {"encoder": enc.name, "dim": enc.dim, "corpus": str(corpus), "format": fmt})
    write_table(table, out, source=corpus)
    return {"path": str(out), "articles": len(docs), "sentences": len(table), "dim": enc.dim,
            "encoder": enc.name, "encoded_documents": len(docs) - hits, "cached_documents": hits}

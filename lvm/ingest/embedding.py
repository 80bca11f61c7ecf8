"""Embedding documents: the per-document cache, and encoder batches that cut across documents.

Each document's vectors are cached under `cache_dir/<encoder key>/<sha256 of its sentences>.npy`: adding one
document to a corpus embeds only that document, and re-running on an unchanged corpus embeds nothing. The key is the
text itself, so a change in how a corpus is read (e.g. its detokenising) gives new keys, never stale vectors, and it
names the backend (`<model>@<backend>`) for every backend but `torch`, so vectors of different backends never mix
and today's caches stay valid. The default cache is lvm.util.paths.embedding_cache_dir(), the one the flows use.

Encoding one document per call gives small documents small, badly padded batches. `embed_documents` pools the
sentences of every document that is not cached into groups of about `group_sentences` sentences (whole documents),
encodes each group in one call (the encoders sort by length inside a call, so each batch is padded to near its own
length), and cuts the vectors back into per-document cache entries.
"""

from __future__ import annotations

import hashlib
import re
import warnings
from pathlib import Path

import numpy as np

from lvm.util.atomic import remove_stale_temporaries, write_atomic
from lvm.util.paths import embedding_cache_dir

DEFAULT_CACHE = "default"  # cache_dir=DEFAULT_CACHE: lvm.util.paths.embedding_cache_dir(), read when called

DEFAULT_GROUP = 4096


def encoder_key(encoder) -> str:
    """The name the cache and the table's meta use: the model, plus `@backend` unless it is the torch path."""
    backend = getattr(encoder, "backend", "torch")
    return encoder.name if backend == "torch" else f"{encoder.name}@{backend}"


def cache_root(cache_dir) -> Path | None:
    return embedding_cache_dir() if isinstance(cache_dir, str) and cache_dir == DEFAULT_CACHE else cache_dir


def document_key(doc, encoder_name: str) -> str:
    h = hashlib.sha256(encoder_name.encode())
    for s in doc.sentences:
        h.update(b"\x1e" + s.encode())
    return h.hexdigest()


def cache_path(doc, encoder_name: str, cache_dir: Path) -> Path:
    """Where a document's vectors are cached: <cache_dir>/<encoder key>/<document_key>.npy."""
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


def write_cached(path: Path, vecs: np.ndarray) -> None:
    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:  # a file object: given a name, numpy would append ".npy" to it
            np.save(f, vecs)

    write_atomic(path, write)


def embed_document(doc, encoder, cache_dir: Path | str | None = DEFAULT_CACHE) -> tuple[np.ndarray, bool]:
    """(vectors [n, D], cache_hit) for one sentence-split document. cache_dir=None: no cache."""
    vectors, hits = embed_documents([doc], encoder, cache_root(cache_dir), group_sentences=0)
    return vectors[0], bool(hits)


def groups(sizes: list[int], group_sentences: int) -> list[list[int]]:
    """Indices of consecutive documents, cut once a group holds at least `group_sentences` sentences."""
    out, cur, n = [], [], 0
    for i, s in enumerate(sizes):
        cur.append(i)
        n += s
        if n >= group_sentences:
            out.append(cur)
            cur, n = [], 0
    return out + ([cur] if cur else [])


def embed_documents(docs: list, encoder, cache_dir: Path | None, group_sentences: int = DEFAULT_GROUP,
                    progress=None) -> tuple[list[np.ndarray], int]:
    """(vectors per document, cache hits). `group_sentences <= 0` encodes one document per call (the old path).
    `progress(done, total)` (sentences encoded so far, sentences to encode) is called after each encoded group,
    e.g. a `RateLog`."""
    key = encoder_key(encoder)
    paths = [cache_path(d, key, cache_dir) if cache_dir is not None else None for d in docs]
    if paths and paths[0] is not None:
        remove_stale_temporaries(paths[0].parent)  # what a killed build left (a live writer's file is seconds old)
    vectors: list[np.ndarray | None] = [None] * len(docs)
    for i, (d, p) in enumerate(zip(docs, paths)):
        if p is not None:
            vectors[i] = read_cached(p, len(d.sentences), encoder.dim)
    missing = [i for i, v in enumerate(vectors) if v is None]
    sizes = [len(docs[i].sentences) for i in missing]
    done, total = 0, sum(sizes)
    caching = True
    for group in (groups(sizes, group_sentences) if group_sentences > 0 else [[j] for j in range(len(missing))]):
        members = [missing[j] for j in group]
        sentences = [s for i in members for s in docs[i].sentences]
        flat = encoder.encode(sentences, progress=False) if progress else encoder.encode(sentences)
        start = 0
        for i in members:
            n = len(docs[i].sentences)
            vectors[i] = np.ascontiguousarray(flat[start:start + n], dtype=np.float32)
            start += n
            if paths[i] is not None and caching:
                try:
                    write_cached(paths[i], vectors[i])
                except OSError as exc:  # the cache only saves time: the build goes on without it, as an import's
                    caching = False
                    warnings.warn(f"{paths[i].parent}: the embedding cache cannot be written ({exc}); going on "
                                  "without it (a re-run embeds these documents again)", stacklevel=2)
        done += start
        if progress:
            progress(done, total)
    return vectors, len(docs) - len(missing)


class RateLog:
    """Progress of a long embedding as log lines ("embedded 120,000 / 936,000 sentences (12.8 %), 261 sentences/s,
    ETA 52 min"), at most one every `every` seconds and always the last; the cache makes a killed run resume where
    it stopped, so the count is of this run's sentences."""

    def __init__(self, log, every: float = 30.0, what: str = "embedded"):
        import time

        self.log, self.every, self.what, self._clock = log, every, what, time.monotonic
        self.start = self.last = self._clock()

    def __call__(self, done: int, total: int) -> None:
        now = self._clock()
        if now - self.last < self.every and done < total:
            return
        self.last = now
        rate = done / max(now - self.start, 1e-9)
        eta = (total - done) / rate if rate > 0 else float("inf")
        eta_text = f"{eta / 60:.0f} min" if eta >= 90 else f"{eta:.0f} s"
        self.log(f"{self.what} {done:,} / {total:,} sentences ({100 * done / max(total, 1):.1f} %), "
                 f"{rate:.0f} sentences/s, ETA {eta_text}")

"""Embedding many documents at once: encoder batches cut across documents, documents stay the cache unit.

Encoding one document per call gives small documents small, badly padded batches. Here the sentences of every
document that is not cached are pooled into groups of about `group_sentences` sentences (whole documents), each
group is encoded in one call (the encoders sort by length inside a call, so each batch is padded to near its own
length), and the vectors are cut back into per-document arrays and cached per document exactly as
`lvm.build.embed_document` does. The cache key names the backend (`<model>@<backend>`) for every backend but
`torch`, so vectors of different backends never mix and today's caches stay valid.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

BACKENDS = ("torch", "onnx", "onnx-int8")
DEFAULT_BACKEND = "onnx"  # exact to fp32 rounding; onnx-int8 missed the fidelity rule (see bench/EMBED_RESULTS.md)
DEFAULT_GROUP = 4096


def encoder_key(encoder) -> str:
    """The name the cache and the table's meta use: the model, plus `@backend` unless it is the torch path."""
    backend = getattr(encoder, "backend", "torch")
    return encoder.name if backend == "torch" else f"{encoder.name}@{backend}"


def resolve_backend(encoder_name: str | None, backend: str | None) -> str:
    """An explicit backend as given (checked); None: DEFAULT_BACKEND for the bundled model, whose fidelity was
    measured, `torch` for every other model."""
    from lvm.encoders import _BUNDLED_ALIASES, DEFAULT_ENCODER

    if backend is not None:
        if backend not in BACKENDS:
            raise ValueError(f"unknown encoder backend {backend!r}: choose one of {', '.join(BACKENDS)}")
        return backend
    name = (encoder_name or DEFAULT_ENCODER).lower()
    return DEFAULT_BACKEND if name in _BUNDLED_ALIASES or name == DEFAULT_ENCODER.lower() else "torch"


def _load(path: Path, n: int, dim: int) -> np.ndarray | None:
    """Cached vectors when the file is there, readable and of the right shape; anything else is a miss."""
    if not path.exists():
        return None
    try:
        vecs = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError):
        return None
    return vecs if vecs.shape == (n, dim) else None


def _store(path: Path, vecs: np.ndarray) -> None:
    from lvm.atomic import write_atomic

    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:  # a file object: given a name, numpy would append ".npy" to it
            np.save(f, vecs)

    write_atomic(path, write)


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
    `progress(n_sentences)` is called after each encoded group."""
    from lvm.build import cache_path

    key = encoder_key(encoder)
    paths = [cache_path(d, key, cache_dir) if cache_dir is not None else None for d in docs]
    vectors: list[np.ndarray | None] = [None] * len(docs)
    for i, (d, p) in enumerate(zip(docs, paths)):
        if p is not None:
            vectors[i] = _load(p, len(d.sentences), encoder.dim)
    missing = [i for i, v in enumerate(vectors) if v is None]
    sizes = [len(docs[i].sentences) for i in missing]
    for group in (groups(sizes, group_sentences) if group_sentences > 0 else [[j] for j in range(len(missing))]):
        members = [missing[j] for j in group]
        flat = encoder.encode([s for i in members for s in docs[i].sentences])
        start = 0
        for i in members:
            n = len(docs[i].sentences)
            vectors[i] = np.ascontiguousarray(flat[start:start + n], dtype=np.float32)
            start += n
            if paths[i] is not None:
                _store(paths[i], vectors[i])
        if progress:
            progress(start)
    return vectors, len(docs) - len(missing)

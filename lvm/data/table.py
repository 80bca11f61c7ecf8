"""The sentence table: its in-memory form, its one Arrow layout (one file or shards), the checks of its Arrow
columns, its windows and its content hash. Below lvm.data.dataset (reading, writing, splits), lvm.data.shards and
lvm.data.seed_npz, which all build on it.

Windows are never stored: a window is the row index of its target, its context the C rows before it in the same
article. That keeps a dataset at 1x the vectors on disk and in memory (the original `.npz` kept 6x).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

import lvm.defaults as defaults
from lvm.data.schema import Failure

META_KEY = b"lvm"
DEFAULT_CONTEXT = defaults.CONTEXT  # sentences of context per window (lvm.defaults)


@dataclass
class SentenceTable:
    article_id: np.ndarray  # object [N] of str
    position: np.ndarray  # int64 [N]
    text: np.ndarray  # object [N] of str
    vectors: np.ndarray  # float32 [N, D]
    meta: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.position)

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1])

    @property
    def articles(self) -> np.ndarray:
        """Article ids in table order, each once."""
        starts = np.r_[True, self.article_id[1:] != self.article_id[:-1]]
        return self.article_id[starts]

    @classmethod
    def from_sentences(cls, rows: list[tuple[str, int, str]], vectors: np.ndarray, meta: dict | None = None):
        return cls(
            article_id=np.array([r[0] for r in rows], dtype=object),
            position=np.array([r[1] for r in rows], dtype=np.int64),
            text=np.array([r[2] for r in rows], dtype=object),
            vectors=np.ascontiguousarray(vectors, dtype=np.float32),
            meta=dict(meta or {}),
        )


# ---------------------------------------------------------------------------------------------------- files

#: how every sentence table (one file or shards) is written
PARQUET_OPTIONS = {"compression": "zstd", "use_dictionary": ["article_id"],
                   "use_byte_stream_split": ["vector"], "row_group_size": 65536}


def to_arrow(article_id, position, text, vectors: np.ndarray, meta: dict) -> pa.Table:
    """The table's columns and metadata as Arrow: article_id, position, text, vector (fixed-size float32 list)."""
    return pa.table({
        "article_id": pa.array(np.asarray(article_id).astype(str).tolist(), pa.string()),
        "position": pa.array(np.asarray(position, dtype=np.int64), pa.int64()),
        "text": pa.array([str(t) for t in text], pa.string()),
        "vector": pa.FixedSizeListArray.from_arrays(pa.array(vectors.reshape(-1), pa.float32()), vectors.shape[1]),
    }).replace_schema_metadata({META_KEY: json.dumps(meta).encode()})


def failure(path, rule: str, message: str, rows=None) -> Failure:
    rows = [] if rows is None else [int(r) for r in rows]
    return Failure(rule, message, len(rows), rows[:10])


def null_rows(arr: pa.Array) -> np.ndarray:
    return np.flatnonzero(arr.is_null().to_numpy(zero_copy_only=False))


def vector_failures(path, col: pa.Array) -> list[Failure]:
    """The vector column must be one flat list of floats per row, without nulls: nothing else is coerced."""
    t = col.type
    if not (pa.types.is_fixed_size_list(t) or pa.types.is_list(t) or pa.types.is_large_list(t)):
        return [failure(path, "vector_type", f"the vector column must hold a list of D floats per row "
                      f"(fixed_size_list<float32>[D]); it holds {t}")]
    vt = t.value_type
    if pa.types.is_list(vt) or pa.types.is_large_list(vt) or pa.types.is_fixed_size_list(vt):
        return [failure(path, "vector_type", f"the vector column holds lists of lists ({t}); each row must be one "
                      "flat list of D floats")]
    if not pa.types.is_floating(vt):
        return [failure(path, "vector_type", f"vector values must be floating point; the column holds {t}")]
    out = []
    rows = null_rows(col)
    if len(rows):
        out.append(failure(path, "vector_not_null", "vector is null", rows))
    flat = col.flatten()  # the values of the non-null rows
    if flat.null_count:
        parents = pc.list_parent_indices(col).to_numpy()
        rows = np.unique(parents[null_rows(flat)])
        out.append(failure(path, "vector_not_null", "vector has null values", rows))
    return out


def position_failures(path, col: pa.Array) -> list[Failure]:
    """Positions are integers (0, 1, 2, ... per article); fractions, strings and nulls are refused, not cast."""
    out = []
    rows = null_rows(col)
    if len(rows):
        out.append(failure(path, "integer_positions", "position is null", rows))
    if pa.types.is_integer(col.type):
        return out
    if pa.types.is_floating(col.type):
        vals = col.to_numpy(zero_copy_only=False)
        bad = np.flatnonzero(~np.isfinite(vals) | (np.nan_to_num(vals) != np.round(np.nan_to_num(vals))))
        what = "fractional values" if len(bad) else "whole numbers, stored as floats: write them as int64"
        out.append(failure(path, "integer_positions", f"position must be integers; the column is {col.type} "
                         f"with {what}", bad if len(bad) else None))
    else:
        out.append(failure(path, "integer_positions", f"position must be integers; the column holds {col.type}"))
    return out


def file_sha256(path: str | Path, chunk: int = 1 << 20) -> str:
    """Content hash of one file (sha256 hex); a table's, sharded or not: lvm.data.dataset.file_hash."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


# ---------------------------------------------------------------------------------------------------- windows

def window_targets(article_id: np.ndarray, position: np.ndarray, context: int,
                   rows: np.ndarray | None = None) -> np.ndarray:
    """Row indices of every window's target (position >= context), optionally only among `rows` (a split).

    Requires rows sorted by (article, position) with contiguous positions, which read_table validates, so the
    context rows t-C..t-1 are always in the target's own article."""
    if context < 1:
        raise ValueError(f"context must be >= 1, got {context}")
    idx = np.flatnonzero(np.asarray(position) >= context)
    if rows is not None:
        idx = np.intersect1d(idx, rows, assume_unique=False)
    return idx.astype(np.int64)


def gather_windows(vectors: np.ndarray, targets: np.ndarray, context: int) -> tuple[np.ndarray, np.ndarray]:
    """(contexts [W, C, D], targets [W, D]) for the target rows ``targets``; contexts are rows t-C .. t-1."""
    targets = np.asarray(targets, dtype=np.int64)
    if targets.size and targets.min() < context:
        raise ValueError(f"target row {int(targets.min())} has fewer than context={context} rows before it")
    return vectors[targets[:, None] + np.arange(-context, 0)[None, :]], vectors[targets]


def article_so_far(vectors: np.ndarray, position: np.ndarray, chunk: int | None = None,
                   out: np.ndarray | None = None) -> np.ndarray:
    """float32 [N, D]: row r holds the mean of every earlier row of its article (zeros for an article's first row).

    For a window's target t this is the article input of a model built with article=True (lvm.models.base): the
    mean of the whole article before t, the context included, the same vector as the article_mean baseline's.
    Sums run in float64 over one article-sorted pass (rows sorted by article then position from 0), a chunk at a
    time, into `out` when given (e.g. a memory map, so that a memory-mapped table's rows need not fit in RAM)."""
    position = np.asarray(position, dtype=np.int64)
    chunk = chunk or max(1, (1 << 22) // max(vectors.shape[1], 1))  # ~4M float64 values per working array
    if out is None:
        out = np.zeros(vectors.shape, np.float32)
    elif out.shape != vectors.shape or out.dtype != np.float32:
        raise ValueError(f"out must be float32 {vectors.shape}, got {out.dtype} {out.shape}")
    running = np.zeros(vectors.shape[1])
    for s in range(0, len(position), chunk):
        block = np.asarray(vectors[s:s + chunk], dtype=np.float64)
        pos = position[s:s + chunk]
        cs = np.cumsum(block, axis=0)
        before = np.concatenate([running[None], running + cs[:-1]])  # sum of rows < r since the chunk's start
        # restart at every article start inside the chunk: subtract the running sum at that start
        first = np.flatnonzero(pos == 0)
        base = np.zeros_like(before)
        if len(first):
            seg = np.searchsorted(first, np.arange(len(pos)), side="right") - 1
            has = seg >= 0
            base[has] = before[first[seg[has]]]
        total = before - base
        n = pos[:, None].astype(np.float64)
        out[s:s + chunk] = np.where(n > 0, total / np.maximum(n, 1), 0.0)
        running = total[-1] + block[-1]
    return out

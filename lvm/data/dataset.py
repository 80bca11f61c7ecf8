"""Sentence tables on disk (read and validated, written atomically; Parquet, shards or a seed .npz) and
article-disjoint splits. The table itself, its Arrow layout and its windows: lvm.data.table."""

from __future__ import annotations

import hashlib
import json
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

import lvm.defaults as defaults
from lvm.data.schema import DataValidationError, Failure, duplicate_vector_report, short_articles, validate_arrays
from lvm.data.table import (
    DEFAULT_CONTEXT,
    META_KEY,
    PARQUET_OPTIONS,
    SentenceTable,
    failure,
    file_sha256,
    null_rows,
    position_failures,
    to_arrow,
    vector_failures,
    window_targets,
)
from lvm.util.atomic import write_atomic


def write_table(table: SentenceTable, path: str | Path, source: str | None = None) -> Path:
    """Validate, then write Parquet (zstd; byte-stream-split floats) to a temporary file and rename it in place.
    A validation failure names `source` (where the rows came from) when given, else `path`."""
    path = Path(path)
    validate_arrays(str(source or path), table.article_id, table.position, table.vectors)
    arrow = to_arrow(table.article_id, table.position, table.text, table.vectors, table.meta)
    return write_atomic(path, lambda tmp: pq.write_table(arrow, tmp, **PARQUET_OPTIONS))

DEFAULT_FRACTIONS = defaults.FRACTIONS  # train, val, test shares of the articles


def is_npz(path: str | Path) -> bool:
    """A seed `.npz` (by name, or by the zip archive's magic bytes: Parquet files start with PAR1)."""
    path = Path(path)
    if path.suffix.lower() == ".npz":
        return True
    try:
        with open(path, "rb") as f:
            return f.read(4) == b"PK\x03\x04"
    except OSError:
        return False


def is_table_path(data: str | Path) -> bool:
    """Whether `data` names a sentence table (Parquet, a folder of shards, or a seed `.npz`) rather than a corpus."""
    from lvm.data.shards import is_sharded

    s = str(data)
    return s.endswith(".parquet") or s.lower().endswith(".npz") or is_sharded(s)


def read_table(path: str | Path, validate: bool = True) -> SentenceTable:
    """Read and validate a sentence table: a Parquet file, a folder of shards, or a seed `.npz` (imported by
    lvm.data.seed_npz, cached by content). Any unreadable or invalid file raises DataValidationError naming it."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such dataset file")
    if path.is_dir():  # a folder of Parquet shards (lvm.data.shards): streamed validation, memory-mapped vectors
        from lvm.data.shards import open_sharded

        return open_sharded(path, validate=validate)
    if path.stat().st_size == 0:
        raise DataValidationError(str(path), [Failure("readable_parquet", "the file is empty (0 bytes)", 0, [])])
    if is_npz(path):
        return _read_npz_table(path, validate)
    try:
        arrow = pq.read_table(path)
    except (pa.ArrowException, OSError) as exc:
        raise DataValidationError(
            str(path),
            [Failure("readable_parquet", f"not a readable Parquet file, truncated or corrupt ({exc})", 0, [])]
        ) from None
    missing = {"article_id", "position", "vector"} - set(arrow.column_names)
    if missing:
        raise DataValidationError(str(path), [Failure("columns", f"missing columns {sorted(missing)}", 0, [])])
    aid_col = arrow.column("article_id").combine_chunks()
    pos_col = arrow.column("position").combine_chunks()
    col = arrow.column("vector").combine_chunks()
    failures = vector_failures(path, col) + position_failures(path, pos_col)
    rows = null_rows(aid_col)
    if len(rows):
        failures.append(failure(path, "non_empty_article_id", "article_id is null", rows))
    raw = (arrow.schema.metadata or {}).get(META_KEY)
    meta = {}
    if raw:
        try:
            meta = json.loads(raw)
        except ValueError as exc:
            failures.append(failure(path, "metadata", f"the table's `lvm` Parquet metadata is not valid JSON ({exc})"))
    if failures:
        raise DataValidationError(str(path), failures)
    article_id = np.array(aid_col.to_pylist(), dtype=object)
    position = pos_col.to_numpy(zero_copy_only=False).astype(np.int64)
    text = (np.array(["" if t is None else t for t in arrow.column("text").to_pylist()], dtype=object)
            if "text" in arrow.column_names else np.full(len(position), "", dtype=object))
    if pa.types.is_fixed_size_list(col.type):
        vectors = col.flatten().to_numpy(zero_copy_only=False).astype(np.float32).reshape(len(col), col.type.list_size)
    else:  # a plain list column may be ragged: validate per row, then stack
        ragged = [np.asarray(v, dtype=np.float32) for v in col.to_pylist()]
        if validate:
            validate_arrays(str(path), article_id, position, ragged)
        vectors = np.stack(ragged) if ragged else np.zeros((0, 0), np.float32)
    if validate:
        validate_arrays(str(path), article_id, position, vectors)
    return SentenceTable(article_id, position, text, vectors, meta)


def _read_npz_table(path: Path, validate: bool) -> SentenceTable:
    """A seed `.npz` as a sentence table: imported (and validated, naming the `.npz`) once, then read from a
    Parquet copy under the data folder's cache, keyed by the `.npz` file's content hash."""
    from lvm.data.seed_npz import check_members, import_npz
    from lvm.util.paths import npz_cache_dir

    digest = file_hash(path)
    cached = npz_cache_dir() / f"{digest}.parquet"
    if cached.is_file():
        try:
            table = read_table(cached, validate)
            shapes = check_members(path)
            n, c, d = shapes.get("context_sequences", (None,) * 3)
            m = table.meta
            if (m.get("source_sha256"), m.get("windows"), m.get("context"), table.dim) != (digest, n, c, d):
                raise DataValidationError(str(cached), [Failure(
                    "cache_matches_source", f"holds other data than {path} (sha256 {digest[:12]}..., {n} windows "
                    f"of {c} x {d}); it was replaced or is stale", 0, [])])
            table.meta["source"] = str(path)
            return table
        except DataValidationError as exc:
            warnings.warn(f"{cached}: unusable cached import of {path}, importing again ({exc})", stacklevel=2)
    table = import_npz(path)  # validated, errors name the .npz
    table.meta["source_sha256"] = digest
    try:
        write_table(table, cached)
    except OSError as exc:
        warnings.warn(f"{path}: imported, but the cached copy could not be written ({exc})", stacklevel=2)
    return table


def file_hash(path: str | Path) -> str:
    """Content hash of a table (sha256 hex): the cache key of everything derived from a dataset. A sharded
    table's folder is hashed by its manifest and shards (lvm.data.shards.folder_hash)."""
    if Path(path).is_dir():
        from lvm.data.shards import folder_hash

        return folder_hash(path)
    return file_sha256(path)


# ---------------------------------------------------------------------------------------------------- splits

@dataclass
class Split:
    """Row indices of each part; articles never straddle parts."""
    train: np.ndarray
    val: np.ndarray
    test: np.ndarray
    articles: dict  # part -> list of article ids
    seed: int
    fractions: tuple
    by_article: bool = True
    method: str = "permutation"  # SPLIT_METHODS: how articles were assigned to parts (a record without one: this)

    def part(self, name: str) -> np.ndarray:
        return getattr(self, name)

    def record(self) -> dict:
        """What goes into a run's metadata so the split can be audited and reproduced."""
        return {"seed": self.seed, "fractions": list(self.fractions), "by_article": self.by_article,
                "method": self.method,
                "articles": {k: len(v) for k, v in self.articles.items()},
                "rows": {k: int(len(self.part(k))) for k in ("train", "val", "test")},
                "article_ids_sha256": hashlib.sha256(json.dumps(self.articles, sort_keys=True).encode()).hexdigest()}


SPLIT_METHODS = ("hash", "permutation")
DEFAULT_SPLIT_METHOD = defaults.SPLIT_METHOD  # every command and the flow: a part never moves as the corpus grows


def hash_unit(article_id: str, seed: int) -> float:
    """sha256(seed, article id) as a number in [0, 1): an article's place in the hash split, whatever else is in
    the table."""
    digest = hashlib.sha256(f"{int(seed)}\0{article_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0 ** 64


def _hash_parts(uniq: list[str], fr: np.ndarray, seed: int) -> dict[str, np.ndarray]:
    """Each article's part from its own hash against the cumulative fractions. A part with a positive fraction
    left empty (tiny tables: three or more articles) takes the article of the largest part whose hash is nearest
    to the part's interval, with a warning: that article may move back once the corpus grows."""
    u = np.array([hash_unit(a, seed) for a in uniq])
    edges = np.cumsum(fr)
    which = np.where(u < edges[0], 0, np.where(u < edges[1], 1, 2))
    names = ("train", "val", "test")
    if len(uniq) >= 3:
        for k in (1, 2, 0):
            if fr[k] > 0 and not (which == k).any():
                donor = int(np.bincount(which, minlength=3).argmax())
                lo, hi = (0.0 if k == 0 else edges[k - 1]), edges[k]
                cand = np.flatnonzero(which == donor)
                dist = np.maximum(lo - u[cand], u[cand] - hi)
                which[cand[int(np.argmin(dist))]] = k
                warnings.warn(f"hash split: no article fell in the {names[k]} part by its hash; one was moved there "
                              f"from {names[donor]}, and may move back as the corpus grows (add articles)",
                              stacklevel=3)
    return {name: np.flatnonzero(which == k) for k, name in enumerate(names)}


def _permutation_parts(n: int, fr: np.ndarray, seed: int) -> dict[str, np.ndarray]:
    order = np.random.default_rng(seed).permutation(n)
    n_val = int(round(fr[1] * n))
    n_test = int(round(fr[2] * n))
    if n >= 3:
        n_val = max(n_val, 1 if fr[1] > 0 else 0)
        n_test = max(n_test, 1 if fr[2] > 0 else 0)
    n_train = n - n_val - n_test
    return {"train": order[:n_train], "val": order[n_train:n_train + n_val], "test": order[n_train + n_val:]}


def split_articles(table: SentenceTable, fractions=DEFAULT_FRACTIONS, seed: int = 0, min_block: int = 50,
                   method: str = DEFAULT_SPLIT_METHOD) -> Split:
    """Seeded article-disjoint split. Each part gets at least one article when there are three or more.

    method "permutation": a seeded shuffle of the article list cut at the fractions (exact shares; for a fixed
    table). "hash": each article's part is a function of (seed, article id) only (``hash_unit``), so adding
    articles never moves one between parts: what a corpus that grows between retrains needs.

    A table with a single article has no article structure to split on: it is cut into contiguous blocks of
    `min_block` sentences (each becomes its own pseudo-article for splitting purposes), with a warning."""
    if method not in SPLIT_METHODS:
        raise ValueError(f"unknown split method {method!r}: choose one of {', '.join(SPLIT_METHODS)}")
    fr = np.asarray(fractions, dtype=float)
    if fr.shape != (3,) or (fr < 0).any() or not np.isclose(fr.sum(), 1.0):
        raise ValueError(f"fractions must be three non-negative numbers summing to 1, got {fractions}")
    keys = table.article_id.astype(str)
    by_article = True
    uniq = list(dict.fromkeys(keys.tolist()))
    if len(uniq) < 3:
        warnings.warn(f"only {len(uniq)} article(s): splitting into contiguous blocks of {min_block} sentences "
                      "instead (windows at block edges may share context across parts)", stacklevel=2)
        keys = np.array([f"{a}#{p // min_block}" for a, p in zip(keys, table.position)], dtype=object)
        uniq = list(dict.fromkeys(keys.tolist()))
        by_article = False
    parts = _hash_parts(uniq, fr, seed) if method == "hash" else _permutation_parts(len(uniq), fr, seed)
    rows, arts = {}, {}
    for name, sel in parts.items():
        chosen = {uniq[i] for i in sel}
        arts[name] = sorted(chosen)
        rows[name] = np.flatnonzero(np.fromiter((k in chosen for k in keys), bool, len(keys))).astype(np.int64)
    return Split(rows["train"], rows["val"], rows["test"], arts, seed, tuple(float(f) for f in fr), by_article,
                 method)


# ---------------------------------------------------------------------------------------------------- stats

def split_from_record(table: SentenceTable, record: dict) -> Split:
    """The split a model's config.json records (fractions, seed, method), drawn again on `table`; compare its
    `record()["article_ids_sha256"]` with the record's to know it is the same. A record without a method is from
    before the hash split existed: permutation."""
    return split_articles(table, tuple(record.get("fractions", DEFAULT_FRACTIONS)), int(record.get("seed", 0)),
                          method=record.get("method", "permutation"))


def table_stats(table: SentenceTable, context: int = DEFAULT_CONTEXT, split: Split | None = None) -> dict:
    norms = np.linalg.norm(table.vectors, axis=1)
    mean_vec = table.vectors.mean(axis=0)
    stats = {
        "articles": int(len(table.articles)), "sentences": int(len(table)), "dim": table.dim,
        "norm_min": float(norms.min()), "norm_mean": float(norms.mean()), "norm_max": float(norms.max()),
        "mean_vector_norm": float(np.linalg.norm(mean_vec)),
        "windows": int(len(window_targets(table.article_id, table.position, context))),
        "context": context, **duplicate_vector_report(table.vectors), "meta": table.meta,
    }
    if split is not None:
        stats["windows_per_split"] = {k: int(len(window_targets(table.article_id, table.position, context,
                                                                split.part(k))))
                                      for k in ("train", "val", "test")}
        stats["articles_per_split"] = {k: len(v) for k, v in split.articles.items()}
    return stats


def warn_short_articles(table: SentenceTable, context: int) -> list[str]:
    return short_articles(table.article_id, table.position, context)


def save_split(split: Split, path: str | Path) -> Path:
    """Row indices and article ids of a split as JSON (atomic), so every consumer uses the very same split."""
    path = Path(path)
    payload = {"record": split.record(), "articles": split.articles,
               "rows": {k: split.part(k).tolist() for k in ("train", "val", "test")}}
    return write_atomic(path, lambda tmp: Path(tmp).write_text(json.dumps(payload)))


def load_split(path: str | Path) -> Split:
    payload = json.loads(Path(path).read_text())
    rec, rows = payload["record"], payload["rows"]
    return Split(*(np.asarray(rows[k], dtype=np.int64) for k in ("train", "val", "test")), payload["articles"],
                 rec["seed"], tuple(rec["fractions"]), rec["by_article"], rec.get("method", "permutation"))

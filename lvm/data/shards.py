"""A sentence table as a folder of Parquet shards, read lazily, with the vectors memory-mapped for training.

For tables too large to hold in memory (1M sentences × 768-D float32 = 3.07 GB). Layout:

    table/                      written as a whole: into a temporary folder beside it, then renamed
      part-00000.parquet ...    each shard has lvm.data.dataset.write_table's schema and metadata; an article never
                                straddles two shards, rows sorted by (article, position) as in one table
      _lvm_shards.json          manifest: format, dim, rows, meta, one entry per shard (file, rows, first/last key)
      _vectors.npy              float32 [N, D] built once by materialize_vectors (streamed shard by shard)
      _vectors.json             which shards _vectors.npy was built from (rebuilt when they change)

`open_sharded(folder)` returns a `SentenceTable` whose `vectors` is `np.load(_vectors.npy, mmap_mode="c")`:
pages are read on demand and belong to the page cache (file-backed, shared, reclaimable), so a process training on
it holds only the batches it touches plus the small id/position/text columns. `torch.from_numpy` of that array
does not copy (lvm.train._as_tensor keeps it a view), and mode "c" gives a writable (copy-on-write) view so torch
raises no read-only warning; nothing writes to it.

Validation streams too: each shard is checked on its own with lvm.data.schema's rules (vector facts computed a few
thousand rows at a time), an error names the shard file; then across shards: one dimension, each article in one
shard only, the manifest agrees with the files.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import uuid
from pathlib import Path
from typing import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from lvm.data.schema import DataValidationError, Failure, validate_facts, vector_facts
from lvm.data.table import PARQUET_OPTIONS, SentenceTable, file_sha256, position_failures, to_arrow
from lvm.util.atomic import usual_mode, write_atomic, write_json

MANIFEST = "_lvm_shards.json"
VECTORS = "_vectors.npy"
SHARD_PATTERN = "part-*.parquet"
FORMAT = 1
ROWS_PER_SHARD = 65536
_FACT_ROWS = 8192  # rows per chunk when computing per-row vector facts (keeps temporaries to a few tens of MB)


def shard_name(i: int) -> str:
    return f"part-{i:05d}.parquet"


def is_sharded(path: str | Path) -> bool:
    return Path(path, MANIFEST).is_file()


# ---------------------------------------------------------------------------------------------------- validation

def _read_manifest(path: Path) -> dict:
    mf = path / MANIFEST
    if not mf.is_file():
        raise DataValidationError(str(path), [Failure("manifest", f"no {MANIFEST}: not a sharded sentence table "
                                                      "(or an unfinished write)", 0, [])])
    try:
        manifest = json.loads(mf.read_text())
    except ValueError as exc:
        raise DataValidationError(str(mf), [Failure("manifest", f"not valid JSON ({exc})", 0, [])]) from None
    if manifest.get("format") != FORMAT:
        raise DataValidationError(str(mf), [Failure("manifest", f"unknown format {manifest.get('format')!r}", 0, [])])
    return manifest


def _shard_vector_column(source: str, pf: pq.ParquetFile) -> int:
    """The shard's vector width; the column must be fixed_size_list<float32>[D]."""
    names = pf.schema_arrow.names
    missing = {"article_id", "position", "vector"} - set(names)
    if missing:
        raise DataValidationError(source, [Failure("columns", f"missing columns {sorted(missing)}", 0, [])])
    vt = pf.schema_arrow.field("vector").type
    if not pa.types.is_fixed_size_list(vt):
        raise DataValidationError(source, [Failure("one_dimension", f"vector column is {vt}, a shard needs "
                                                   "fixed_size_list<float>[D]", 0, [])])
    if not pa.types.is_floating(vt.value_type):  # ints, bools or strings are refused, not cast
        raise DataValidationError(source, [Failure("vector_type", f"vector values must be floating point; the "
                                                   f"column holds {vt}", 0, [])])
    return int(vt.list_size)


def _open_shard(source: str) -> pq.ParquetFile:
    try:
        return pq.ParquetFile(source)
    except (pa.ArrowException, OSError) as exc:
        raise DataValidationError(source, [Failure(
            "readable_parquet", f"not a readable Parquet file, truncated or corrupt ({exc})", 0, [])]) from None


def _vector_batches(pf: pq.ParquetFile, dim: int, batch_size: int = 16384) -> Iterator[np.ndarray]:
    for batch in pf.iter_batches(batch_size=batch_size, columns=["vector"]):
        col = batch.column(0)
        values = col.flatten().to_numpy(zero_copy_only=False)
        if col.null_count or len(values) != len(col) * dim:
            values = np.array([np.full(dim, np.nan, np.float32) if v is None else v for v in col.to_pylist()],
                              dtype=np.float32).reshape(-1)
        yield values.astype(np.float32, copy=False).reshape(len(col), dim)


def validate_shards(path: str | Path) -> dict:
    """Stream through every shard: lvm.data.schema's rules per shard (the error names the shard file), then across
    shards (manifest agrees with the files, one dimension, each article in one shard). Returns the manifest."""
    path = Path(path)
    manifest = _read_manifest(path)
    listed = [s["file"] for s in manifest["shards"]]
    on_disk = sorted(p.name for p in path.glob(SHARD_PATTERN))
    if sorted(listed) != on_disk:
        extra, lost = sorted(set(on_disk) - set(listed)), sorted(set(listed) - set(on_disk))
        raise DataValidationError(str(path), [Failure("manifest", f"shard files do not match {MANIFEST}: "
                                                      f"missing {lost[:5]}, unlisted {extra[:5]}", 0, [])])
    dim = int(manifest["dim"])
    owner: dict[str, str] = {}  # article id -> shard file
    total = 0
    for entry in manifest["shards"]:
        source = str(path / entry["file"])
        pf = _open_shard(source)
        width = _shard_vector_column(source, pf)
        if width != dim:
            raise DataValidationError(source, [Failure("one_dimension", f"vectors are {width}-D, the table's "
                                                       f"dimension is {dim}", pf.metadata.num_rows, [])])
        if pf.metadata.num_rows != entry["rows"]:
            raise DataValidationError(source, [Failure("manifest", f"{pf.metadata.num_rows} rows, the manifest "
                                                       f"says {entry['rows']}", 0, [])])
        try:
            ids = pf.read(columns=["article_id", "position"])
            facts = [vector_facts(v, _FACT_ROWS) for v in _vector_batches(pf, dim)]
        except (pa.ArrowException, OSError) as exc:
            raise DataValidationError(source, [Failure(
                "readable_parquet", f"not a readable Parquet file, truncated or corrupt ({exc})", 0, [])]) from None
        article_id = ids.column("article_id").to_numpy(zero_copy_only=False)
        bad = position_failures(source, ids.column("position").combine_chunks())
        if bad:
            raise DataValidationError(source, bad)
        position = ids.column("position").to_numpy().astype(np.int64)
        finite = np.concatenate([f for f, _ in facts]) if facts else np.zeros(0, bool)
        norms = np.concatenate([n for _, n in facts]) if facts else np.zeros(0)
        validate_facts(source, article_id, position, np.full(len(article_id), dim, np.int64), finite, norms, dim,
                       what="shard")
        for a in dict.fromkeys(article_id.tolist()):
            if a in owner:
                raise DataValidationError(source, [Failure(
                    "unique_article_position", f"article {a!r} is also in {owner[a]}: an article must lie in one "
                    "shard (duplicate (article_id, position) or an article split across shards)", 1, [])])
            owner[a] = entry["file"]
        total += len(article_id)
        del ids, facts
        pa.default_memory_pool().release_unused()
    if total != manifest["rows"] or total == 0:
        raise DataValidationError(str(path), [Failure("manifest", f"{total} rows in the shards, the manifest "
                                                      f"says {manifest['rows']}", 0, [])])
    return manifest


# ---------------------------------------------------------------------------------------------------- writing

class ShardWriter:
    """Stream a sentence table into shards: `write()` chunks of rows in table order (an article may continue in
    the next chunk), `close()` to finish. Only one shard's rows are held at a time. Each shard is validated before
    it is written; on any error (or leaving the `with` block by an exception) nothing appears at `path`."""

    def __init__(self, path: str | Path, meta: dict | None = None, rows_per_shard: int = ROWS_PER_SHARD):
        if rows_per_shard < 1:
            raise ValueError(f"rows_per_shard must be >= 1, got {rows_per_shard}")
        self.path = Path(path)
        if self.path.exists() and not (self.path.is_dir() and (is_sharded(self.path) or not any(self.path.iterdir()))):
            raise FileExistsError(f"{self.path} exists and is not a sharded sentence table: not replacing it")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.meta = dict(meta or {})
        self.rows_per_shard = int(rows_per_shard)
        self.tmp = Path(tempfile.mkdtemp(prefix=f".{self.path.name}.", suffix=".tmp", dir=self.path.parent))
        self.dim: int | None = None
        self.shards: list[dict] = []
        self._buf: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []
        self._buffered = 0
        self._owner: dict[str, str] = {}
        self._done = False

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            self.close()
        else:
            self.abort()

    def write(self, article_id, position, text, vectors) -> None:
        vectors = np.asarray(vectors, dtype=np.float32)
        if vectors.ndim != 2:
            raise ValueError(f"vectors must be [n, D], got shape {vectors.shape}")
        if self.dim is None:
            self.dim = int(vectors.shape[1])
        n = len(vectors)
        text = np.full(n, "", dtype=object) if text is None else np.asarray(text, dtype=object)
        article_id, position = np.asarray(article_id, dtype=object), np.asarray(position, dtype=np.int64)
        if not len(article_id) == len(position) == len(text) == n:
            raise ValueError("article_id, position, text and vectors must have the same number of rows")
        if vectors.shape[1] != self.dim:
            nxt = str(self.path / shard_name(len(self.shards)))
            raise DataValidationError(nxt, [Failure("one_dimension", f"vectors are {vectors.shape[1]}-D, earlier "
                                                    f"rows are {self.dim}-D", n, list(range(min(n, 10))))])
        if n:
            self._buf.append((article_id, position, text, vectors))
            self._buffered += n
        while self._buffered >= self.rows_per_shard and self._flush(final=False):
            pass

    def _flush(self, final: bool) -> bool:
        """Write one shard from the buffer, cut at an article boundary; False when no cut is possible yet."""
        if not self._buffered:
            return False
        aid, pos, txt, vec = (np.concatenate([b[i] for b in self._buf]) for i in range(4))
        n = len(aid)
        if final:
            cut = n
        else:  # the last article may continue in the next chunk: never cut inside it
            starts = np.flatnonzero(np.r_[False, aid[1:] != aid[:-1]])
            if len(starts) == 0:
                self._buf, self._buffered = [(aid, pos, txt, vec)], n
                return False
            below = starts[starts <= self.rows_per_shard]
            cut = int(below[-1]) if len(below) else int(starts[0])
        name = shard_name(len(self.shards))
        source = str(self.path / name)
        try:
            finite, norms = vector_facts(vec[:cut], _FACT_ROWS)
            validate_facts(source, aid[:cut], pos[:cut], np.full(cut, self.dim, np.int64), finite, norms, self.dim,
                           what="shard")
            for a in dict.fromkeys(aid[:cut].tolist()):
                if a in self._owner:
                    raise DataValidationError(source, [Failure(
                        "unique_article_position", f"article {a!r} was already written to {self._owner[a]}: rows "
                        "must come sorted by article, each article once", 1, [])])
                self._owner[a] = name
            table = to_arrow(aid[:cut], pos[:cut], txt[:cut], vec[:cut], self.meta)
            pq.write_table(table, self.tmp / name, **PARQUET_OPTIONS)
            del table
            pa.default_memory_pool().release_unused()
        except BaseException:
            self.abort()
            raise
        self.shards.append({"file": name, "rows": cut, "first": [str(aid[0]), int(pos[0])],
                            "last": [str(aid[cut - 1]), int(pos[cut - 1])]})
        rest = (aid[cut:].copy(), pos[cut:].copy(), txt[cut:].copy(), vec[cut:].copy())  # frees the big buffer
        self._buf, self._buffered = ([rest] if n > cut else []), n - cut
        return True

    def close(self) -> Path:
        """Write what is left, the manifest, then move the folder into place (replacing an older table)."""
        if self._done:
            return self.path
        self._flush(final=True)
        if not self.shards:
            self.abort()
            raise DataValidationError(str(self.path), [Failure("non_empty", "the table has no rows", 0, [])])
        manifest = {"format": FORMAT, "id": uuid.uuid4().hex, "dim": self.dim,
                    "rows": int(sum(s["rows"] for s in self.shards)), "meta": self.meta, "shards": self.shards}
        (self.tmp / MANIFEST).write_text(json.dumps(manifest, indent=1))
        usual_mode(self.tmp, folder=True)
        old = None
        if self.path.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{self.path.name}.", suffix=".old", dir=self.path.parent))
            os.rename(self.path, old / "table")
        os.rename(self.tmp, self.path)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        self._done = True
        return self.path

    def abort(self) -> None:
        self._done = True
        self._buf, self._buffered = [], 0
        shutil.rmtree(self.tmp, ignore_errors=True)


def write_shards(table: SentenceTable, path: str | Path, rows_per_shard: int = ROWS_PER_SHARD) -> Path:
    """A SentenceTable as a sharded folder (atomic). For tables built in memory; stream big ones with ShardWriter."""
    with ShardWriter(path, table.meta, rows_per_shard) as w:
        for s in range(0, len(table), rows_per_shard):
            sl = slice(s, s + rows_per_shard)
            w.write(table.article_id[sl], table.position[sl], table.text[sl], table.vectors[sl])
    return Path(path)


# ---------------------------------------------------------------------------------------------------- reading

def shard_files(path: str | Path) -> list[Path]:
    path = Path(path)
    return [path / s["file"] for s in _read_manifest(path)["shards"]]


def iter_batches(path: str | Path, columns: list[str] | None = None, batch_size: int = 65536
                 ) -> Iterator[pa.RecordBatch]:
    """Record batches of the whole table in row order, read lazily shard by shard (pyarrow.dataset)."""
    import pyarrow.dataset as ds

    dataset = ds.dataset([str(f) for f in shard_files(path)], format="parquet")
    for fragment in dataset.get_fragments():  # fragments keep the order of the file list
        yield from fragment.to_batches(columns=columns, batch_size=batch_size)


def _stamp(path: Path, manifest: dict) -> dict:
    files = []
    for s in manifest["shards"]:
        st = (path / s["file"]).stat()
        files.append([s["file"], st.st_size, st.st_mtime_ns])
    return {"id": manifest.get("id"), "rows": manifest["rows"], "dim": manifest["dim"], "files": files}


def materialize_vectors(path: str | Path, out: str | Path | None = None) -> Path:
    """Write the vectors of every shard, in order, into one float32 .npy (default `<folder>/_vectors.npy`),
    streaming a batch at a time (never all vectors in memory); reused while the shards are unchanged."""
    path = Path(path)
    manifest = _read_manifest(path)
    npy = Path(out) if out is not None else path / VECTORS
    stamp_path = npy.with_suffix(".json")  # _vectors.json beside the default _vectors.npy
    stamp = _stamp(path, manifest)
    n, d = int(manifest["rows"]), int(manifest["dim"])
    if npy.is_file() and stamp_path.is_file():
        try:
            if json.loads(stamp_path.read_text()) == stamp and np.load(npy, mmap_mode="r").shape == (n, d):
                return npy
        except (ValueError, OSError):
            pass
    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:
            np.lib.format.write_array_header_1_0(f, {"descr": np.lib.format.dtype_to_descr(np.dtype("<f4")),
                                                     "fortran_order": False, "shape": (n, d)})
            written = 0
            for shard in shard_files(path):
                source = str(shard)
                pf = _open_shard(source)
                for v in _vector_batches(pf, _shard_vector_column(source, pf)):
                    if v.shape[1] != d:
                        raise DataValidationError(source, [Failure("one_dimension", f"vectors are {v.shape[1]}-D, "
                                                                   f"the table's dimension is {d}", len(v), [])])
                    f.write(np.ascontiguousarray(v, dtype="<f4").data)
                    written += len(v)
                pa.default_memory_pool().release_unused()
        if written != n:
            raise DataValidationError(str(path), [Failure("manifest", f"{written} vectors in the shards, the "
                                                          f"manifest says {n}", 0, [])])

    write_atomic(npy, write)
    write_json(stamp_path, stamp)
    return npy


def open_sharded(path: str | Path, validate: bool = True, mmap_mode: str = "c", text: bool = True) -> SentenceTable:
    """A SentenceTable over a sharded folder: article_id, position (and text, unless text=False: then "") as
    ordinary arrays, `vectors` memory-mapped from the materialised .npy (built on first use)."""
    path = Path(path)
    manifest = validate_shards(path) if validate else _read_manifest(path)
    npy = materialize_vectors(path)
    columns = ["article_id", "position"] + (["text"] if text else [])
    parts = [pq.read_table(f, columns=columns) for f in shard_files(path)]
    article_id = np.concatenate([p.column("article_id").to_numpy(zero_copy_only=False) for p in parts]).astype(object)
    position = np.concatenate([p.column("position").to_numpy() for p in parts]).astype(np.int64)
    txt = (np.concatenate([p.column("text").to_numpy(zero_copy_only=False) for p in parts]).astype(object) if text
           else np.full(len(position), "", dtype=object))
    del parts
    vectors = np.load(npy, mmap_mode=mmap_mode)
    return SentenceTable(article_id, position, txt, vectors, dict(manifest.get("meta") or {}))


def folder_hash(path: str | Path) -> str:
    """Content hash of a sharded table (the manifest's shard list and every shard's bytes), the counterpart of
    lvm.data.dataset.file_hash for a folder; the derived _vectors.npy is not part of it."""
    path = Path(path)
    manifest = _read_manifest(path)
    h = hashlib.sha256(json.dumps({"dim": manifest["dim"], "rows": manifest["rows"], "meta": manifest["meta"]},
                                  sort_keys=True).encode())
    for s in manifest["shards"]:
        h.update(f"\0{s['file']}\0{file_sha256(path / s['file'])}".encode())
    return h.hexdigest()

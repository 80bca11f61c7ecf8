"""The original project's `.npz` window files, to and from sentence tables.

Seed format: `context_sequences` float32 [N, C, D], `target_vectors` float32 [N, D]; optional `target_texts` [N].
Consecutive windows that overlap with stride 1 (window i+1's context is window i's context shifted by one, ending in
window i's target) are one sentence stream: we rebuild it as one article. A window that does not continue the
previous one starts a new article, so windows with no overlap become one short article each. Export walks the
articles back into windows in the same order, so a stride-1 file round-trips to identical arrays.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from lvm.data.schema import DataValidationError, Failure
from lvm.data.table import SentenceTable, gather_windows, window_targets
from lvm.util.atomic import write_atomic

REQUIRED = ("context_sequences", "target_vectors")
OPTIONAL = ("target_texts",)
#: the most an .npz may unpack to (LVM_MAX_NPZ_BYTES overrides): the original project's 440k windows of 6 x 768
#: float32 are 8.1 GB; a header claiming more than this, or more than the archive holds, is refused unread.
MAX_NPZ_BYTES = 16 << 30


def check_members(path: Path, cap: int | None = None) -> dict:
    """Read only the zip directory and each array's .npy header: refuse a file that is not an .npz archive (a
    bare .npy renamed, say), object arrays (pickles), and any array whose header claims more bytes than its member
    holds or whose total would pass `cap`, before numpy allocates anything from the untrusted header."""
    import os

    cap = int(os.environ.get("LVM_MAX_NPZ_BYTES", MAX_NPZ_BYTES)) if cap is None else cap
    if not zipfile.is_zipfile(path):
        with open(path, "rb") as f:
            bare = f.read(6) == b"\x93NUMPY"
        raise _fail(path, "readable_npz", "not a .npz archive (a zip file of .npy arrays)" +
                    ("; it is a bare .npy array: save it with numpy.savez" if bare else ""))
    total, shapes = 0, {}
    try:
        with zipfile.ZipFile(path) as zf:
            for info in zf.infolist():
                if not info.filename.endswith(".npy"):  # never loaded (load_npz reads the named arrays only)
                    continue
                with zf.open(info) as f:
                    version = np.lib.format.read_magic(f)
                    read = {(1, 0): np.lib.format.read_array_header_1_0,
                            (2, 0): np.lib.format.read_array_header_2_0}.get(version)
                    if read is None:
                        raise ValueError(f"{info.filename}: .npy format version {version} is not supported")
                    shape, _, dtype = read(f)
                    header = f.tell()
                if dtype.hasobject:
                    raise _fail(path, "float_arrays", f"{info.filename[:-4]} holds Python objects (a pickle): refused")
                count = 1
                for n in shape:
                    count *= int(n)
                claimed = count * dtype.itemsize
                if claimed > info.file_size - header:
                    raise _fail(path, "array_sizes", f"{info.filename[:-4]}: its header claims shape {tuple(shape)} "
                                f"{dtype} ({claimed:,} bytes) but the archive holds {info.file_size - header:,}")
                total += claimed
                shapes[info.filename[:-4]] = tuple(int(n) for n in shape)
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as exc:
        if isinstance(exc, DataValidationError):
            raise
        raise _fail(path, "readable_npz", f"not a readable .npz archive ({exc})") from None
    if total > cap:
        raise _fail(path, "size_cap", f"its arrays unpack to {total:,} bytes, over the cap of {cap:,} "
                    "(LVM_MAX_NPZ_BYTES raises it)")
    return shapes


def _fail(path, rule, message, rows=()):
    return DataValidationError(str(path), [Failure(rule, message, len(rows), list(rows)[:10])])


def validate_windows(path, ctx: np.ndarray, tgt: np.ndarray) -> None:
    """The vector rules (finite, non-zero norm) per window of a seed file, so a bad file is named with its
    window numbers, not with rows of the table it would become."""
    finite = np.isfinite(ctx).all(axis=(1, 2)) & np.isfinite(tgt).all(axis=1)
    clean = lambda a: np.nan_to_num(a.astype(np.float64), nan=1.0, posinf=1.0, neginf=1.0)  # noqa: E731
    zero = (np.linalg.norm(clean(ctx), axis=2) < 1e-6).any(axis=1) | (np.linalg.norm(clean(tgt), axis=1) < 1e-6)
    failures = []
    for rule, bad, what in (("finite_values", ~finite, "window has NaN or inf values"),
                            ("non_zero_norm", zero, "window has a (near) zero-norm vector")):
        rows = np.flatnonzero(bad).tolist()
        if rows:
            failures.append(Failure(rule, what, len(rows), rows[:10], unit="window"))
    if failures:
        raise DataValidationError(str(path), failures)


def load_npz(path: str | Path) -> dict:
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such .npz file")
    if path.stat().st_size == 0:
        raise _fail(path, "readable_npz", "the file is empty (0 bytes)")
    check_members(path)
    try:
        with np.load(path, allow_pickle=False) as z:  # only the arrays of the format, each vetted above
            arrays = {k: z[k] for k in (*REQUIRED, *OPTIONAL) if k in z.files}
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as exc:
        raise _fail(path, "readable_npz", f"not a readable .npz archive ({exc})") from None
    missing = [k for k in REQUIRED if k not in arrays]
    if missing:
        raise _fail(path, "required_keys", f"missing arrays {missing}; has {sorted(arrays)}")
    ctx, tgt = arrays["context_sequences"], arrays["target_vectors"]
    for key in ("context_sequences", "target_vectors"):  # cast nothing: ints, bools, complex or text are refused
        if not np.issubdtype(arrays[key].dtype, np.floating):
            raise _fail(path, "float_arrays", f"{key} must hold floating-point numbers (float32); it holds "
                        f"{arrays[key].dtype}")
    if ctx.ndim != 3 or tgt.ndim != 2:
        raise _fail(path, "shapes", f"context_sequences must be [N,C,D] and target_vectors [N,D]; "
                                    f"got {ctx.shape} and {tgt.shape}")
    if ctx.shape[0] != tgt.shape[0]:
        raise _fail(path, "matching_n", f"context_sequences has N={ctx.shape[0]} windows "
                                        f"but target_vectors has N={tgt.shape[0]}")
    if ctx.shape[0] == 0:
        raise _fail(path, "non_empty", "the file has no windows (N=0)")
    if ctx.shape[1] == 0 or ctx.shape[2] == 0:
        raise _fail(path, "shapes", f"context_sequences {ctx.shape} has no context rows or no dimensions")
    if ctx.shape[2] != tgt.shape[1]:
        raise _fail(path, "one_dimension", f"context D={ctx.shape[2]} but target D={tgt.shape[1]}")
    texts = arrays.get("target_texts")
    if texts is not None and (texts.ndim != 1 or texts.dtype.kind != "U"):
        raise _fail(path, "target_texts", f"target_texts must be a 1-D array of str, got shape {texts.shape} "
                                          f"{texts.dtype}")
    if "target_texts" in arrays and len(arrays["target_texts"]) != tgt.shape[0]:
        raise _fail(path, "matching_n",
                    f"target_texts has {len(arrays['target_texts'])} entries, expected {tgt.shape[0]}")
    return arrays


def import_npz(path: str | Path) -> SentenceTable:
    """Seed windows → sentence table (validated when written)."""
    arrays = load_npz(path)
    ctx = np.asarray(arrays["context_sequences"], dtype=np.float32)
    tgt = np.asarray(arrays["target_vectors"], dtype=np.float32)
    texts = arrays.get("target_texts")
    validate_windows(path, ctx, tgt)
    n, c, d = ctx.shape
    continues = np.zeros(n, dtype=bool)
    if n > 1:
        continues[1:] = (np.all(ctx[1:, :-1] == ctx[:-1, 1:], axis=(1, 2)) & np.all(ctx[1:, -1] == tgt[:-1], axis=1))
    article_ids, positions, row_texts, rows = [], [], [], []
    art = -1
    pos = 0
    width = max(6, len(str(n)))
    for i in range(n):
        if not continues[i]:
            art += 1
            for j in range(c):
                article_ids.append(f"npz-{art:0{width}d}")
                positions.append(j)
                row_texts.append("")
                rows.append(ctx[i, j])
            pos = c
        article_ids.append(f"npz-{art:0{width}d}")
        positions.append(pos)
        row_texts.append(str(texts[i]) if texts is not None else "")
        rows.append(tgt[i])
        pos += 1
    meta = {"source": str(path), "format": "seed-npz", "context": c, "windows": n, "dim": d,
            "articles_rebuilt": art + 1, "stride1_windows": int(continues.sum())}
    return SentenceTable(np.array(article_ids, dtype=object), np.array(positions, dtype=np.int64),
                         np.array(row_texts, dtype=object), np.stack(rows).astype(np.float32), meta)


def export_npz(table: SentenceTable, path: str | Path, context: int, source: str | None = None) -> Path:
    """Sentence table → seed windows (every window inside an article, in table order), written atomically.
    A table with no window of this context is refused (import_npz would refuse the empty file)."""
    path = Path(path)
    targets = window_targets(table.article_id, table.position, context)
    if len(targets) == 0:
        longest = int(table.position.max()) + 1 if len(table) else 0
        raise ValueError(f"{source or 'the table'}: no window of context {context} (rule: a window needs "
                         f"context + 1 = {context + 1} sentences in one article; the longest article has "
                         f"{longest}); nothing written to {path}")
    ctx, tgt = gather_windows(table.vectors, targets, context)
    out = {"context_sequences": ctx.astype(np.float32), "target_vectors": tgt.astype(np.float32),
           "sequence_positions": table.position[targets].astype(np.int64)}
    if any(str(t) for t in table.text[targets]):
        out["target_texts"] = np.array([str(t) for t in table.text[targets]])
    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:  # a file object: given a name, numpy would append ".npz" to it
            np.savez(f, **out)

    return write_atomic(path, write)

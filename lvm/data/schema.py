"""Validation of sentence tables: every rule of DESIGN.md, checked lazily so one error lists every failure.

pandera checks the row-level rules on a small frame (ids, positions, and per-row facts about the vectors computed
with numpy: width, finiteness, norm), so a million 768-D vectors are never turned into Python objects.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pandera.pandas as pa


@dataclass
class Failure:
    rule: str
    message: str
    count: int
    rows: list  # first offending row numbers (0-based, in the table's order)
    unit: str = "row"  # what `rows` count: table rows, or windows of a seed .npz

    def __str__(self) -> str:
        if not self.rows:
            return f"- {self.rule}: {self.message}"
        shown = ", ".join(str(r) for r in self.rows[:5])
        return f"- {self.rule}: {self.message} ({self.count} {self.unit}s; first {self.unit}s: {shown})"


class DataValidationError(ValueError):
    """A data file broke one or more rules. Names the file, each rule, its count and the first offending rows."""

    def __init__(self, source: str, failures: list[Failure]):
        self.source = str(source)
        self.failures = failures
        lines = [f"{self.source}: failed validation ({len(failures)} rule{'s' * (len(failures) != 1)} broken)"]
        lines += [str(f) for f in failures]
        super().__init__("\n".join(lines))


_RULES = {
    "finite_values": "vector has NaN or inf values",
    "one_dimension": "vector width differs from the table's dimension",
    "non_zero_norm": "vector has (near) zero norm",
    "unique_article_position": "duplicate (article_id, position)",
    "contiguous_positions": "positions within an article must run 0, 1, 2, ... in row order",
    "non_empty_article_id": "article_id is empty",
}


def _schema(dim: int) -> pa.DataFrameSchema:
    return pa.DataFrameSchema(
        {
            "article_id": pa.Column(str, pa.Check(lambda s: s.str.len() > 0, name="non_empty_article_id")),
            "position": pa.Column("int64", pa.Check(lambda s: s >= 0, name="contiguous_positions")),
            "_dim": pa.Column("int64", pa.Check(lambda s: s == dim, name="one_dimension")),
            "_finite": pa.Column(bool, pa.Check(lambda s: s, name="finite_values")),
            "_norm": pa.Column(float, pa.Check(lambda s: ~(s < 1e-6), name="non_zero_norm")),
            "_expected": pa.Column("int64"),
        },
        checks=[
            pa.Check(lambda df: ~df.duplicated(["article_id", "position"], keep=False), name="unique_article_position"),
            pa.Check(lambda df: df["position"] == df["_expected"], name="contiguous_positions"),
        ],
        coerce=False,
    )


def vector_facts(vectors: np.ndarray, chunk: int = 8192) -> tuple[np.ndarray, np.ndarray]:
    """(finite [n], L2 norm [n] in float64, non-finite entries counted as 0) of a 2-D array, `chunk` rows at a time
    (temporaries stay a few tens of MB, also for a memory-mapped million rows)."""
    finite = np.empty(len(vectors), bool)
    norms = np.empty(len(vectors), np.float64)
    for s in range(0, len(vectors), chunk):
        part = vectors[s:s + chunk]
        finite[s:s + len(part)] = np.isfinite(part).all(axis=1)
        norms[s:s + len(part)] = np.linalg.norm(np.nan_to_num(part.astype(np.float64), posinf=0, neginf=0), axis=1)
    return finite, norms


def validate_facts(source: str, article_id: np.ndarray, position: np.ndarray, widths: np.ndarray, finite: np.ndarray,
                   norms: np.ndarray, dim: int, what: str = "table") -> None:
    """Every rule on the columns and the per-row vector facts (width, finite, norm); raises DataValidationError
    naming `source` and listing every broken rule. `what` names the unit in the empty-input message."""
    n = len(article_id)
    if n == 0:
        raise DataValidationError(source, [Failure("non_empty", f"the {what} has no rows", 0, [])])
    aid = pd.Series(np.asarray(article_id, dtype=object)).astype(str)
    starts = np.r_[True, aid.values[1:] != aid.values[:-1]]
    first_row = np.maximum.accumulate(np.where(starts, np.arange(n), 0))
    frame = pd.DataFrame({
        "article_id": aid.values, "position": np.asarray(position, dtype=np.int64), "_dim": widths,
        "_finite": finite, "_norm": norms, "_expected": np.arange(n) - first_row,
    })
    try:
        _schema(dim).validate(frame, lazy=True)
    except pa.errors.SchemaErrors as exc:
        raise DataValidationError(source, _failures(exc.failure_cases)) from None


def validate_arrays(source: str, article_id: np.ndarray, position: np.ndarray, vectors: list | np.ndarray,
                    dim: int | None = None) -> int:
    """Validate columns already in memory; returns D. `vectors` may be a 2-D array or a list of 1-D arrays (ragged
    input, from a list column). Raises DataValidationError listing every broken rule."""
    n = len(article_id)
    if n == 0:
        raise DataValidationError(source, [Failure("non_empty", "the table has no rows", 0, [])])
    if isinstance(vectors, np.ndarray) and vectors.ndim == 2:
        widths = np.full(n, vectors.shape[1], dtype=np.int64)
        finite, norms = vector_facts(vectors)
    else:
        widths = np.array([len(v) for v in vectors], dtype=np.int64)
        finite = np.array([np.isfinite(np.asarray(v, dtype=np.float64)).all() for v in vectors])
        norms = np.array([np.linalg.norm(np.nan_to_num(np.asarray(v, dtype=np.float64), posinf=0, neginf=0))
                          for v in vectors])
    if dim is None:
        vals, counts = np.unique(widths, return_counts=True)
        dim = int(vals[np.argmax(counts)])
    validate_facts(source, article_id, position, widths, finite, norms, dim)
    return dim


def _failures(cases: pd.DataFrame) -> list[Failure]:
    out = []
    for rule, group in cases.groupby("check", sort=False):
        rule = str(rule)
        rows = sorted({int(i) for i in group["index"].dropna().tolist()})
        out.append(Failure(rule, _RULES.get(rule, rule), len(rows), rows[:10]))
    return sorted(out, key=lambda f: list(_RULES).index(f.rule) if f.rule in _RULES else 99)


def duplicate_vector_report(vectors: np.ndarray) -> dict:
    """How many rows repeat an earlier row's vector exactly (repeated sentences, boilerplate): reported, not fatal."""
    if len(vectors) == 0:
        return {"duplicate_rows": 0, "duplicate_rate": 0.0}
    view = np.ascontiguousarray(vectors).view(np.dtype((np.void, vectors.dtype.itemsize * vectors.shape[1])))
    _, first = np.unique(view.ravel(), return_index=True)
    dup = len(vectors) - len(first)
    return {"duplicate_rows": int(dup), "duplicate_rate": float(dup / len(vectors))}


def short_articles(article_id: np.ndarray, position: np.ndarray, context: int) -> list[str]:
    """Articles with fewer than context+1 sentences give no window: they are skipped with a warning."""
    ids, counts = np.unique(np.asarray(article_id, dtype=object).astype(str), return_counts=True)
    short = [str(i) for i, c in zip(ids, counts) if c <= context]
    if short:
        warnings.warn(
            f"{len(short)} articles are too short for one window of context {context} and give no training "
            f"windows: {short[:5]}{' ...' if len(short) > 5 else ''}", stacklevel=3)
    return short

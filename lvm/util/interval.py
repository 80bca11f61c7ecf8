"""A paired difference with its 95 % interval, as one value that formats itself.

Every interval the evaluation computes (lvm.evaluation.metrics.paired_difference: a lead over a baseline, a forward
margin, a shuffle drop, the challenger against production) is stored as JSON {"diff", "ci95": [lo, hi], "groups",
"n"} (a shuffle drop names its "diff" "drop"); `Interval.of` reads any of them, `str()` writes the one form every
table, reason and report shows: "+0.0089 [+0.0083, +0.0097]"."""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Interval:
    diff: float | None
    lo: float | None
    hi: float | None
    groups: int = 0
    n: int = 0

    @classmethod
    def of(cls, d) -> "Interval":
        """From a stored interval dict (or an Interval, or None: an empty one)."""
        if isinstance(d, Interval):
            return d
        if not d:
            return cls(None, None, None)
        lo, hi = (d.get("ci95") or [None, None])[:2]
        diff = d["diff"] if "diff" in d else d.get("drop")
        return cls(_num(diff), _num(lo), _num(hi), int(d.get("groups") or 0), int(d.get("n") or 0))

    @property
    def known(self) -> bool:
        return self.diff is not None and self.lo is not None and self.hi is not None

    def above(self, threshold: float = 0.0) -> bool:
        """The difference and the whole interval above `threshold` (what every gate asks)."""
        return self.known and self.diff > threshold and self.lo > threshold

    def format(self, digits: int = 4, label: str = "") -> str:
        if not self.known:
            return "-" if self.diff is None else f"{self.diff:+.{digits}f}"
        return f"{self.diff:+.{digits}f} [{label}{self.lo:+.{digits}f}, {self.hi:+.{digits}f}]"

    def __str__(self) -> str:
        return self.format()

    def to_dict(self) -> dict:
        return {"diff": self.diff, "ci95": [self.lo, self.hi], "groups": self.groups, "n": self.n}


def _num(v) -> float | None:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) else None

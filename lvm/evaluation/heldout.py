"""One held-out evaluation set, built once: what every scorer takes.

read table → split → part rows → window targets → empty check → article starts → bootstrap groups used to be
repeated by every caller; `HeldOutSet.of(table, rows, context)` does it once. A window is the row index of its
target (lvm.data.table.window_targets): its context is the C rows before it, inside one article.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

from lvm.data.table import window_targets
from lvm.evaluation.forward import article_bounds
from lvm.evaluation.metrics import Windows, article_starts, window_batch


def article_groups(article_id) -> np.ndarray:
    """Each row's article as an integer: the bootstrap groups of every interval."""
    return np.unique(np.asarray(article_id).astype(str), return_inverse=True)[1]


@dataclass(frozen=True, eq=False)
class HeldOutSet:
    """The windows of one part of one table: `targets` (sorted target rows), the retrieval `bank` (rows ranked
    against each prediction), each row's article `starts` and bootstrap `groups`, over the table's `vectors`."""
    vectors: np.ndarray
    targets: np.ndarray
    bank: np.ndarray
    starts: np.ndarray
    groups: np.ndarray
    context: int
    name: str = "test"

    @classmethod
    def of(cls, table, rows: np.ndarray | None, context: int, name: str = "test",
           groups: np.ndarray | None = None) -> "HeldOutSet":
        """The windows whose targets lie in `rows` (None: every row, the whole table); the bank is `rows`. Raises
        ValueError naming the part when it has no window."""
        targets = window_targets(table.article_id, table.position, context, rows)
        if len(targets) == 0:
            raise ValueError(f"the {name} part has no windows of context {context}")
        bank = np.arange(len(table)) if rows is None else np.asarray(rows, dtype=np.int64)
        return cls(table.vectors, np.asarray(targets, dtype=np.int64), bank, article_starts(table.position),
                   article_groups(table.article_id) if groups is None else np.asarray(groups), int(context), name)

    def __len__(self) -> int:
        return len(self.targets)

    @cached_property
    def ends(self) -> np.ndarray:
        """One past the last row of each row's article."""
        return article_bounds(self.starts)

    @property
    def target_groups(self) -> np.ndarray:
        return self.groups[self.targets]

    @property
    def articles(self) -> int:
        return int(len(np.unique(self.starts[self.targets])))

    def windows(self, targets: np.ndarray) -> Windows:
        """The ``Windows`` (context and the article before it) of some of this set's target rows."""
        return window_batch(self.vectors, targets, self.context, self.starts)

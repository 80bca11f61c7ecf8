"""The sentence bank: the sentences ``/next`` can return, ranked by cosine to a predicted embedding.

This is nearest-neighbour decoding: the answer is always a sentence of the bank, never new text.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass
class SentenceBank:
    text: np.ndarray  # object [N]
    article_id: np.ndarray  # object [N]
    position: np.ndarray  # int64 [N]
    vectors: np.ndarray  # float32 [N, D], unit norm

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1])

    def __len__(self) -> int:
        return len(self.text)

    def nearest(self, query: np.ndarray, k: int, exclude_texts: Sequence[str] = ()) -> list[dict]:
        """The ``k`` sentences with the highest cosine to the unit-norm ``query``, best first; sentences whose text
        is one of ``exclude_texts`` are never returned (fewer than ``k`` when the bank runs out)."""
        scores = self.vectors @ query
        if len(exclude_texts):
            mask = np.isin(self.text, np.asarray(list(exclude_texts), dtype=object))
            scores = np.where(mask, -np.inf, scores)
        k = min(k, int(np.isfinite(scores).sum()))
        if k <= 0:
            return []
        top = np.argpartition(-scores, k - 1)[:k]
        top = top[np.argsort(-scores[top], kind="stable")]
        return [
            {"text": str(self.text[i]), "score": float(scores[i]), "article_id": str(self.article_id[i]),
             "position": int(self.position[i])}
            for i in top
        ]


def load_bank(path: str | os.PathLike[str]) -> SentenceBank:
    """The sentences /next can return: any sentence table `lvm.data.dataset.read_table` reads (Parquet, a sharded table,
    a seed .npz), validated like training data, vectors unit-normalised for cosine ranking."""
    from lvm.data.dataset import read_table

    table = read_table(path)
    vectors = table.vectors / np.maximum(np.linalg.norm(table.vectors, axis=1, keepdims=True), 1e-12)
    return SentenceBank(text=np.asarray(table.text, dtype=object),
                        article_id=np.asarray(table.article_id, dtype=object),
                        position=np.asarray(table.position, dtype=np.int64),
                        vectors=np.ascontiguousarray(vectors, dtype=np.float32))

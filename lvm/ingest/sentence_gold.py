"""Scoring a sentence reader against hand-checked rows: boundary precision and recall.

A boundary is where one row ends and the next begins, counted over the passage's letters and digits only (lower
case), so spacing, quotes and detokenisation never move one. The reader's rows are aligned to the gold rows over
those characters (difflib); a reader boundary counts when it lands on a gold boundary not yet matched. A heading
kept as a row adds two boundaries the gold lacks (precision falls), a sentence glued to the next loses one
(recall falls). The gold set and its conventions: tests/data/gold/README.md.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from difflib import SequenceMatcher
from pathlib import Path
from typing import Callable, Iterable


def _key(text: str) -> str:
    return "".join(ch for ch in text.lower() if ch.isalnum())


def _cuts(rows: list[str]) -> tuple[str, list[int]]:
    """The rows' letters and digits joined, and the offsets where one row ends and the next begins."""
    keys = [_key(r) for r in rows]
    cuts, pos = [], 0
    for k in keys[:-1]:
        pos += len(k)
        cuts.append(pos)
    return "".join(keys), sorted(set(cuts) - {0, pos + len(keys[-1]) if keys else 0})


@dataclass
class BoundaryScore:
    matched: int = 0
    predicted: int = 0
    gold: int = 0

    def __iadd__(self, other: "BoundaryScore") -> "BoundaryScore":
        self.matched += other.matched
        self.predicted += other.predicted
        self.gold += other.gold
        return self

    @property
    def precision(self) -> float:
        return self.matched / self.predicted if self.predicted else 1.0

    @property
    def recall(self) -> float:
        return self.matched / self.gold if self.gold else 1.0


def score_rows(predicted: list[str], gold: list[str]) -> BoundaryScore:
    p_text, p_cuts = _cuts(predicted)
    g_text, g_cuts = _cuts(gold)
    free = set(g_cuts)
    blocks = SequenceMatcher(None, p_text, g_text, autojunk=False).get_matching_blocks()
    matched = 0
    for p in p_cuts:
        for a, b, size in blocks:
            g = b + (p - a)
            if size and a <= p <= a + size and g in free:
                free.discard(g)
                matched += 1
                break
    return BoundaryScore(matched, len(p_cuts), len(g_cuts))


def load_gold(folder: str | Path) -> list[dict]:
    """Every passage of tests/data/gold (or another folder of <kind>.jsonl files), in file order."""
    out = []
    for path in sorted(Path(folder).glob("*.jsonl")):
        with open(path, encoding="utf-8") as f:
            out += [json.loads(line) for line in f if line.strip()]
    return out


def score_reader(passages: Iterable[dict], reader: Callable[[dict], list[str]]) -> dict[str, BoundaryScore]:
    """Boundary scores per corpus kind; reader(passage) returns the rows it yields for passage["raw"]."""
    scores: dict[str, BoundaryScore] = {}
    for p in passages:
        scores.setdefault(p["kind"], BoundaryScore())
        scores[p["kind"]] += score_rows(reader(p), p["sentences"])
    return scores


def text_agreement(predicted: list[str], gold: list[str]) -> tuple[int, int]:
    """(rows written exactly as the gold writes them, rows compared): the rows both sides cut alike (same letters
    and digits), compared character for character with runs of spaces made one. Scores detokenising."""
    norm = " ".join
    gold_by_key = {_key(g): norm(g.split()) for g in gold}
    pairs = [(norm(p.split()), gold_by_key[_key(p)]) for p in predicted if _key(p) in gold_by_key]
    return sum(a == b for a, b in pairs), len(pairs)

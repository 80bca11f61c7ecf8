"""What a sentence table's text says about the reader that made it: rows that are probably not one sentence.

`lvm inspect` and the build's summary print these per table, so bad splitting is seen before training on it:
rows over 100 words (two sentences glued, or a real long one), rows over the encoder's token limit (the encoder
reads only their start), heading-like rows (a title or chapter line a model would learn to predict), and
tokenisation left over (`America ' s`, `1 @,@ 000`).
"""

from __future__ import annotations

import re
from typing import Callable, Iterable

from lvm.ingest.sentences import heading_like

SPACED_APOSTROPHE = re.compile(r"\w ' (?:s|t|m|re|ve|ll|d)\b|\b[A-Z] ' [A-Z]|\b\w*s ' [a-z]")
MOSES_TOKEN = re.compile(r" ?@[-,.]@ ?")
LONG_WORDS = 100


def row_report(texts: Iterable[str], count_tokens: Callable[[list[str]], list[int]] | None = None,
               token_limit: int | None = None) -> dict:
    """Counts and shares of suspect rows, and a few examples of each. count_tokens (the encoder's tokenizer, text →
    token count) and token_limit are optional: without them the token column is None."""
    texts = [t for t in texts if t]
    checks = {
        "over_100_words": lambda t: len(t.split()) > LONG_WORDS,
        "heading_like": heading_like,
        "spaced_apostrophe": lambda t: bool(SPACED_APOSTROPHE.search(t)),
        "moses_token": lambda t: bool(MOSES_TOKEN.search(t)),
    }
    out: dict = {"rows": len(texts)}
    for name, check in checks.items():
        hits = [t for t in texts if check(t)]
        out[name] = {"count": len(hits), "share": len(hits) / max(1, len(texts)), "examples": hits[:3]}
    if count_tokens is not None and token_limit:
        counts = count_tokens(texts)
        hits = [t for t, n in zip(texts, counts) if n > token_limit]
        out["over_token_limit"] = {"count": len(hits), "share": len(hits) / max(1, len(texts)), "examples": hits[:3],
                                   "limit": token_limit}
    else:
        out["over_token_limit"] = None
    return out


def table_row_report(texts: Iterable[str], encoder: str | None) -> dict:
    """row_report with the encoder's own tokenizer where it is on this machine (lvm.ingest.encoders.token_counter)."""
    from lvm.ingest.encoders import token_counter

    texts = [t for t in texts if t]
    counter = None
    if texts and encoder:  # a table without an encoder's name (a seed .npz) has no tokenizer to count with
        try:
            counter = token_counter(encoder)
        except (OSError, ValueError):
            counter = None
    return row_report(texts, *(counter or (None, None)))


def report_lines(report: dict) -> list[str]:
    """The report as short lines for a terminal or a log: one per check, with the first example."""
    lines = []
    for name in ("over_100_words", "over_token_limit", "heading_like", "spaced_apostrophe", "moses_token"):
        r = report.get(name)
        if r is None:
            lines.append(f"{name:<18} n/a (the encoder's tokenizer is not on this machine)")
            continue
        limit = f" (> {r['limit']} tokens)" if "limit" in r else ""
        example = f"  e.g. {r['examples'][0][:70]!r}" if r["examples"] else ""
        lines.append(f"{name:<18} {r['count']} rows, {100 * r['share']:.2f} %{limit}{example}")
    return lines

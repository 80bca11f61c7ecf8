"""Draw the passages of the sentence-boundary gold set from ../shared/corpus (seeded, so a re-draw is identical).

Each passage is raw text exactly as it stands in its file (CRLF removed), cut at a paragraph or sentence-like
break, with the corpus kind it stands for and whether its file is Moses-tokenised. The hand-checked sentence lists
are added to the written files by hand (tests/data/gold/<kind>.jsonl, key "sentences"); this script only draws.

    python scripts/draw_gold_passages.py --out /tmp/drawn   # one <kind>.jsonl per kind, without sentences
"""

from __future__ import annotations

import argparse
import json
import random
import re
from pathlib import Path

CORPUS = Path(__file__).resolve().parents[1].parent / "shared" / "corpus"
COUNTS = {"wikitext": 40, "sotu-moses": 40, "sotu-plain": 35, "brown": 40, "gutenberg-prose": 40,
          "gutenberg-dialogue": 40, "gutenberg-front": 35, "verse": 30}


def _read(path: Path) -> str:
    return path.read_text(encoding="utf-8-sig").replace("\r\n", "\n").replace("\r", "\n")


def _tokenized(text: str) -> bool:
    marks = len(re.findall(r"[,.;:!?](?=\s|$)", text))
    return marks >= 5 and len(re.findall(r"\s[,.;:!?](?=\s|$)", text)) > 0.5 * marks


def _blocks(text: str) -> list[tuple[int, int]]:
    """(start, end) character spans of blank-line separated blocks."""
    spans, pos = [], 0
    for m in re.finditer(r"\n\s*\n", text):
        if text[pos:m.start()].strip():
            spans.append((pos, m.start()))
        pos = m.end()
    if text[pos:].strip():
        spans.append((pos, len(text)))
    return spans


def _slice_at_breaks(text: str, rng: random.Random, size: int, tokenized: bool, at_start: bool = False) -> str:
    """A ~size-character slice of one long line of running text, starting and ending after a full stop."""
    brk = re.compile(r" \. (?=[A-Z])" if tokenized else r"(?<![A-Z])\. (?=[A-Z])")
    ends = [m.end() for m in brk.finditer(text)]
    if at_start or len(ends) < 4:
        start = 0
    else:
        start = rng.choice(ends[: max(1, len(ends) - 3)])
    stop = next((e for e in ends if e >= start + size), len(text))
    return text[start:stop].strip()


def _files(*globs: str) -> list[Path]:
    return sorted(p for g in globs for p in CORPUS.glob(g))


def draw_wikitext(rng: random.Random, n: int) -> list[dict]:
    path = CORPUS / "wikitext2" / "wiki.valid.raw"
    lines = _read(path).split("\n")
    out = []
    heads = [i for i, ln in enumerate(lines) if ln.startswith(" = ")]
    for k in range(n):
        i = rng.choice(heads) if k % 2 == 0 else rng.randrange(len(lines) - 12)
        while not lines[i].strip():
            i += 1
        chunk, chars = [], 0
        while i < len(lines) and chars < 900:
            chunk.append(lines[i])
            chars += len(lines[i])
            i += 1
        out.append({"source": f"wikitext2/{path.name}", "tokenized": True, "raw": "\n".join(chunk).strip("\n")})
    return out


def draw_sotu(rng: random.Random, n: int, tokenized: bool) -> list[dict]:
    files = [p for p in _files("sotu/*.txt") if _tokenized(_read(p)) == tokenized]
    out = []
    for k in range(n):
        path = rng.choice(files)
        text = _read(path)
        lines = [ln for ln in text.split("\n") if len(ln) > 400]
        if not lines:
            continue
        at_start = k % 5 == 0  # the speech's title and salutation
        line = lines[0] if at_start else rng.choice(lines)
        raw = _slice_at_breaks(line, rng, 700, tokenized, at_start)
        if at_start:
            raw = text[: text.index(line)].strip() + "\n\n" + raw
        out.append({"source": f"sotu/{path.name}", "tokenized": tokenized, "raw": raw.strip()})
    return out


def draw_brown(rng: random.Random, n: int) -> list[dict]:
    files = _files("brown/*.txt")
    out = []
    for path in rng.sample(files, n):
        text = _read(path)
        spans = _blocks(text)
        i = rng.randrange(len(spans))
        out.append({"source": f"brown/{path.name}", "tokenized": False,
                    "raw": text[spans[i][0]:spans[min(i + 1, len(spans) - 1)][1]].strip()})
    return out


def _gutenberg_files() -> list[Path]:
    return _files("gutenberg/*.txt", "gutenberg-large/pg*.txt")


def _book_blocks(rng: random.Random, want) -> dict:
    while True:
        path = rng.choice(_gutenberg_files())
        text = _read(path)
        spans = _blocks(text)
        lo = len(spans) // 10
        for _ in range(200):
            i = rng.randrange(lo, len(spans) - 3)
            j = want(text, spans, i)
            if j:
                return {"source": f"{path.parent.name}/{path.name}", "tokenized": False,
                        "raw": text[spans[i][0]:spans[j][1]].strip()}


def _prose_block(block: str) -> bool:
    lines = block.split("\n")
    return len(lines) >= 3 and sum(len(ln) for ln in lines) / len(lines) > 55


def draw_gutenberg_prose(rng: random.Random, n: int) -> list[dict]:
    def want(text, spans, i):
        b = text[spans[i][0]:spans[i][1]]
        if _prose_block(b) and b.count("“") + b.count('"') == 0 and len(b) < 1400:
            return i + (1 if len(b) < 500 else 0)
        return None
    return [_book_blocks(rng, want) for _ in range(n)]


def draw_gutenberg_dialogue(rng: random.Random, n: int) -> list[dict]:
    def want(text, spans, i):
        raw = text[spans[i][0]:spans[i + 3][1]]
        return i + 3 if raw.count("“") + raw.count('"') >= 6 and len(raw) < 1500 else None
    return [_book_blocks(rng, want) for _ in range(n)]


def draw_gutenberg_front(rng: random.Random, n: int) -> list[dict]:
    out = []
    files = _gutenberg_files()
    for k in range(n):
        path = rng.choice(files)
        text = _read(path)
        if k % 2 == 0:  # the opening: title page, contents, the first heading and the start of the text
            lines = text.split("\n")
            start = 0
        else:  # a chapter break inside the book
            heads = [m.start() for m in re.finditer(r"\n\n(CHAPTER|Chapter|BOOK|PART|[IVXLC]+\.)[^\n]{0,60}\n", text)]
            if not heads:
                continue
            start = text[: rng.choice(heads) - 600].rfind("\n\n") + 2
            lines = text[start:].split("\n")
            start = 0
        chunk, prose = [], 0
        for ln in lines[start:]:
            chunk.append(ln)
            prose += len(ln) > 55
            if prose >= 6 and not ln.strip():
                break
        out.append({"source": f"{path.parent.name}/{path.name}", "tokenized": False,
                    "raw": "\n".join(chunk).strip("\n")})
    return out


def draw_verse(rng: random.Random, n: int) -> list[dict]:
    """A block of short lines (verse, a letter's heading, a list) between two blocks of prose."""
    def want(text, spans, i):
        block = lambda k: text[spans[k][0]:spans[k][1]]  # noqa: E731
        lines = block(i + 1).split("\n")
        letters = sum(map(str.isalpha, block(i + 1)))
        verse = len(lines) >= 2 and all(len(ln.strip()) < 50 for ln in lines) and letters > 40
        return i + 2 if verse and _prose_block(block(i)) and _prose_block(block(i + 2)) else None

    out = []
    for _ in range(n):
        rec = _book_blocks(rng, want)
        parts = re.split(r"(\n\s*\n)", rec["raw"])  # keep the end of the prose before the verse
        parts[0] = "\n".join(parts[0].split("\n")[-3:])
        out.append({**rec, "raw": "".join(parts)})
    return out


DRAW = {
    "wikitext": draw_wikitext,
    "sotu-moses": lambda rng, n: draw_sotu(rng, n, True),
    "sotu-plain": lambda rng, n: draw_sotu(rng, n, False),
    "brown": draw_brown,
    "gutenberg-prose": draw_gutenberg_prose,
    "gutenberg-dialogue": draw_gutenberg_dialogue,
    "gutenberg-front": draw_gutenberg_front,
    "verse": draw_verse,
}


_END = re.compile(r"(?<!\bMr)(?<!\bMrs)(?<!\bDr)(?<!\bSt)[.!?][”\"’']?(?=\s+[“\"A-Z])|(?<= \.)(?= [A-Z])")


def _trim(raw: str, limit: int = 1100) -> str:
    """Cut an over-long passage after the last full stop before `limit` characters (past 600)."""
    if len(raw) <= limit:
        return raw
    ends = [m.end() for m in _END.finditer(raw, 600, limit)]
    return raw[: ends[-1]] if ends else raw


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, required=True, help="a new folder (not tests/data/gold)")
    ap.add_argument("--seed", type=int, default=25)
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    for kind, n in COUNTS.items():
        rng = random.Random(f"{args.seed}-{kind}")
        recs = [{**r, "raw": _trim(r["raw"])} for r in DRAW[kind](rng, n)]
        with open(args.out / f"{kind}.jsonl", "w", encoding="utf-8") as f:
            for i, rec in enumerate(recs):
                f.write(json.dumps({"id": f"{kind}-{i:03d}", "kind": kind, **rec}, ensure_ascii=False) + "\n")
        print(f"{kind}: {len(recs)} passages, {sum(len(r['raw']) for r in recs)} characters")


if __name__ == "__main__":
    main()

"""True sentences: the reader on every shared corpus, against the hand-checked gold set, before and after.

    PYTHONPATH=$PWD .venv/bin/python bench/sentence_quality.py [--before REV] [--corpora sotu,brown,...]

For each corpus: rows, reading + splitting speed (sentences/s, one process, whole corpus), and the share of rows
over 100 words, heading-like, with a spaced apostrophe (`America ' s`) or a Moses token (`@-@`)
(lvm.ingest.row_checks). Beside it, the gold set's own share of true sentences over 100 words for the corpus's
kinds, and the boundary precision and recall of the reader per gold kind (lvm.ingest.sentence_gold).
`--before REV` reads every corpus again with the reader of that git revision (checked out into a temporary
worktree, run in a subprocess), for the before/after table. Prints the CPU line first; writes
$LVM_DATA_DIR/bench/sentence_quality.json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CORPUS = ROOT.parent / "shared" / "corpus"
CORPORA = {"sotu": "sotu", "wikitext2": "wikitext2/wiki.valid.raw", "brown": "brown", "gutenberg": "gutenberg",
           "gutenberg-large": "gutenberg-large"}
GOLD_KINDS = {"sotu": ("sotu-moses", "sotu-plain"), "wikitext2": ("wikitext",), "brown": ("brown",),
              "gutenberg": ("gutenberg-prose", "gutenberg-dialogue", "gutenberg-front", "verse"),
              "gutenberg-large": ("gutenberg-prose", "gutenberg-dialogue", "gutenberg-front", "verse")}


def read_rows(name: str) -> tuple[list[str], float]:
    """Every row the reader on sys.path yields for a corpus, and the seconds it took."""
    try:
        from lvm.ingest.corpus import read_corpus
    except ImportError:  # a revision before lvm/ was grouped by concern
        from lvm.corpus import read_corpus
    warnings.simplefilter("ignore")
    t = time.perf_counter()
    docs = read_corpus(CORPUS / CORPORA[name])
    return [s for d in docs for s in d.sentences], time.perf_counter() - t


def summarize(rows: list[str], seconds: float) -> dict:
    from lvm.ingest.row_checks import row_report  # today's checks, whatever reader made the rows

    r = row_report(rows)
    keys = ("over_100_words", "heading_like", "spaced_apostrophe", "moses_token")
    return {"rows": len(rows), "seconds": round(seconds, 2), "sentences_per_s": round(len(rows) / seconds),
            **{k: r[k]["share"] for k in keys}, "counts": {k: r[k]["count"] for k in keys}}


def measure(names: list[str]) -> dict:
    out = {}
    for name in names:
        out[name] = summarize(*read_rows(name))
        print(f"  {name}: {out[name]['rows']} rows in {out[name]['seconds']} s", flush=True)
    return out


_READ_ONLY = """
import json, sys, time, warnings
sys.meta_path = [f for f in sys.meta_path if "__editable__" not in getattr(f, "__module__", "")]  # this checkout's
sys.path.insert(0, ".")                                                                            # install: off
warnings.simplefilter("ignore")
try:
    from lvm.ingest.corpus import read_corpus
except ImportError:
    from lvm.corpus import read_corpus
t = time.perf_counter()
docs = read_corpus(sys.argv[1])
seconds = time.perf_counter() - t
json.dump({"rows": [s for d in docs for s in d.sentences], "seconds": seconds}, open(sys.argv[2], "w"))
"""


def before(rev: str, names: list[str]) -> dict:
    """measure() with the reader of git revision `rev` (a temporary worktree, a subprocess that only reads); the
    rows are judged here, by today's row checks."""
    tmp = Path(tempfile.mkdtemp(prefix="lvm-before-"))
    subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(tmp / "tree"), rev], check=True,
                   capture_output=True)
    out = {}
    try:
        for name in names:
            subprocess.run([sys.executable, "-c", _READ_ONLY, str(CORPUS / CORPORA[name]), str(tmp / "rows.json")],
                           env={**os.environ, "PYTHONPATH": str(tmp / "tree")}, cwd=str(tmp / "tree"), check=True)
            got = json.loads((tmp / "rows.json").read_text())
            out[name] = summarize(got["rows"], got["seconds"])
            print(f"  {name} at {rev}: {out[name]['rows']} rows in {out[name]['seconds']} s", flush=True)
    finally:
        subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(tmp / "tree")],
                       capture_output=True)
    return out


def gold_scores() -> dict:
    from lvm.ingest.sentence_gold import load_gold, score_reader
    from lvm.ingest.sentences import text_sentences

    gold = load_gold(ROOT / "tests" / "data" / "gold")
    scores = score_reader(gold, lambda p: text_sentences(p["raw"], "wikitext" if p["kind"] == "wikitext" else "text",
                                                          p["tokenized"]))
    long = {}
    for p in gold:
        n, k = long.get(p["kind"], (0, 0))
        long[p["kind"]] = (n + len(p["sentences"]), k + sum(len(s.split()) > 100 for s in p["sentences"]))
    return {"passages": len(gold),
            "kinds": {k: {"precision": s.precision, "recall": s.recall, "boundaries": s.gold,
                          "rows": long[k][0], "rows_over_100_words": long[k][1]} for k, s in scores.items()}}


def main() -> None:
    from bench.machine import describe_machine

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--before", help="a git revision whose reader to measure too (e.g. fbd3139)")
    ap.add_argument("--corpora", default=",".join(CORPORA))
    args = ap.parse_args()
    names = args.corpora.split(",")
    print(describe_machine(), flush=True)
    result = {"machine": describe_machine(), "gold": gold_scores(), "after": measure(names)}
    if args.before:
        result["before"] = before(args.before, names)
        result["before_rev"] = args.before
    print("\n| kind | passages' rows | precision | recall | rows over 100 words |\n|---|---:|---:|---:|---:|")
    for k, s in sorted(result["gold"]["kinds"].items()):
        print(f"| {k} | {s['rows']} | {s['precision']:.3f} | {s['recall']:.3f} | {s['rows_over_100_words']} |")
    print("\n| corpus | | rows | > 100 words | heading-like | spaced apostrophe | Moses token | read + split |\n"
          "|---|---|---:|---:|---:|---:|---:|---:|")
    for name in names:
        for side in ("before", "after"):
            m = result.get(side, {}).get(name)
            if m:
                c = m["counts"]
                print(f"| {name} | {side} | {m['rows']:,} | {100 * m['over_100_words']:.2f} % | "
                      f"{100 * m['heading_like']:.2f} % | {c['spaced_apostrophe']} | {c['moses_token']} | "
                      f"{m['sentences_per_s']:,} /s |")
    out = Path(os.environ.get("LVM_DATA_DIR", ROOT / "data")) / "bench" / "sentence_quality.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()

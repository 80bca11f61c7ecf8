"""Text corpora → documents → sentences.

A corpus is read into `Document`s (an id, a title and paragraphs of running prose, in reading order), and each
document is split into sentences by lvm.ingest.sentences (which blocks are prose, detokenising, the splitter), one
paragraph at a time; its rows are scored against the hand-checked gold set in tests/data/gold.
"""

from __future__ import annotations

import json
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator

from lvm.ingest.sentences import (
    _WIKI_TITLE,
    detokenize,
    is_prose,
    looks_tokenized,
    prose_paragraphs,
    split_sentences,
    wikitext_paragraphs,
)
from lvm.util.atomic import write_atomic

FORMATS = ("auto", "text", "wikitext", "jsonl", "builtin")


class CorpusError(ValueError):
    """A corpus file that cannot be read, with the file and the reason."""


@dataclass
class Document:
    doc_id: str
    title: str
    paragraphs: list[str]
    source: str = ""
    sentences: list[str] = field(default_factory=list)
    overlong: int = 0  # runs of text too long to be a sentence, left out (see sentencize)


MAX_SENTENCE_CHARS = 5_000  # the longest row of the protocol's tables and the built-in corpus has 2,855 characters


def sentencize(doc: Document) -> Document:
    """The document's sentences; a "sentence" over MAX_SENTENCE_CHARS is text without sentence ends (a transcript
    without punctuation, a table dump), not a sentence: it is left out and counted in `doc.overlong`."""
    found = [s for p in doc.paragraphs for s in split_sentences(p)]
    doc.sentences = [s for s in found if len(s) <= MAX_SENTENCE_CHARS]
    doc.overlong = len(found) - len(doc.sentences)
    return doc


# ---------------------------------------------------------------------------------------------------- readers

def _read_utf8(path: Path) -> str:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise CorpusError(f"{path}: cannot read ({exc.strerror})") from exc
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise CorpusError(
            f"{path}: not valid UTF-8 (rule: text files must be UTF-8): byte 0x{data[exc.start]:02x} at offset "
            f"{exc.start}, line {line}. Convert it first, e.g. `iconv -f latin1 -t utf-8`."
        ) from None
    return _without_controls(text.replace("\r\n", "\n").replace("\r", "\n"))


_CONTROLS = re.compile(r"[\x00-\x08\x0b\x0e-\x1f\x7f]+")


def _without_controls(text: str) -> str:
    """Control characters (NUL and the like) out of the text, as spaces; a form feed (a page break) is a line end.
    A sentence holding them would reach the encoder, the table and the server's replies."""
    return _CONTROLS.sub(" ", text.replace("\x0c", "\n"))


def read_text_file(path: Path, detok: bool | None = None) -> Document:
    """One document; detok=None: detokenise only when the file looks Moses-tokenised (lvm.ingest.sentences.
    looks_tokenized)."""
    text = _read_utf8(path)
    if not text.strip():
        raise CorpusError(f"{path}: empty file (rule: a document needs text)")
    detok = looks_tokenized(text) if detok is None else detok
    return Document(doc_id=path.stem, title=path.stem, paragraphs=prose_paragraphs(text, detok), source=str(path))


def read_text_folder(folder: Path, detok: bool | None = None) -> list[Document]:
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in (".txt", ".md", ""))
    files = [p for p in files if not p.name.startswith(".") and p.name.lower() != "readme.md"]
    if not files:
        raise CorpusError(f"{folder}: no .txt files found")
    docs = [read_text_file(p, detok) for p in files]
    by_id: dict[str, list[str]] = {}
    for d in docs:
        by_id.setdefault(d.doc_id, []).append(str(Path(d.source).relative_to(folder)))
    dup = {k: v for k, v in by_id.items() if len(v) > 1}
    if dup:
        shown = "; ".join(f"{k!r}: {', '.join(v)}" for k, v in list(dup.items())[:5])
        raise CorpusError(f"{folder}: {len(dup)} document ids repeat (rule: a document's id is its file name "
                          f"without the suffix, unique in the folder): {shown}")
    return docs


def read_wikitext(path: Path, detok: bool = True) -> list[Document]:
    """WikiText raw: an article starts at a ` = Title = ` line that stands between blank lines (formulas inside
    articles can look like titles but are not framed that way); ` = = Section = = ` lines are dropped."""
    lines = _read_utf8(path).split("\n")
    if not any(line.strip() for line in lines):
        raise CorpusError(f"{path}: empty file (rule: a WikiText file needs at least one ` = Title = ` line)")
    docs: list[Document] = []
    for i, line in enumerate(lines):
        m = _WIKI_TITLE.match(line)
        framed = (i == 0 or not lines[i - 1].strip()) and (i + 1 >= len(lines) or not lines[i + 1].strip())
        if m and framed:
            title = detokenize(m.group(1)) if detok else m.group(1).strip()
            docs.append(Document(doc_id=f"{len(docs):04d}-{_slug(title)}", title=title, paragraphs=[],
                                 source=str(path)))
        elif docs:
            docs[-1].paragraphs += wikitext_paragraphs([line], detok)
    if not docs:
        raise CorpusError(f"{path}: no ` = Title = ` article headings found (is this WikiText raw?)")
    return docs


def read_jsonl(path: Path, detok: bool | None = None) -> list[Document]:
    docs, bad, lines_of = [], [], {}
    text = _read_utf8(path)
    for n, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
            doc_id, body = str(rec["id"]), rec["text"]
            if not isinstance(body, str):
                raise TypeError("text is not a string")
            body = _without_controls(body)
        except (ValueError, KeyError, TypeError) as exc:
            bad.append(f"line {n}: {exc.__class__.__name__}: {exc}")
            continue
        except RecursionError:
            bad.append(f"line {n}: nested too deeply to be a record")
            continue
        tok = looks_tokenized(body) if detok is None else detok
        paras = [detokenize(p) if tok else " ".join(p.split()) for p in re.split(r"\n\s*\n", body) if p.strip()]
        lines_of.setdefault(doc_id, []).append(n)
        docs.append(Document(doc_id=doc_id, title=str(rec.get("title", doc_id)), paragraphs=paras, source=str(path)))
    if bad:
        raise CorpusError(
            f"{path}: {len(bad)} bad JSONL lines (rule: each line is {{\"id\": ..., \"text\": \"...\"}}); first: "
            + "; ".join(bad[:5])
        )
    if not docs:
        raise CorpusError(f"{path}: empty file (rule: at least one JSONL record)")
    dup = {k: v for k, v in lines_of.items() if len(v) > 1}
    if dup:
        shown = "; ".join(f"id {k!r} on lines {', '.join(map(str, v[:5]))}" for k, v in list(dup.items())[:5])
        raise CorpusError(f"{path}: {len(dup)} duplicate ids (rule: each JSONL record's \"id\" is unique): {shown}")
    return docs


def write_sample_corpus(folder: str | Path) -> int:
    """The built-in corpus as .txt files (one per article, its paragraphs) in an empty or missing `folder`, with a
    README saying it is a sample to replace: what `make server` puts in data/corpus on first use, so the deployments
    that read it have text. Returns the files written; a folder that already holds text is left alone (0)."""
    folder = Path(folder)
    if folder.is_dir() and any(p.is_file() and not p.name.startswith(".") and p.name.lower() != "readme.md"
                               for p in folder.rglob("*")):
        return 0
    folder.mkdir(parents=True, exist_ok=True)
    docs = read_builtin()
    for d in docs:
        text = "\n\n".join(d.paragraphs) + "\n"
        write_atomic(folder / f"{d.doc_id}.txt", lambda tmp, text=text: Path(tmp).write_text(text))
    note = ("A sample: CPython's Language Reference, the built-in corpus, one .txt per article, put here because "
            "this folder was empty.\nReplace these files with your own text (.txt files, or one .jsonl); the next "
            "lvm-build-dataset run embeds it.\n")
    write_atomic(folder / "README.md", lambda tmp: Path(tmp).write_text(note))
    return len(docs)


def read_builtin() -> list[Document]:
    """CPython's Language Reference topics (`pydoc_data.topics`): ~79 articles of prose that every install has.
    Grammar productions, literal blocks (after a `::` line), doctests and reST heading underlines are dropped."""
    from pydoc_data.topics import topics

    docs = []
    for name in sorted(topics):
        paras, literal_next = [], False
        for block in re.split(r"\n\s*\n", topics[name]):
            lines = [ln for ln in block.split("\n") if ln.strip()]
            if not lines:
                continue
            is_code = literal_next or "::=" in block or lines[0].lstrip().startswith(">>>")
            literal_next = lines[-1].rstrip().endswith("::")
            if is_code or set(lines[-1].strip()) <= set("*=-~^"):
                continue
            para = " ".join(" ".join(lines).split())
            if is_prose([para]):
                paras.append(para)
        docs.append(Document(doc_id=name, title=name, paragraphs=paras, source="pydoc_data.topics"))
    return docs


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:60]


def detect_format(path: str | Path) -> str:
    if str(path) == "builtin":
        return "builtin"
    p = Path(path)
    if p.is_dir():
        return "text"
    if p.suffix.lower() in (".jsonl", ".ndjson"):
        return "jsonl"
    if p.suffix.lower() in (".raw", ".tokens"):
        return "wikitext"
    head = p.read_bytes()[:20000].decode("utf-8", errors="ignore").replace("\r", "").split("\n")
    if any(_WIKI_TITLE.match(line) for line in head[:5]):
        return "wikitext"
    return "text"


def read_corpus(path: str | Path, fmt: str = "auto", detokenize: bool | None = None) -> list[Document]:
    """Read any supported corpus into sentence-split documents, in a stable order.

    detokenize: undo Moses tokenisation (` , `, ` 's`, ` @-@ `). None (the default): always for WikiText, which
    is tokenised, and for a plain-text file or JSONL record only when it looks tokenised (looks_tokenized); prose
    is read as written. True/False: for every document."""
    if fmt not in FORMATS:
        raise CorpusError(f"unknown corpus format {fmt!r}; choose one of {', '.join(FORMATS)}")
    if str(path) != "builtin" and not Path(path).exists():
        raise CorpusError(f"{path}: no such file or folder")
    fmt = detect_format(path) if fmt == "auto" else fmt
    if fmt == "builtin":
        docs = read_builtin()
    elif fmt == "wikitext":
        docs = read_wikitext(Path(path), True if detokenize is None else detokenize)
    elif fmt == "jsonl":
        docs = read_jsonl(Path(path), detokenize)
    else:
        p = Path(path)
        docs = read_text_folder(p, detokenize) if p.is_dir() else [read_text_file(p, detokenize)]
    docs = [sentencize(d) for d in docs]
    overlong = {d.doc_id: d.overlong for d in docs if d.overlong}
    if overlong:
        warnings.warn(f"{path}: {sum(overlong.values())} runs of text over {MAX_SENTENCE_CHARS:,} characters without "
                      f"a sentence end are left out (rule: a sentence ends with . ! or ?), in "
                      f"{len(overlong)} documents: {list(overlong)[:5]}", stacklevel=2)
    empty = [d.doc_id for d in docs if not d.sentences]
    if empty:
        warnings.warn(f"{path}: {len(empty)} documents have no sentences and are skipped: {empty[:5]}", stacklevel=2)
    seen, unique, repeated = set(), [], []
    for d in docs:  # an exact copy of a document would sit on both sides of a split: keep the first
        key = tuple(d.sentences)
        if d.sentences and key in seen:
            repeated.append(d.doc_id)
        elif d.sentences:
            seen.add(key)
            unique.append(d)
    if repeated:
        warnings.warn(f"{path}: {len(repeated)} documents repeat an earlier one and are skipped: {repeated[:5]}",
                      stacklevel=2)
    return unique


def iter_sentences(docs: Iterable[Document]) -> Iterator[tuple[str, int, str]]:
    for d in docs:
        for i, s in enumerate(d.sentences):
            yield d.doc_id, i, s


def corpus_fingerprint(path: str | Path) -> str:
    """A content hash of a corpus (every file's bytes; for `builtin`, the topics text): the cache key of reading it."""
    import hashlib

    h = hashlib.sha256()
    if str(path) == "builtin":
        from pydoc_data.topics import topics

        for name in sorted(topics):
            h.update(name.encode() + b"\0" + topics[name].encode() + b"\0")
        return h.hexdigest()
    p = Path(path)
    files = sorted(f for f in p.rglob("*") if f.is_file()) if p.is_dir() else [p]
    for f in files:
        h.update(str(f.relative_to(p) if p.is_dir() else f.name).encode() + b"\0" + f.read_bytes() + b"\0")
    return h.hexdigest()

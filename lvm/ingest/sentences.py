"""Running text → sentences: which blocks are prose, Moses detokenising, and the sentence splitter.

The splitter is rule-based and small on purpose: a candidate boundary is an end mark (`.` `!` `?` `…`, with any
closing quotes or brackets) followed by a space or a dash; it is taken unless the next word starts in lower case
("“No!” cried she"), the word before is an abbreviation or an initial ("Mr. Darcy", "H. G. Wells"), or a
capitalised speech tag follows a `?`/`!` quotation ("“Why?” Mary asked"). pysbd, the splitter before it, never
split inside a quotation, which glued a third of the dialogue's sentences together (tests/data/gold; the scores
are in BENCHMARKS.md). Blocks that are not running prose — headings, contents, verse, bylines, illustration tags,
footnote markers, a transcript's title line — never reach the splitter (`prose_paragraphs`).
"""

from __future__ import annotations

import re

_SPACES = re.compile(r"\s+")

# ---------------------------------------------------------------------------------------------------- detokenising

_CONTRACTIONS = [  # transcripts tokenised as `America ' s`, `don ' t`, `O ' Neill`
    (re.compile(r"(\w) ' (s|t|m|re|ve|ll|d)\b", re.IGNORECASE), r"\1'\2"),
    (re.compile(r"\b([A-Z]) ' (?=[A-Z][a-z])"), r"\1'"),
]
_SPACED_APOSTROPHE = [  # after the quoted pairs: `workers ' rights`, `' 89`, `' round`
    (re.compile(r"(\w[sS]) ' (?=\w)"), r"\1' "),
    (re.compile(r" ' (\d\ds?|round|em|til|cause|n)\b"), r" '\1"),
    (re.compile(r"(\w) ' (?=[,.;:!?)]|$)"), r"\1'"),
]
_DASH_FOLLOWERS = ("and|but|or|it|its|yours|which|that|this|the|a|an|we|i|you|he|she|they|not|if|as|so|well|"
                   "what|who|when|where|our|my|his|her|their|there|these|those|even|perhaps|indeed|including|"
                   "especially|all|whether|because|although|every|each|no|nor|yet|now|then")
_DETOK_RULES = [
    (re.compile(r" @([-,.])@ "), r"\1"),  # WikiText number/compound escapes: 1 @,@ 000 → 1,000
    (re.compile(r" ([,.;:!?%])"), r"\1"),  # space before punctuation
    (re.compile(r" (n't|'t|'s|'re|'ve|'ll|'d|'m)\b", re.IGNORECASE), r"\1"),
    (re.compile(rf"(?<=\w) - (?!(?:{_DASH_FOLLOWERS})\b)(?=\w)", re.IGNORECASE), "-"),  # `200 - year - old`
    (re.compile(r"\b([A-Za-z])\. (?=[A-Za-z]\.)"), r"\1."),  # `U. S. A.`, `p. m.`
    (re.compile(r"([(\[{]) "), r"\1"),
    (re.compile(r" ([)\]}])"), r"\1"),
    (re.compile(r"\$ (?=\d)"), "$"),
    (re.compile(r"(?<=\d) (?=[–\-/] ?\d)|(?<=\d[–/]) (?=\d)"), ""),
    (re.compile(r"(?<=\d[–/‑]) (?=\d)"), ""),
    (re.compile(r"(?<=\w) ([–‑]) (?=\w)"), r"\1"),  # WikiText's en dashes and non-breaking hyphens: `1996 – 97`
    (re.compile(r"(?<=\d): (?=\d\d\b)"), ":"),
    (re.compile(r"(?<![\d,])(\d{1,3}), (?=\d{3}\b)"), r"\1,"),
]
_QUOTED = re.compile(r'" ([^"]*?) "')
_SINGLE_QUOTED = re.compile(r"(^|\s)' ([^']*?) '(?=\s|[,.;:!?]|$)")


def detokenize(text: str) -> str:
    """Undo Moses-style tokenisation (WikiText raw, SOTU transcripts): ` , `, ` 's`, `America ' s`, `1 @,@ 000`,
    `( 1776 )`, `" quoted "`. Only for tokenised input: on prose it would glue straight double quotes to their
    neighbours, so the readers apply it only where `looks_tokenized` says so (and always to WikiText).
    Hand-written rules rather than sacremoses: on the gold set's tokenised rows they match the hand-detokenised
    text more often (bench/sentence_quality.py, BENCHMARKS.md)."""
    text = mend_apostrophes(_SPACES.sub(" ", text).strip())
    for pattern, repl in _DETOK_RULES:
        text = pattern.sub(repl, text)
    return _QUOTED.sub(r'"\1"', text)


def mend_apostrophes(text: str) -> str:
    """`America ' s` → `America's`, `' pro '` → `'pro'`: spaced apostrophes and single quotes, which no prose
    writes; safe on any text, so every reader applies it (Brown's re-joined tokens keep some)."""
    if " '" not in text and "' " not in text:
        return text
    for pattern, repl in _CONTRACTIONS:
        text = pattern.sub(repl, text)
    text = _SINGLE_QUOTED.sub(r"\1'\2'", text)
    for pattern, repl in _SPACED_APOSTROPHE:
        text = pattern.sub(repl, text)
    return text


_MARKS = re.compile(r"[,.;:!?](?=\s|$)")
_SPACED_MARKS = re.compile(r"\s[,.;:!?](?=\s|$)")


def looks_tokenized(text: str) -> bool:
    """Moses-tokenised text puts a space before most commas and full stops (` , ` ` . `); prose almost never does
    (on the shared corpus: over 0.9 of the marks in tokenised SOTU transcripts, under 0.05 in Brown and Gutenberg)."""
    marks = len(_MARKS.findall(text))
    return marks >= 5 and len(_SPACED_MARKS.findall(text)) > 0.5 * marks


# ---------------------------------------------------------------------------------------------------- splitting

_TITLES = {"Mr", "Mrs", "Ms", "Messrs", "Mme", "Mlle", "Dr", "St", "Ste", "Prof", "Rev", "Hon", "Gen", "Col",
           "Capt", "Lt", "Sgt", "Maj", "Gov", "Sen", "Rep", "Adm", "Cmdr", "Gens", "Fr", "Sr", "Mt", "Ft", "Pres",
           "Supt", "Insp", "Det", "Brig", "Lieut", "Esq"}
_ABBREVIATIONS = {  # as written: a capitalised "Tom." or "Art." is a name or a word, "tom." and "art." are not
    "No", "Nos", "Vol", "Vols", "Co", "Corp", "Inc", "Ltd", "Bros", "Jr", "Sr", "Jan", "Feb", "Mar", "Apr", "Jun",
    "Jul", "Aug", "Sep", "Sept", "Oct", "Nov", "Dec", "Ave", "Rd", "Blvd", "Fig", "Figs", "Ch", "Chap", "Sec",
    "Dept", "Univ", "Gov", "Govt", "Hwy", "Bus", "Vs", "Viz", "Cf", "Ibid", "Op", "Ms", "Mss", "Pp",
    "vol", "vols", "p", "pp", "ch", "chap", "fig", "figs", "co", "vs", "viz", "cf", "ibid", "op", "cit", "ed", "eds",
    "trans", "approx", "ca", "c", "v", "sec", "sq", "cap", "lib", "tom", "al", "seq", "br", "e.g", "i.e", "a.m",
    "p.m", "ms", "mss", "u.s", "inst", "jr", "sr"}
_STARTERS = {"The", "A", "An", "This", "That", "These", "Those", "It", "Its", "I", "We", "He", "She", "They",
             "You", "There", "Here", "But", "And", "Or", "So", "Yet", "Now", "Then", "In", "On", "At", "For", "If",
             "When", "While", "As", "After", "Before", "Our", "My", "His", "Her", "Their", "Your", "What", "Why",
             "How", "Who", "Where", "No", "Not", "Let", "Today", "Tonight", "To", "Thank", "Since", "With", "By",
             "From", "All", "One", "Some", "Many", "Most", "Every", "Each", "Both", "Such", "Never", "Once"}
_SPEECH_VERBS = ("said|says|asked|asks|cried|replied|answered|exclaimed|shouted|whispered|muttered|remarked|returned|"
                 "continued|added|observed|began|called|screamed|raged|repeated|inquired|enquired|demanded|"
                 "murmured|sighed|laughed|ejaculated|groaned|gasped|roared|yelled|protested|urged|pleaded|insisted|interrupted|"
                 "retorted|echoed|ventured|stammered|snapped|growled|sobbed|wailed|faltered|resumed|persisted")
_SPEECH_TAG = re.compile(rf"^(?:I|He|She|They|We|It|(?:Mrs?\.|Miss|Dr\.|Lady|Sir|Lord|Aunt|Uncle)\s+[A-Z][\w’'-]+|"
                         rf"(?:The\s+(?:[A-Z]?[a-z’'-]+\s+){{0,2}}[a-z]+)|[A-Z][a-z’'-]+(?:\s+[A-Z][a-z’'-]+)?)"
                         rf"\s+(?:had\s+|has\s+)?(?:{_SPEECH_VERBS})\b")
_CLOSERS = "\"”’')]_*»"
_OPENERS = "\"“‘'([_*«¿¡—–-"
_CANDIDATE = re.compile(r"(?<![\[.!?…])[.!?…]+[\"”’')\]_*»]*(?:\s+|(?:--|—)(?=[“\"‘'A-Z_]))"
                        r"|(?<=[a-z]{2})[.!?][\"”]?(?=[A-Z][a-z])")
_OMISSION = re.compile(r"^\[(?:\.\.\.|…)\]\s*")
_MONTHS = "January|February|March|April|May|June|July|August|September|October|November|December"
_RUN_IN_DATE = re.compile(rf"^_?(?:(?:Monday|Tuesday|Wednesday|Thursday|Friday|Saturday|Sunday),?\s+)?(?:\d{{1,2}}\s+)?"
                          rf"(?:{_MONTHS})(?:\s+\d{{1,2}})?(?:,?\s+\d{{4}})?\._?\s*(?:--|—)?\s*(?=[A-Z“\"])",
                          re.IGNORECASE)
_INITIAL = re.compile(r"^[A-Z]$")
_DOTTED = re.compile(r"^(?:[A-Za-z]\.)+[A-Za-z]$")
_SALUTATION = re.compile(r"^(?:(?:Mr\.|Madame?|Mister)\s+(?:Speaker|President|Vice President|Chairman|Chief Justice)"
                         r"|Members of|My fellow)[^:]{0,400}?:\s+(?=[A-Z])")


def _is_boundary(before: str, end: str, after: str) -> bool:
    """Whether the end mark `end`, after text `before` and before text `after`, ends a sentence."""
    if not end.endswith((" ", "\t", "\n", "-", "—")) and after.split(" ", 1)[0].rstrip(",;:") not in _STARTERS:
        return False  # glued with no space: a break only before a sentence's first word ("cuts.In other words"),
        # never inside a dotted name ("decimal.Decimal", "collections.OrderedDict")
    after = _OMISSION.sub("", after)
    first = after.split(" ", 1)[0]
    if not first or not first.strip(".…"):
        return False  # a spaced ellipsis: decide after it
    if re.match(r"\([a-z0-9]{1,3}\) [A-Z]", after):
        return True  # a lettered item: "appropriations. (b) Expenditures"
    nxt = after.lstrip(_OPENERS + " ")
    if not nxt or nxt[0].islower():
        return False
    if end.rstrip().endswith(("--", "—")) and len(after.split()) <= 5:
        return False  # an attribution or signature after a dash: "delay.--HOLMWOOD."
    if after[0] == "(" and re.match(r"\([^()]{1,60}\)[.,;:]", after):
        return False  # a citation before the sentence's own full stop: "futuro." (Van Vloten).
    marks = end.rstrip(_CLOSERS + " \t\n-—")
    closed = len(end.rstrip(" \t\n-—")) > len(marks)
    if set(marks) & set("!?"):
        return not _SPEECH_TAG.match(nxt)
    if marks != ".":  # an ellipsis (alone or spaced): a boundary before a capital
        return True
    words = before.split()
    if words and words[-1][:1] in "\"“" and re.match(r"^[\w.]+[\"”][.,;:]?$", first):
        return False  # a quoted name wrapped at its dot: "types. MappingProxyType"
    word = words[-1].lstrip(_OPENERS) if words else ""
    if closed or not word:
        return True
    if (word.isdigit() or _ROMAN.match(word)) and (len(words) == 1 or words[-2].endswith(":")):
        return False  # a numbered item: "7. The education ...", "because: 1. It makes"
    if re.match(r"\d{1,2}\. [A-Z]", nxt):
        return True  # the next numbered item
    if nxt[0].isdigit():
        return word.isalpha() and len(word) >= 4 and word.lower() not in _ABBREVIATIONS and not _ROMAN.match(word)
    starter = nxt.split(None, 1)[0].strip(_CLOSERS + ",;:") in _STARTERS or after[0] in "“\"(‘"
    if word.capitalize() in _TITLES:
        return False
    if _INITIAL.match(word) or _DOTTED.match(word) or word in _ABBREVIATIONS:
        return starter
    return True


def split_sentences(paragraph: str) -> list[str]:
    """Sentences of one paragraph. A piece without a letter or digit (a stray quote mark) joins the row before it."""
    paragraph = _SPACES.sub(" ", paragraph).strip()
    if not paragraph:
        return []
    paragraph = _RUN_IN_DATE.sub("", paragraph, count=1)
    m = _SALUTATION.match(paragraph)  # "Mr. Speaker, ..., fellow citizens: Less than ..." opens a transcript
    head = [paragraph[: m.end()].strip()] if m else []
    paragraph = paragraph[m.end():] if m else paragraph
    rows, start = [], 0
    for c in _CANDIDATE.finditer(paragraph):
        # bounded slices: the rules read a few words either side (whole paragraphs made this quadratic)
        if _is_boundary(paragraph[max(start, c.start() - 300):c.start()], c.group(), paragraph[c.end():c.end() + 400]):
            rows.append(paragraph[start:c.end()].strip())
            start = c.end()
    rows.append(paragraph[start:].strip())
    out: list[str] = []
    for row in head + rows:
        if any(ch.isalnum() for ch in row):
            out.append(row)
        elif out and row:
            out[-1] = f"{out[-1]} {row}"
    return out


# ---------------------------------------------------------------------------------------------------- prose blocks

_GUTENBERG_START = re.compile(r"^\*\*\* ?START OF (THE|THIS) PROJECT GUTENBERG.*$", re.MULTILINE | re.IGNORECASE)
_GUTENBERG_END = re.compile(r"^\*\*\* ?END OF (THE|THIS) PROJECT GUTENBERG.*$", re.MULTILINE | re.IGNORECASE)
_TAGS = re.compile(r"\[(?:Illustration|Frontispiece|Picture|Sidenote|Footnote|Transcriber)(?:[^\[\]]|\[[^\]]*\])*\]",
                   re.IGNORECASE)
_MARKERS = re.compile(r"\[(?:\d{1,3}|[A-Z]|\*+|†)\]|\{\d{1,3}\}")
_NUMERAL = r"(?:[IVXLCDM]+|\d+|one|two|three|four|five|six|seven|eight|nine|ten|first|second|third|last)"
_HEADING = re.compile(rf"^(?:(?:chapter|book|part|volume|vol\.|section|stave|act|scene|letter|lecture|canto|fable|"
                      rf"essay|article|number|no\.)\s+{_NUMERAL}\b|(?:contents|preface|introduction|epilogue|prologue|"
                      rf"appendix|footnotes|notes|index|the end|finis|transcriber[’']s notes?)\W*$)", re.IGNORECASE)
_ROMAN = re.compile(r"^[IVXLCDM]+\.?$")
_END_MARK = re.compile(r"[.!?…:][\"”’')\]_*]*$|[.!?…,]?[\"”’'_]*(?:--|—)[\"”’']?$")
_NUMBERED_HEADING = re.compile(r"^(?:CHAPTER|Chapter|BOOK|Book|PART|Part|VOLUME|Volume|SECTION|Section|STAVE|Stave|"
                               r"CANTO|Canto|LECTURE|Lecture)\s+(?:[IVXLC]+|\d+)(?:\.|--|—|:|\s+[A-Z]|$)")
_FOOTNOTE = re.compile(r"^(?:\[\d{1,3}\]|\{\d{1,3}\}|\(\*\)|\*|\d{1,4} \[)\s")
_TRANSCRIBER = re.compile(r"^(?:transcriber[’']s notes?|produced by|e-?text prepared by)\b|\be-?text\b", re.IGNORECASE)
_OPENING = re.compile(r"(?:Mr\.|Madame?|Mister)\s+(?:Speaker|President|Vice President|Chairman|Chief Justice)")
_DATE = re.compile(rf"(?:{_MONTHS})\s+\d{{1,2}},\s+\d{{4}}")
_QUOTE_START = "\"“‘'"
_TITLE_LINE = re.compile(r"^(?:[A-Z0-9.,'’&:;()\-]+ ){3,}"
                         r"(?:(?:January|February|March|April|May|June|July|August|September|October|November|"
                         r"December) \d{1,2}, \d{4} )?(?:\d{1,2}:\d\d [AP]\.M\. [A-Z]{3} )?(?=[A-Z][a-z])")


def _roman_heading(words: list[str]) -> bool:
    """A chapter numeral standing first in a short line ("IV.", "XII The Morlocks"), not the pronoun I."""
    return len(words) <= 8 and bool(_ROMAN.match(words[0])) and (words[0] != "I" or len(words) == 1)


def _title_case(words: list[str], share: float = 0.75) -> bool:
    long = [w.strip(_OPENERS + _CLOSERS + ".,;:!?") for w in words]
    long = [w for w in long if len(w) >= 4 and w[:1].isalpha()]
    return len(long) >= 2 and sum(w[0].isupper() for w in long) / len(long) >= share


def heading_like(row: str) -> bool:
    """A short row in capitals, opening with a heading word and numeral, a numeral alone, or in title case with no
    sentence-ending mark ("CHAPTER IV.", "II", "Mr. Bedford Meets Mr. Cavor at Lympne")."""
    words = row.split()
    if not words or len(words) > 12:
        return False
    letters = [c for c in row if c.isalpha()]
    if len(letters) >= 2 and sum(map(str.isupper, letters)) / len(letters) >= 0.6:
        return True
    if _NUMBERED_HEADING.match(row) or _roman_heading(words) and len(words) <= 3:
        return True
    return bool(_HEADING.match(row)) and len(words) <= 4 or not _END_MARK.search(row) and _title_case(words)


def is_prose(lines: list[str]) -> bool:
    """Whether a block (its lines, as wrapped in the file) is running prose. Not prose: a block of short lines
    (verse, a list, contents, a title page, an address), capitals, and a short block that is a heading (a heading
    word or a numeral, title case, or no sentence-ending mark: a chapter title, a byline, a salutation)."""
    stripped = [ln.strip() for ln in lines if ln.strip()]
    para = " ".join(" ".join(stripped).split())
    letters = [c for c in para if c.isalpha()]
    if len(letters) < 2:
        return False
    if sum(c.isupper() for c in letters) / len(letters) >= 0.6:
        return False
    if len(stripped) >= 2 and max(len(s) for s in stripped[:-1]) < 50:
        capitals = sum(not s[0].islower() for s in stripped[1:]) / (len(stripped) - 1)
        if capitals >= 0.5:
            return False  # verse, contents, a list: short lines in capitals (wrapped prose goes on in lower case)
    words = para.split()
    if _NUMBERED_HEADING.match(para) or _FOOTNOTE.match(para) or _TRANSCRIBER.search(para):
        return False
    if len(words) > 20:
        return True
    if para[0] in _QUOTE_START and _END_MARK.search(para):
        return True  # a line of dialogue
    if _HEADING.match(para) or _roman_heading(words):
        return False
    if _OPENING.match(para):
        return True  # a speech's opening address
    if para.endswith(":"):
        return not _title_case(words, 0.5)  # "To the Reader of this Work:" heads a letter; "farther away:" is prose
    return bool(_END_MARK.search(para)) and not (_title_case(words) and para[-1] not in "?!")


def _clean(text: str) -> str:
    start = _GUTENBERG_START.search(text)
    if start:
        text = text[start.end():]
    end = _GUTENBERG_END.search(text)
    if end:
        text = text[: end.start()]
    return _MARKERS.sub("", _TAGS.sub(" ", text))


def _strip_title(para: str) -> str:
    """A transcript's title, date and time glued before its opening address or first sentence."""
    m = _OPENING.search(para, 0, 600)
    if m and m.start() > 0:
        prefix = para[: m.start()]
        letters = [c for c in prefix if c.isalpha()]
        if _DATE.search(prefix) or letters and sum(map(str.isupper, letters)) / len(letters) >= 0.6:
            return para[m.start():]
    return _TITLE_LINE.sub("", para, count=1)


def _blocks(text: str) -> list[list[str]]:
    """Blank-line separated blocks of lines; in a file of unwrapped lines (a transcript with one paragraph a line)
    each long line is a block of its own."""
    out = []
    for block in re.split(r"\n\s*\n", text):
        lines = [ln for ln in block.split("\n") if ln.strip()]
        if any(len(ln) > 200 for ln in lines):
            out += [[ln] for ln in lines]
        elif lines:
            out.append(lines)
    return out


def prose_paragraphs(text: str, detok: bool = False) -> list[str]:
    """The running prose of a text file: blank-line separated blocks that `is_prose`, hard-wrapped lines joined,
    detokenised when asked; a transcript's title line glued before its first sentence is cut off."""
    paragraphs = []
    for block in _blocks(_clean(text)):
        if not is_prose(block):
            continue
        para = " ".join(" ".join(block).split())
        para = detokenize(para) if detok else mend_apostrophes(para)
        if not paragraphs:
            para = _strip_title(para)
        paragraphs.append(para)
    return paragraphs


_WIKI_TITLE = re.compile(r"^ = ([^=].*?) = $")
_WIKI_SECTION = re.compile(r"^ (= )+.*( =)+ $")


def wikitext_paragraphs(lines: list[str], detok: bool = True) -> list[str]:
    """The paragraphs of WikiText lines (one paragraph a line): titles, section headings and lines that are not
    sentences (a caption, a list item with no end mark) left out."""
    out = []
    for line in lines:
        if not line.strip() or _WIKI_TITLE.match(line) or _WIKI_SECTION.match(line):
            continue
        para = detokenize(line) if detok else mend_apostrophes(" ".join(line.split()))
        if is_prose([para]):
            out.append(para)
    return out


def text_sentences(text: str, fmt: str = "text", detok: bool = False) -> list[str]:
    """The rows a reader yields for one raw text (fmt "text" or "wikitext"): the path every reader takes."""
    paras = wikitext_paragraphs(text.split("\n"), detok) if fmt == "wikitext" else prose_paragraphs(text, detok)
    return [s for p in paras for s in split_sentences(p)]

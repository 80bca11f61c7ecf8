"""The reader against the hand-checked gold set (tests/data/gold): one real sentence per row, for every corpus kind."""

from pathlib import Path

import pytest

from lvm.ingest.sentence_gold import load_gold, score_reader, score_rows, text_agreement
from lvm.ingest.sentences import detokenize, mend_apostrophes, split_sentences, text_sentences

GOLD = load_gold(Path(__file__).parent / "data" / "gold")
KINDS = sorted({p["kind"] for p in GOLD})


def read_passage(p: dict) -> list[str]:
    return text_sentences(p["raw"], "wikitext" if p["kind"] == "wikitext" else "text", p["tokenized"])


def test_the_gold_set_covers_every_corpus_kind_with_300_checked_passages():
    assert len(GOLD) >= 300
    assert set(KINDS) >= {"wikitext", "sotu-moses", "sotu-plain", "brown", "gutenberg-prose", "gutenberg-dialogue",
                          "gutenberg-front", "verse"}
    assert all(isinstance(p["sentences"], list) for p in GOLD)
    assert sum(len(p["sentences"]) for p in GOLD) > 1500


@pytest.mark.parametrize("kind", KINDS)
def test_boundary_precision_and_recall_are_at_least_098_per_kind(kind):
    score = score_reader([p for p in GOLD if p["kind"] == kind], read_passage)[kind]
    assert score.precision >= 0.98 and score.recall >= 0.98, (kind, score)


def test_the_score_falls_for_a_kept_heading_and_for_glued_sentences():
    gold = ["It was late.", "She left."]
    assert score_rows(["It was late.", "She left."], gold).precision == 1.0
    kept_heading = score_rows(["CHAPTER IV.", "It was late.", "She left."], gold)
    assert kept_heading.precision == 0.5 and kept_heading.recall == 1.0
    glued = score_rows(["It was late. She left."], gold)
    assert glued.recall == 0.0
    assert score_rows(["It was late . She left ."], ["It was late.", "She left."]).recall == 0.0  # spacing is free


def test_tokenised_rows_are_written_as_the_gold_writes_them():
    tokenised = [p for p in GOLD if p["tokenized"]]
    exact = compared = 0
    for p in tokenised:
        a, b = text_agreement(read_passage(p), p["sentences"])
        exact, compared = exact + a, compared + b
    assert compared > 400 and exact / compared >= 0.95


@pytest.mark.parametrize("raw, clean", [
    ("So , tonight I feel as if I ' m home .", "So, tonight I feel as if I'm home."),
    ("America ' s future , the workers ' rights , don ' t you ?", "America's future, the workers' rights, don't you?"),
    ("a 200 - year - old tradition of 1 @,@ 000 men ( 1776 )", "a 200-year-old tradition of 1,000 men (1776)"),
    ("we need - and we must have - a system", "we need - and we must have - a system"),
    ("the U. S. A. at 12 : 34 p. m.", "the U.S.A. at 12:34 p.m."),
])
def test_detokenising_transcripts(raw, clean):
    assert detokenize(raw) == clean


def test_spaced_quotes_in_untokenised_text_are_mended_and_prose_is_untouched():
    assert mend_apostrophes("more ' pro ' letters than ' con ' ones") == "more 'pro' letters than 'con' ones"
    prose = "'He'll be ready,' she remarked, 'and he's to drive us.'"
    assert mend_apostrophes(prose) == prose


@pytest.mark.parametrize("paragraph, rows", [
    ("“That's so. We're looking to you. Captain Marvin is my name.”",
     ["“That's so.", "We're looking to you.", "Captain Marvin is my name.”"]),
    ("“Hullo! Hullo!” he cried, looking him up and down.", ["“Hullo!", "Hullo!” he cried, looking him up and down."]),
    ('"What brought you here?" I cried as our hands met. He smiled.',
     ['"What brought you here?" I cried as our hands met.', "He smiled."]),
    ("Mr. Bedford met H. G. Wells at 3.30 p.m. in St. Ives. They talked.",
     ["Mr. Bedford met H. G. Wells at 3.30 p.m. in St. Ives.", "They talked."]),
    ("headed for the U.S.A. That plane left. The U.S. economy grew.",
     ["headed for the U.S.A.", "That plane left.", "The U.S. economy grew."]),
    ("Thank you.And we have many. (Applause.) So it goes.", ["Thank you.", "And we have many.", "(Applause.)",
                                                             "So it goes."]),
    ("Mr. Speaker, Mr. President, fellow citizens: Less than 3 weeks ago, I joined you.",
     ["Mr. Speaker, Mr. President, fellow citizens:", "Less than 3 weeks ago, I joined you."]),
    ("Barrels! ... Barrels! ... Any to sell? ...", ["Barrels! ...", "Barrels! ...", "Any to sell? ..."]),
])
def test_splitter_cases(paragraph, rows):
    assert split_sentences(paragraph) == rows


def test_headings_contents_verse_tags_and_footnotes_never_become_rows():
    raw = ("THE FIRST MEN IN THE MOON\n\nby H.G. Wells\n\n\nCONTENTS\n\n I Introduction\n II The Machine\n"
           " III The Return\n\n\nChapter 1\n\nMr. Bedford Meets Mr. Cavor at Lympne\n\n"
           "[Illustration: a man\nat a desk]\n\nAs I sit down to write here amidst the shadows of vine-leaves, it\n"
           "comes to me with astonishment.[1] I was young.\n\n“Yes,” said he.\n\n    Gone, gone, sold and gone\n"
           "    To the rice swamp dank and lone,\n\n[Footnote 1: A note on\nthe text.]\n\nTHE END\n")
    assert text_sentences(raw) == ["As I sit down to write here amidst the shadows of vine-leaves, it comes to me "
                                   "with astonishment.", "I was young.", "“Yes,” said he."]


def test_a_transcripts_title_and_date_are_cut_from_its_first_sentence():
    raw = ("Bush\n\nPRESIDENT GEORGE H . W . BUSH ' S ADDRESS ON ADMINISTRATION GOALS February 9 , 1989 Mr . Speaker"
           " , and fellow citizens : Less than 3 weeks ago , I joined you . And tonight I ' m back .")
    assert text_sentences(raw, detok=True) == [
        "Mr. Speaker, and fellow citizens:", "Less than 3 weeks ago, I joined you.", "And tonight I'm back."]

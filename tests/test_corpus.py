import json

import pytest

from lvm.ingest.corpus import CorpusError, detokenize, read_corpus, split_sentences


def test_sentence_splitting_handles_abbreviations_quotes_and_decimals():
    text = 'Dr. Smith paid $3.50 for it. "Why?" she asked. It was e.g. fine. The U.S. economy grew 2.5 percent.'
    assert split_sentences(text) == [
        "Dr. Smith paid $3.50 for it.", '"Why?" she asked.', "It was e.g. fine.", "The U.S. economy grew 2.5 percent."]


def test_detokenize_wikitext_escapes():
    assert detokenize("a 1 @,@ 000 @-@ strong army , it 's ( big ) .") == "a 1,000-strong army, it's (big)."


def test_plain_text_folder_joins_wrapped_lines_and_drops_front_matter(tmp_path):
    (tmp_path / "a.txt").write_text(
        "THE TITLE\n\nCONTENTS\n Chapter I\n Chapter II\n Chapter III\n\n"
        "This is the first sentence of a\nwrapped paragraph. And here is the second one.\n\n"
        "A new paragraph starts here. It ends here.\n", encoding="utf-8")
    (tmp_path / "b.txt").write_text("Only one short document. With two sentences.\r\n", encoding="utf-8")
    docs = read_corpus(tmp_path)
    assert [d.doc_id for d in docs] == ["a", "b"]
    assert docs[0].sentences == ["This is the first sentence of a wrapped paragraph.", "And here is the second one.",
                                 "A new paragraph starts here.", "It ends here."]


def test_wikitext_articles_sections_and_framed_titles(tmp_path):
    raw = (" \n = First Article = \n \n Some text , with 1 @.@ 5 units . Another sentence here . \n \n"
           " = = Section = = \n \n More text in the section . It goes on . \n"
           " = x = y = \n"  # formula-like line not framed by blank lines: not a title
           " \n = Second Article = \n \n The second article has words . Yes it does . \n")
    p = tmp_path / "w.raw"
    p.write_text(raw.replace("\n", "\r\n"), encoding="utf-8")
    docs = read_corpus(p)
    assert [d.title for d in docs] == ["First Article", "Second Article"]
    assert docs[0].sentences[0] == "Some text, with 1.5 units."
    assert not any("Section" in s for s in docs[0].sentences)


def test_jsonl_reader_and_bad_line(tmp_path):
    p = tmp_path / "c.jsonl"
    p.write_text(json.dumps({"id": "d1", "text": "One sentence here. Two sentences here."}) + "\n", encoding="utf-8")
    assert read_corpus(p)[0].sentences == ["One sentence here.", "Two sentences here."]
    p.write_text('{"id": "d1", "text": "fine here."}\n{not json}\n', encoding="utf-8")
    with pytest.raises(CorpusError, match=r"c\.jsonl: 1 bad JSONL lines.*line 2"):
        read_corpus(p)


def test_non_utf8_and_empty_files_are_named(tmp_path):
    bad = tmp_path / "latin1.txt"
    bad.write_bytes("Caf\xe9 au lait. It is good.".encode("latin-1"))
    with pytest.raises(CorpusError, match=r"latin1\.txt: not valid UTF-8.*line 1"):
        read_corpus(bad)
    empty = tmp_path / "empty.txt"
    empty.write_bytes(b"")
    with pytest.raises(CorpusError, match=r"empty\.txt: empty file"):
        read_corpus(empty)


def test_builtin_corpus_is_python_reference_prose():
    docs = read_corpus("builtin")
    assert len(docs) >= 70
    sentences = [s for d in docs for s in d.sentences]
    assert len(sentences) > 2500
    assert not any("::=" in s for s in sentences), "grammar productions must not leak into the prose"


def test_real_corpora_article_counts(corpus_dir):
    assert len(read_corpus(corpus_dir / "wikitext2" / "wiki.valid.raw")) == 60
    assert len(read_corpus(corpus_dir / "sotu")) == 77
    books = read_corpus(corpus_dir / "gutenberg")
    assert len(books) == 4
    assert not any("PROJECT GUTENBERG" in s.upper() for d in books for s in d.sentences[:20])


def test_a_deeply_nested_jsonl_line_is_named_not_a_recursion_error(tmp_path):
    p = tmp_path / "deep.jsonl"
    p.write_text('{"id": "a", "text": "Fine here."}\n' + "[" * 100_000 + "]" * 100_000 + "\n", encoding="utf-8")
    with pytest.raises(CorpusError, match=r"deep\.jsonl: 1 bad JSONL lines.*line 2: nested too deeply"):
        read_corpus(p)


def test_control_characters_never_reach_a_sentence(tmp_path):
    """NUL and the like (a stray byte of a binary file, a \\u0000 escape in JSON) become spaces; a form feed a line
    end. They were kept in sentence text, the table and the server's replies."""
    import json as _json

    from lvm.ingest.corpus import read_corpus

    (tmp_path / "txt").mkdir()
    para = "The cat\x00sat on the mat all through the long and quiet afternoon. It was warm\x07 and still there, " \
           "and nobody came to move it from its place by the window."
    (tmp_path / "txt" / "a.txt").write_text(f"{para}\n\n\x0c\n{para}\n")
    (tmp_path / "b.jsonl").write_text(_json.dumps({"id": "b", "text": "A dog\u0000barked at the moon all night."}))
    for docs in (read_corpus(tmp_path / "txt"), read_corpus(tmp_path / "b.jsonl")):
        sentences = [s for d in docs for s in d.sentences]
        assert sentences and not any(ch < " " for s in sentences for ch in s), sentences
    assert read_corpus(tmp_path / "txt")[0].sentences[0].startswith("The cat sat on the mat")


def test_text_without_sentence_ends_is_left_out_with_a_warning_naming_the_document(tmp_path):
    """A 5 MB document without punctuation was one 5 MB "sentence" (truncated by the encoder, stored whole)."""
    import random

    from lvm.ingest.corpus import MAX_SENTENCE_CHARS

    rng = random.Random(0)
    (tmp_path / "unpunctuated.txt").write_text(" ".join(rng.choice(["alpha", "beta", "word"]) for _ in range(3000)))
    (tmp_path / "prose.txt").write_text("This is a normal sentence with enough words in it to count. And here is a "
                                        "second sentence of the same document, a little longer.\n")
    with pytest.warns(UserWarning, match=r"1 runs of text over 5,000 characters.*\['unpunctuated'\]"):
        docs = read_corpus(tmp_path)
    assert [d.doc_id for d in docs] == ["prose"] and len(docs[0].sentences) == 2
    assert all(len(s) <= MAX_SENTENCE_CHARS for d in docs for s in d.sentences)


def test_make_server_puts_a_sample_in_an_empty_corpus_folder_and_leaves_text_alone(tmp_path):
    """#27: on first use data/corpus is empty and both deployments failed ("no .txt files found"); the sample is
    the built-in corpus as files, read back as a corpus; a folder with text is never touched."""
    from lvm.ingest.corpus import write_sample_corpus

    n = write_sample_corpus(tmp_path / "corpus")
    docs = read_corpus(tmp_path / "corpus")
    assert n > 50 and len(docs) >= n - 5 and sum(len(d.sentences) for d in docs) > 2000
    assert "sample" in (tmp_path / "corpus" / "README.md").read_text()
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "a.txt").write_text("My own text.")
    assert write_sample_corpus(tmp_path / "mine") == 0 and [p.name for p in (tmp_path / "mine").iterdir()] == ["a.txt"]
    assert write_sample_corpus(tmp_path / "corpus") == 0  # the second start leaves the sample as it is


def test_the_server_script_writes_the_sample_and_make_run_shares_its_prefect_home():
    from conftest import ROOT

    script = (ROOT / "scripts" / "serve_deployments.sh").read_text()
    make = (ROOT / "Makefile").read_text()
    assert "write_sample_corpus('data/corpus')" in script and "data/prefect-home" in script
    assert "export PREFECT_HOME ?= $(CURDIR)/data/prefect-home" in make

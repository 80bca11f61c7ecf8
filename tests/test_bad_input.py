"""Bad input to the data layer: outputs never overwrite inputs, bad files and options are named with their rule,
nothing is coerced silently, defaults follow LVM_DATA_DIR, prose is read as written, seed .npz is a table."""

import errno
import json
import os

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import make_table
from typer.testing import CliRunner

from lvm.cli import app
from lvm.data.dataset import read_table, write_table
from lvm.data.schema import DataValidationError
from lvm.data.table import gather_windows, window_targets

runner = CliRunner()


def _err(res, *names, code=2):
    """A user error (exit 2; a failure on good input, such as a read-only disk: exit 1): one `error:` line naming
    every given name, no traceback."""
    assert res.exit_code == code, res.output
    assert "error:" in res.output and "Traceback" not in res.output, res.output
    for n in names:
        assert str(n) in res.output, (n, res.output)


def _seed(path, table=None, context=3, **over):
    table = table or make_table(n_articles=3, length=8, dim=8)
    t = window_targets(table.article_id, table.position, context)
    ctx, tgt = gather_windows(table.vectors, t, context)
    arrays = {"context_sequences": ctx, "target_vectors": tgt, **over}
    np.savez(path, **arrays)
    return path


def _parquet(path, **cols):
    base = {"article_id": pa.array(["a", "a", "a"]), "position": pa.array([0, 1, 2], pa.int64()),
            "vector": pa.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]], pa.list_(pa.float32()))}
    base.update(cols)
    pq.write_table(pa.table(base), path)
    return path


# ---------------------------------------------------------------------------------------------------- item 4

def test_export_npz_refuses_its_own_input_as_output(tmp_path):
    t = write_table(make_table(), tmp_path / "T.parquet")
    before = t.read_bytes()
    _err(runner.invoke(app, ["export-npz", str(t), "--out", str(t)]), "T.parquet", "its own input")
    os.link(t, tmp_path / "H.npz")  # the same inode under another name
    _err(runner.invoke(app, ["export-npz", str(t), "--out", str(tmp_path / "H.npz")]), "H.npz")
    assert t.read_bytes() == before and len(read_table(t)) == len(make_table())


def test_every_out_option_refuses_its_input(tmp_path):
    npz = _seed(tmp_path / "s.npz")
    before = npz.read_bytes()
    _err(runner.invoke(app, ["import-npz", str(npz), "--out", str(npz)]), "s.npz")
    assert npz.read_bytes() == before
    doc = tmp_path / "c" / "doc.txt"
    doc.parent.mkdir()
    doc.write_text("One sentence here. Another sentence there. A third one now. And a fourth.\n")
    _err(runner.invoke(app, ["build-dataset", "--corpus", str(doc), "--encoder", "hash:8", "--out", str(doc)]),
         "doc.txt")
    _err(runner.invoke(app, ["build-dataset", "--corpus", str(doc.parent), "--encoder", "hash:8", "--out", str(doc)]),
         "doc.txt")
    assert doc.read_text().startswith("One sentence")
    t = write_table(make_table(), tmp_path / "T.parquet")
    _err(runner.invoke(app, ["train", "--data", str(t), "--out", str(t), "--epochs", "1"]), "T.parquet")
    run = tmp_path / "run"
    run.mkdir()
    _err(runner.invoke(app, ["diagnose", str(run), "--out", str(run)]), str(run))


# ---------------------------------------------------------------------------------------------------- item 9

@pytest.mark.parametrize("vector,rule", [
    (pa.array([[1.0, 0.0], None, [1.0, 1.0]], pa.list_(pa.float32())), "vector_not_null"),
    (pa.array([1.0, 2.0, 3.0]), "vector_type"),
])
def test_vector_column_of_nulls_or_scalars_is_named(tmp_path, vector, rule):
    p = _parquet(tmp_path / "v.parquet", vector=vector)
    with pytest.raises(DataValidationError, match=rf"(?s)v\.parquet.*{rule}"):
        read_table(p)
    _err(runner.invoke(app, ["inspect", str(p)]), "v.parquet", rule)


def test_output_that_is_a_folder_or_on_a_read_only_disk(tmp_path, monkeypatch):
    monkeypatch.setenv("LVM_DATA_DIR", str(tmp_path / "data"))
    npz = _seed(tmp_path / "s.npz")
    folder = tmp_path / "outdir"
    folder.mkdir()
    _err(runner.invoke(app, ["import-npz", str(npz), "--out", str(folder)]), "outdir", "folder")
    assert list(folder.iterdir()) == []

    import lvm.util.atomic

    def read_only(*a, **k):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(lvm.util.atomic.tempfile, "mkstemp", read_only)
    out = tmp_path / "ro.parquet"
    _err(runner.invoke(app, ["import-npz", str(npz), "--out", str(out)]), "ro.parquet", "Read-only", code=1)
    assert not out.exists()
    _err(runner.invoke(app, ["export-npz", str(npz), "--out", str(tmp_path / "ro.npz")]), "ro.npz", code=1)


@pytest.mark.parametrize("name", ["hash:0", "hash:x", "hash:-3", "no-such-encoder-xyz"])
def test_bad_encoder_names(tmp_path, name):
    doc = tmp_path / "doc.txt"
    doc.write_text("One sentence here. Another sentence there. A third one now. And a fourth.\n")
    out = tmp_path / "o.parquet"
    _err(runner.invoke(app, ["build-dataset", "--corpus", str(doc), "--encoder", name, "--out", str(out)]),
         f"encoder {name!r}")
    assert not out.exists()


@pytest.mark.parametrize("args,option", [(["--context", "0"], "--context"), (["--context", "-2"], "--context"),
                                         (["--fractions", "a,b,c"], "--fractions"),
                                         (["--fractions", "0.5,0.5"], "--fractions"),
                                         (["--fractions", "0.9,0.9,-0.8"], "--fractions")])
def test_inspect_bad_options(tmp_path, args, option):
    t = write_table(make_table(), tmp_path / "T.parquet")
    _err(runner.invoke(app, ["inspect", str(t), *args]), option)


def test_export_npz_bad_context(tmp_path):
    t = write_table(make_table(), tmp_path / "T.parquet")
    _err(runner.invoke(app, ["export-npz", str(t), "--out", str(tmp_path / "o.npz"), "--context", "0"]), "--context")


def test_lvm_data_dir_that_is_a_file(tmp_path, monkeypatch):
    f = tmp_path / "afile"
    f.write_text("x")
    monkeypatch.setenv("LVM_DATA_DIR", str(f))
    from lvm.util.paths import data_dir

    with pytest.raises(NotADirectoryError, match="LVM_DATA_DIR"):
        data_dir()
    doc = tmp_path / "doc.txt"
    doc.write_text("One sentence here. Another sentence there. A third one now. And a fourth.\n")
    _err(runner.invoke(app, ["build-dataset", "--corpus", str(doc), "--encoder", "hash:8"]), "LVM_DATA_DIR", "afile")


# ---------------------------------------------------------------------------------------------------- item 10

def test_import_npz_names_the_bad_npz_not_the_output(tmp_path):
    good = write_table(make_table(), tmp_path / "good.parquet")
    before = good.read_bytes()
    table = make_table(n_articles=3, length=8, dim=8)
    t = window_targets(table.article_id, table.position, 3)
    ctx, tgt = gather_windows(table.vectors, t, 3)
    tgt[2, 0] = np.nan
    np.savez(tmp_path / "bad.npz", context_sequences=ctx, target_vectors=tgt)
    res = runner.invoke(app, ["import-npz", str(tmp_path / "bad.npz"), "--out", str(good)])
    _err(res, "bad.npz", "finite_values", "first windows: 2")
    assert "good.parquet" not in res.output and good.read_bytes() == before


def test_broken_parquet_metadata_strings_and_null_fixed_lists(tmp_path):
    arrow = pa.table({"article_id": ["a"] * 3, "position": pa.array([0, 1, 2], pa.int64()),
                      "vector": pa.array([[1.0, 0.0]] * 3, pa.list_(pa.float32(), 2))})
    pq.write_table(arrow.replace_schema_metadata({b"lvm": b"{broken"}), tmp_path / "meta.parquet")
    _err(runner.invoke(app, ["inspect", str(tmp_path / "meta.parquet")]), "meta.parquet", "metadata")
    p = _parquet(tmp_path / "str.parquet", vector=pa.array([["x", "y"]] * 3))
    _err(runner.invoke(app, ["inspect", str(p)]), "str.parquet", "vector_type", "floating point")
    p = _parquet(tmp_path / "fsl.parquet", vector=pa.array([[1.0, 0.0], None, [1.0, None]], pa.list_(pa.float32(), 2)))
    res = runner.invoke(app, ["inspect", str(p)])
    _err(res, "fsl.parquet", "vector_not_null", "first rows: 1", "first rows: 2")


def test_npz_with_zero_windows_or_string_arrays(tmp_path):
    np.savez(tmp_path / "empty.npz", context_sequences=np.zeros((0, 3, 4), np.float32),
             target_vectors=np.zeros((0, 4), np.float32))
    _err(runner.invoke(app, ["import-npz", str(tmp_path / "empty.npz"), "--out", str(tmp_path / "o.parquet")]),
         "empty.npz", "no windows")
    np.savez(tmp_path / "str.npz", context_sequences=np.full((2, 3, 4), "x"), target_vectors=np.full((2, 4), "x"))
    _err(runner.invoke(app, ["import-npz", str(tmp_path / "str.npz"), "--out", str(tmp_path / "o.parquet")]),
         "str.npz", "float_arrays")
    assert not (tmp_path / "o.parquet").exists()


def test_truncated_embedding_cache_entry_is_dropped_and_re_embedded(tmp_path):
    from lvm.ingest.build import build_dataset

    doc = tmp_path / "c" / "doc.txt"
    doc.parent.mkdir()
    doc.write_text("One sentence here. Another sentence there. A third one now. And a fourth.\n")
    cache = tmp_path / "cache"
    build_dataset(doc, tmp_path / "a.parquet", encoder="hash:16", cache_dir=cache, log=lambda m: None)
    (entry,) = list(cache.rglob("*.npy"))
    entry.write_bytes(entry.read_bytes()[:40])
    with pytest.warns(UserWarning, match=rf"{entry.name}.*corrupt embedding-cache entry"):
        s = build_dataset(doc, tmp_path / "b.parquet", encoder="hash:16", cache_dir=cache, log=lambda m: None)
    assert s["encoded_documents"] == 1
    assert np.load(entry).shape == (4, 16)  # healed
    assert np.array_equal(read_table(tmp_path / "a.parquet").vectors, read_table(tmp_path / "b.parquet").vectors)


# ---------------------------------------------------------------------------------------------------- item 11

def test_lists_of_lists_and_non_integer_positions_are_refused(tmp_path):
    p = _parquet(tmp_path / "nested.parquet", vector=pa.array([[[1.0, 0.0]], [[0.0, 1.0]], [[1.0, 1.0]]]))
    with pytest.raises(DataValidationError, match=r"(?s)nested\.parquet.*vector_type.*lists of lists"):
        read_table(p)
    p = _parquet(tmp_path / "frac.parquet", position=pa.array([0.0, 0.5, 2.0]))
    with pytest.raises(DataValidationError, match=r"(?s)frac\.parquet.*integer_positions.*first rows: 1\b"):
        read_table(p)
    p = _parquet(tmp_path / "strpos.parquet", position=pa.array(["0", "1", "2"]))
    with pytest.raises(DataValidationError, match=r"(?s)strpos\.parquet.*integer_positions"):
        read_table(p)


@pytest.mark.parametrize("dtype", [np.int64, np.bool_, np.complex64])
def test_npz_with_non_float_arrays_is_refused(tmp_path, dtype):
    p = tmp_path / "n.npz"
    np.savez(p, context_sequences=np.ones((2, 3, 4), dtype), target_vectors=np.ones((2, 4), dtype))
    _err(runner.invoke(app, ["import-npz", str(p), "--out", str(tmp_path / "o.parquet")]), "n.npz", "float_arrays",
         np.dtype(dtype).name)


def test_export_npz_with_no_window_is_refused(tmp_path):
    t = write_table(make_table(length=12), tmp_path / "T.parquet")
    out = tmp_path / "o.npz"
    _err(runner.invoke(app, ["export-npz", str(t), "--out", str(out), "--context", "50"]), "T.parquet",
         "no window of context 50")
    assert not out.exists()


# ---------------------------------------------------------------------------------------------------- item 12

def test_duplicate_jsonl_ids_name_the_file_ids_and_lines(tmp_path):
    lines = [{"id": "a", "text": "First doc. It has sentences. Many of them."},
             {"id": "b", "text": "Second doc. It has sentences too. Yes."},
             {"id": "a", "text": "Third doc. Same id as the first. Oops."}]
    src = tmp_path / "docs.jsonl"
    src.write_text("\n".join(json.dumps(r) for r in lines) + "\n")
    out = tmp_path / "o.parquet"
    res = runner.invoke(app, ["build-dataset", "--corpus", str(src), "--encoder", "hash:8", "--out", str(out)])
    _err(res, "docs.jsonl", "'a'", "lines 1, 3", "duplicate ids")
    assert "o.parquet" not in res.output and not out.exists()


# ---------------------------------------------------------------------------------------------------- item 14

def test_build_dataset_defaults_follow_lvm_data_dir(tmp_path, monkeypatch):
    data = tmp_path / "lvmdata"
    monkeypatch.setenv("LVM_DATA_DIR", str(data))
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    doc = tmp_path / "doc.txt"
    doc.write_text("One sentence here. Another sentence there. A third one now. And a fourth.\n")
    res = runner.invoke(app, ["build-dataset", "--corpus", str(doc), "--encoder", "hash:8"])
    assert res.exit_code == 0, res.output
    assert (data / "dataset.parquet").is_file() and list((data / "cache" / "embeddings").rglob("*.npy"))
    assert not (cwd / "data").exists()
    help_text = runner.invoke(app, ["build-dataset", "--help"], env={"COLUMNS": "220"}).output
    assert "dataset.parquet" in help_text and "cache/embeddings" in help_text


# ---------------------------------------------------------------------------------------------------- item 16

PROSE = ('The jury said the primary election produced "no evidence" that any irregularities took place. '
         'It spoke of possible "irregularities" in the race (a "hard-fought" one). '
         "The mayor's office didn't comment, and the clerk's staff (three people) wasn't reached.")


def test_plain_text_and_jsonl_prose_comes_out_as_it_went_in(tmp_path):
    from lvm.ingest.corpus import read_corpus

    (tmp_path / "p.txt").write_text(PROSE + "\n")
    (tmp_path / "p.jsonl").write_text(json.dumps({"id": "p", "text": PROSE}) + "\n")
    for name in ("p.txt", "p.jsonl"):
        (doc,) = read_corpus(tmp_path / name)
        assert " ".join(doc.sentences) == PROSE, doc.sentences
    (doc,) = read_corpus(tmp_path / "p.txt", detokenize=True)  # the explicit option still applies it
    assert " ".join(doc.sentences) != PROSE


def test_brown_prose_keeps_its_quotes_and_tokenised_text_is_still_detokenised(corpus_dir):
    from lvm.ingest.corpus import read_corpus

    (brown,) = read_corpus(corpus_dir / "brown" / "ca01.txt")
    text = " ".join(brown.sentences)
    assert 'produced "no evidence" that any irregularities' in text and '"no evidence"that' not in text
    (sotu,) = read_corpus(corpus_dir / "sotu" / "Bush1.txt")  # a Moses-tokenised transcript
    text = " ".join(sotu.sentences)
    assert " , " not in text and "frankness, respect, and my best judgment" in text


def test_embedding_cache_key_follows_the_text():
    from lvm.ingest.corpus import Document
    from lvm.ingest.embedding import document_key

    a = Document("d", "d", [], sentences=['It said "no evidence" that.'])
    b = Document("d", "d", [], sentences=['It said "no evidence"that.'])
    assert document_key(a, "hash:8") != document_key(b, "hash:8")


# ---------------------------------------------------------------------------------------------------- item 17

def test_seed_npz_is_accepted_where_a_table_is(tmp_path, monkeypatch):
    monkeypatch.setenv("LVM_DATA_DIR", str(tmp_path / "data"))
    table = make_table(n_articles=4, length=10, dim=8)
    npz = _seed(tmp_path / "seed.npz", table, context=3)
    t = read_table(npz)
    assert len(t.articles) == 4 and len(t) == len(table) and np.allclose(t.vectors, table.vectors)
    cached = list((tmp_path / "data" / "cache" / "npz").glob("*.parquet"))
    assert len(cached) == 1 and read_table(npz).meta["source"] == str(npz)
    res = runner.invoke(app, ["inspect", str(npz), "--json", "--context", "3"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)["articles"] == 4
    assert "npz" in runner.invoke(app, ["train", "--help"]).output
    from lvm.data.dataset import is_table_path

    assert is_table_path("x/seed.npz") and is_table_path("t.parquet") and not is_table_path("corpus.txt")


def test_bad_seed_npz_through_read_table_names_the_npz(tmp_path, monkeypatch):
    monkeypatch.setenv("LVM_DATA_DIR", str(tmp_path / "data"))
    p = tmp_path / "bad.npz"
    np.savez(p, context_sequences=np.ones((2, 3, 4), np.float32))
    _err(runner.invoke(app, ["inspect", str(p)]), "bad.npz", "required_keys")


def test_load_and_validate_task_reads_a_seed_npz(tmp_path, monkeypatch):
    monkeypatch.setenv("LVM_DATA_DIR", str(tmp_path / "data"))
    from tasks.data import load_and_validate

    npz = _seed(tmp_path / "seed.npz", make_table(n_articles=4, length=10, dim=8), context=3)
    info = load_and_validate.fn(str(npz), 3)
    assert info.articles == 4 and info.dim == 8


def test_shards_refuse_fractional_positions_and_integer_vectors(tmp_path):
    from lvm.data.shards import validate_shards, write_shards

    folder = write_shards(make_table(n_articles=4, length=8, dim=8), tmp_path / "sh", rows_per_shard=16)
    shard = sorted(folder.glob("*.parquet"))[0]
    t = pq.read_table(shard)
    pos = pa.array(np.asarray(t.column("position").to_numpy(), float) + np.r_[0.5, np.zeros(len(t) - 1)])
    pq.write_table(t.set_column(t.column_names.index("position"), "position", pos), shard)
    with pytest.raises(DataValidationError, match=rf"(?s){shard.name}.*integer_positions.*first rows: 0"):
        validate_shards(folder)
    vec = pa.FixedSizeListArray.from_arrays(pa.array(np.ones(len(t) * 8, np.int32)), 8)
    pq.write_table(t.set_column(t.column_names.index("vector"), "vector", vec), shard)
    with pytest.raises(DataValidationError, match=rf"(?s){shard.name}.*vector_type"):
        validate_shards(folder)


# ------------------------------------------------------------------------------- round two (#28 items 2 and 9)
def _npz_claiming(path, shape):
    """An .npz whose context_sequences header claims `shape` float32 while holding 64 bytes."""
    import io
    import zipfile

    def member(shape, data: bytes) -> bytes:
        buf = io.BytesIO()
        np.lib.format.write_array_header_1_0(buf, {"descr": "<f4", "fortran_order": False, "shape": shape})
        return buf.getvalue() + data

    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("context_sequences.npy", member(shape, b"\0" * 64))
        zf.writestr("target_vectors.npy", member((2, 768), b"\0" * (2 * 768 * 4)))
    return path


@pytest.mark.parametrize("cmd", [["inspect"], ["import-npz", "--out", "{tmp}/t.parquet"]])
def test_an_npz_whose_header_claims_a_huge_shape_is_refused_unread(tmp_path, cmd):
    import resource

    npz = _npz_claiming(tmp_path / "bomb.npz", (10**12, 5, 768))
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    res = runner.invoke(app, [c.replace("{tmp}", str(tmp_path)) for c in cmd[:1]] + [str(npz)] +
                        [c.replace("{tmp}", str(tmp_path)) for c in cmd[1:]])
    assert res.exit_code == 2 and "error:" in res.output and "bomb.npz" in res.output, res.output
    assert "array_sizes" in res.output and "Traceback" not in res.output
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 200_000  # KB: nothing big allocated


def test_an_npz_over_the_size_cap_is_refused(tmp_path, monkeypatch):
    from lvm.data.seed_npz import load_npz

    table = make_table(n_articles=3, length=8, dim=8)
    npz = _seed(tmp_path / "seed.npz", table, context=3)
    monkeypatch.setenv("LVM_MAX_NPZ_BYTES", "100")
    with pytest.raises(DataValidationError, match="size_cap.*LVM_MAX_NPZ_BYTES|LVM_MAX_NPZ_BYTES"):
        load_npz(npz)


def test_a_bare_npy_and_odd_target_texts_are_named(tmp_path):
    from lvm.data.seed_npz import load_npz

    bare = tmp_path / "bare.npz"
    with open(bare, "wb") as f:
        np.save(f, np.zeros((3, 4), np.float32))
    with pytest.raises(DataValidationError, match=r"(?s)bare\.npz.*bare \.npy"):
        load_npz(bare)
    ctx, tgt = np.ones((2, 3, 4), np.float32), np.ones((2, 4), np.float32)
    for texts in (np.array("one"), np.array([b"\xff\xfe", b"ok"]), np.array([["a"], ["b"]])):
        p = tmp_path / "texts.npz"
        np.savez(p, context_sequences=ctx, target_vectors=tgt, target_texts=texts)
        with pytest.raises(DataValidationError, match=r"(?s)texts\.npz.*target_texts must be a 1-D array of str"):
            load_npz(p)


def test_a_replaced_cached_npz_import_is_not_trusted(tmp_path, monkeypatch):
    """The Parquet copy of an imported .npz is checked against its source (sha256, windows, C, D): another table
    put in its place is imported again, with a warning naming both (#28 item 10)."""
    monkeypatch.setenv("LVM_DATA_DIR", str(tmp_path / "data"))
    table = make_table(n_articles=4, length=10, dim=8)
    npz = _seed(tmp_path / "seed.npz", table, context=3)
    first = read_table(npz)
    (cached,) = (tmp_path / "data" / "cache" / "npz").glob("*.parquet")
    other = make_table(n_articles=2, length=6, dim=8, seed=5)
    other.meta = {"source_sha256": cached.stem}  # even a forger who copies the name's hash into the metadata
    write_table(other, cached)
    with pytest.warns(UserWarning, match=r"(?s)seed\.npz.*cache_matches_source"):
        again = read_table(npz)
    assert len(again) == len(first) and np.array_equal(again.vectors, first.vectors)
    assert read_table(npz).meta["windows"] == first.meta["windows"]  # the cache was rewritten: quiet now

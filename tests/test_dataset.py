import numpy as np
import pytest
from conftest import make_table

from lvm.data.dataset import file_hash, read_table, split_articles, table_stats, write_table
from lvm.data.schema import DataValidationError
from lvm.data.table import SentenceTable, gather_windows, window_targets


def test_parquet_round_trip_keeps_everything(tmp_path, small_table):
    path = write_table(small_table, tmp_path / "t.parquet")
    back = read_table(path)
    assert np.array_equal(back.vectors, small_table.vectors)
    assert back.article_id.tolist() == small_table.article_id.tolist()
    assert back.text.tolist() == small_table.text.tolist()
    assert back.meta == {"encoder": "synthetic"}
    assert file_hash(path) == file_hash(write_table(small_table, tmp_path / "u.parquet"))


def test_windows_never_cross_an_article_boundary():
    t = make_table(n_articles=3, length=7)
    for c in (1, 3, 5):
        targets = window_targets(t.article_id, t.position, c)
        assert len(targets) == 3 * (7 - c)
        ctx, tgt = gather_windows(t.vectors, targets, c)
        assert ctx.shape == (len(targets), c, t.dim)
        for tr in targets:  # every context row is in the target's article, in order
            rows = np.arange(tr - c, tr)
            assert (t.article_id[rows] == t.article_id[tr]).all()
            assert (t.position[rows] == t.position[tr] - np.arange(c, 0, -1)).all()


def test_split_is_article_disjoint_seeded_and_recorded():
    t = make_table(n_articles=20, length=8)
    s1, s2 = (split_articles(t, (0.6, 0.2, 0.2), seed=3, method="permutation") for _ in range(2))
    assert all(np.array_equal(s1.part(k), s2.part(k)) for k in ("train", "val", "test"))
    sets = [set(t.article_id[s1.part(k)]) for k in ("train", "val", "test")]
    assert not (sets[0] & sets[1]) and not (sets[0] & sets[2]) and not (sets[1] & sets[2])
    assert [len(x) for x in sets] == [12, 4, 4]
    assert len(s1.train) + len(s1.val) + len(s1.test) == len(t)
    assert s1.record()["articles"] == {"train": 12, "val": 4, "test": 4}
    assert split_articles(t, (0.6, 0.2, 0.2), seed=4, method="permutation").record() != s1.record()


def test_hash_split_keeps_every_article_in_its_part_as_the_table_grows(tmp_path):
    """The part of an article depends on (seed, id) only: 30 more articles move none of the first 40, the shares
    follow the fractions, the record says "hash", and save/load keeps the method."""
    from lvm.data.dataset import load_split, save_split

    small, big = make_table(n_articles=40, length=6), make_table(n_articles=70, length=6)
    a, b = split_articles(small, (0.6, 0.2, 0.2), 7, method="hash"), split_articles(big, (0.6, 0.2, 0.2), 7,
                                                                                     method="hash")
    for part in ("train", "val", "test"):
        assert set(a.articles[part]) == set(b.articles[part]) & set(small.article_id)
    assert 30 <= len(b.articles["train"]) <= 54 and b.record()["method"] == "hash"
    assert load_split(save_split(b, tmp_path / "s.json")).record() == b.record()
    perm = [split_articles(t, (0.6, 0.2, 0.2), 7, method="permutation") for t in (small, big)]  # it moves them
    assert perm[0].record()["method"] == "permutation" and split_articles(small).method == "hash"  # the default
    assert any(set(perm[0].articles[p]) != set(perm[1].articles[p]) & set(small.article_id)
               for p in ("train", "val", "test"))
    assert split_articles(small, (0.6, 0.2, 0.2), 8, method="hash").articles != a.articles


def test_hash_split_of_a_tiny_table_still_fills_every_part_and_says_so():
    t = make_table(n_articles=3, length=6)
    with pytest.warns(UserWarning, match="may move back"):
        s = split_articles(t, (0.98, 0.01, 0.01), 0, method="hash")
    assert all(len(s.articles[p]) == 1 for p in ("train", "val", "test"))
    with pytest.raises(ValueError, match="unknown split method 'random'"):
        split_articles(t, method="random")


def test_single_article_is_split_in_blocks_with_a_warning():
    t = make_table(n_articles=1, length=300)
    with pytest.warns(UserWarning, match="contiguous blocks"):
        s = split_articles(t, seed=0, min_block=50)
    assert not s.by_article and len(s.val) == 50 and len(s.test) == 50


def _bad(table, **changes):
    vals = dict(article_id=table.article_id.copy(), position=table.position.copy(), text=table.text.copy(),
                vectors=table.vectors.copy())
    for k, fn in changes.items():
        fn(vals[k])
    return SentenceTable(**vals)


@pytest.mark.parametrize("rule,change", [
    ("finite_values", dict(vectors=lambda v: v.__setitem__((4, 2), np.nan))),
    ("finite_values", dict(vectors=lambda v: v.__setitem__((5, 0), np.inf))),
    ("non_zero_norm", dict(vectors=lambda v: v.__setitem__(7, 0.0))),
    ("unique_article_position", dict(position=lambda p: p.__setitem__(3, 2))),
    ("contiguous_positions", dict(position=lambda p: p.__setitem__(slice(12, 24), np.arange(1, 13)))),
])
def test_bad_tables_are_rejected_and_nothing_is_written(tmp_path, small_table, rule, change):
    out = tmp_path / "out.parquet"
    with pytest.raises(DataValidationError) as err:
        write_table(_bad(small_table, **change), out)
    assert rule in str(err.value) and "out.parquet" in str(err.value) and "first rows" in str(err.value)
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_one_error_lists_every_broken_rule(tmp_path, small_table):
    bad = _bad(small_table, vectors=lambda v: (v.__setitem__((1, 1), np.nan), v.__setitem__(9, 0.0)),
               position=lambda p: p.__setitem__(30, p[29]))
    with pytest.raises(DataValidationError) as err:
        write_table(bad, tmp_path / "x.parquet")
    rules = {f.rule for f in err.value.failures}
    assert {"finite_values", "non_zero_norm", "unique_article_position"} <= rules
    assert next(f for f in err.value.failures if f.rule == "finite_values").rows == [1]


def test_mixed_dimensions_in_a_list_column_are_rejected(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    vecs = [[1.0, 0.0, 0.0]] * 4 + [[1.0, 0.0]] + [[0.0, 1.0, 0.0]] * 3
    pq.write_table(pa.table({"article_id": ["a"] * 8, "position": list(range(8)), "text": [""] * 8,
                             "vector": pa.array(vecs, pa.list_(pa.float32()))}), tmp_path / "mixed.parquet")
    with pytest.raises(DataValidationError, match=r"(?s)mixed\.parquet.*\n- one_dimension.*first rows: 4"):
        read_table(tmp_path / "mixed.parquet")


def test_empty_truncated_and_corrupt_parquet(tmp_path, small_table):
    good = write_table(small_table, tmp_path / "good.parquet").read_bytes()
    (tmp_path / "empty.parquet").write_bytes(b"")
    (tmp_path / "trunc.parquet").write_bytes(good[: len(good) // 2])
    (tmp_path / "corrupt.parquet").write_bytes(good[:100] + b"\x00" * 50 + good[150:])
    for name in ("empty", "trunc", "corrupt"):
        with pytest.raises(DataValidationError, match=rf"(?s){name}\.parquet.*readable_parquet"):
            read_table(tmp_path / f"{name}.parquet")


def test_failed_write_keeps_the_previous_file(tmp_path, small_table):
    out = write_table(small_table, tmp_path / "keep.parquet")
    before = out.read_bytes()
    with pytest.raises(DataValidationError):
        write_table(_bad(small_table, vectors=lambda v: v.__setitem__((0, 0), np.nan)), out)
    assert out.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["keep.parquet"]


def test_stats_and_short_article_warning():
    t = make_table(n_articles=4, length=10)
    st = table_stats(t, context=5, split=split_articles(t, seed=0))
    assert st["articles"] == 4 and st["sentences"] == 40 and st["dim"] == 16 and st["windows"] == 20
    assert sum(st["windows_per_split"].values()) == 20
    assert 0 < st["mean_vector_norm"] < 1
    from lvm.data.dataset import warn_short_articles
    with pytest.warns(UserWarning, match="too short for one window"):
        assert len(warn_short_articles(t, context=10)) == 4

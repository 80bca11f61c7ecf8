import numpy as np
import pytest
from conftest import make_table

from lvm.data.dataset import read_table, write_table
from lvm.data.schema import DataValidationError
from lvm.data.seed_npz import export_npz, import_npz
from lvm.data.table import gather_windows, window_targets


def _seed_file(path, table, context=5, texts=True):
    targets = window_targets(table.article_id, table.position, context)
    ctx, tgt = gather_windows(table.vectors, targets, context)
    arrays = {"context_sequences": ctx, "target_vectors": tgt}
    if texts:
        arrays["target_texts"] = np.array([f"text {i}" for i in range(len(tgt))])
    np.savez(path, **arrays)
    return arrays


def test_stride1_round_trip_is_identical_and_parquet_is_small(tmp_path):
    table = make_table(n_articles=8, length=120, dim=768, seed=1)
    original = _seed_file(tmp_path / "seed.npz", table)
    imported = import_npz(tmp_path / "seed.npz")
    assert len(imported.articles) == 8  # the stride-1 streams were rebuilt, one per article
    pq = write_table(imported, tmp_path / "seed.parquet")
    export_npz(read_table(pq), tmp_path / "back.npz", context=5)
    with np.load(tmp_path / "back.npz") as back:
        for key in ("context_sequences", "target_vectors", "target_texts"):
            assert np.array_equal(back[key], original[key]), key
    assert pq.stat().st_size <= (tmp_path / "seed.npz").stat().st_size / 4


def test_windows_without_overlap_become_short_articles(tmp_path):
    rng = np.random.default_rng(0)
    ctx = rng.normal(size=(10, 3, 8)).astype(np.float32)
    tgt = rng.normal(size=(10, 8)).astype(np.float32)
    np.savez(tmp_path / "s.npz", context_sequences=ctx, target_vectors=tgt)
    t = import_npz(tmp_path / "s.npz")
    assert len(t.articles) == 10 and len(t) == 40
    write_table(t, tmp_path / "s.parquet")
    export_npz(read_table(tmp_path / "s.parquet"), tmp_path / "b.npz", context=3)
    with np.load(tmp_path / "b.npz") as b:
        assert np.array_equal(b["context_sequences"], ctx) and np.array_equal(b["target_vectors"], tgt)


@pytest.mark.parametrize("arrays,rule", [
    (dict(context_sequences=np.ones((4, 5, 8), np.float32)), "required_keys"),
    (dict(context_sequences=np.ones((4, 5, 8), np.float32), target_vectors=np.ones((3, 8), np.float32)), "matching_n"),
    (dict(context_sequences=np.ones((4, 5, 8), np.float32), target_vectors=np.ones((4, 6), np.float32)),
     "one_dimension"),
])
def test_bad_npz_is_rejected_by_name(tmp_path, arrays, rule):
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(DataValidationError, match=rf"(?s)bad\.npz.*{rule}"):
        import_npz(tmp_path / "bad.npz")


def test_npz_with_nan_cannot_be_written(tmp_path):
    table = make_table(n_articles=2, length=10, dim=8)
    arrays = _seed_file(tmp_path / "n.npz", table, texts=False)
    arrays["target_vectors"][3, 1] = np.nan
    np.savez(tmp_path / "n.npz", **arrays)
    with pytest.raises(DataValidationError, match="finite_values"):
        write_table(import_npz(tmp_path / "n.npz"), tmp_path / "n.parquet")
    assert not (tmp_path / "n.parquet").exists()


def test_corrupt_and_empty_npz(tmp_path):
    (tmp_path / "e.npz").write_bytes(b"")
    (tmp_path / "c.npz").write_bytes(b"PK\x03\x04 this is not a zip")
    for name in ("e", "c"):
        with pytest.raises(DataValidationError, match=rf"(?s){name}\.npz.*readable_npz"):
            import_npz(tmp_path / f"{name}.npz")

"""Corpus → sentence table: the per-document embedding cache, and end to end on real text with the real encoder."""

import json
import shutil
import subprocess
import sys

import numpy as np

from lvm.data.dataset import read_table
from lvm.ingest.build import build_dataset


class CountingEncoder:
    """Wraps the hash encoder and counts what it is asked to embed."""

    def __init__(self):
        from lvm.ingest.encoders import HashEncoder
        self.inner, self.name, self.dim, self.calls = HashEncoder(32), "hash:32", 32, []

    def encode(self, sentences, progress=None):
        self.calls.append(len(sentences))
        return self.inner.encode(sentences)


def test_adding_a_document_embeds_only_that_document(tmp_path, corpus_dir):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for name in ("Kennedy1.txt", "Nixon1.txt"):
        shutil.copy(corpus_dir / "sotu" / name, corpus)
    enc = CountingEncoder()
    first = build_dataset(corpus, tmp_path / "a.parquet", encoder=enc, cache_dir=tmp_path / "cache", log=lambda m: None)
    assert first["encoded_documents"] == 2 and sum(enc.calls) == first["sentences"]
    shutil.copy(corpus_dir / "sotu" / "Ford1.txt", corpus)
    enc.calls.clear()
    second = build_dataset(corpus, tmp_path / "b.parquet", encoder=enc, cache_dir=tmp_path / "cache",
                           log=lambda m: None)
    assert second["encoded_documents"] == 1 and second["cached_documents"] == 2
    assert sum(enc.calls) == second["sentences"] - first["sentences"]  # only Ford1's sentences
    a, b = read_table(tmp_path / "a.parquet"), read_table(tmp_path / "b.parquet")
    kennedy = a.article_id == "Kennedy1"
    assert np.array_equal(a.vectors[kennedy], b.vectors[b.article_id == "Kennedy1"])


def test_end_to_end_real_text_with_the_bundled_encoder(tmp_path, corpus_dir):
    """CLI build-dataset + inspect on real text with all-MiniLM-L6-v2 (the offline default)."""
    corpus = tmp_path / "c"
    corpus.mkdir()
    for name in ("Truman1.txt", "Johnson1.txt"):
        shutil.copy(corpus_dir / "sotu" / name, corpus)
    out = tmp_path / "real.parquet"
    res = subprocess.run([sys.executable, "-m", "lvm.cli", "build-dataset", "--corpus", str(corpus), "--out", str(out),
                          "--cache-dir", str(tmp_path / "cache")], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    summary = json.loads(res.stdout)
    assert summary["articles"] == 2 and summary["dim"] == 384 and summary["encoder"] == "all-MiniLM-L6-v2"
    table = read_table(out)
    assert np.allclose(np.linalg.norm(table.vectors, axis=1), 1.0, atol=1e-4)
    # consecutive sentences of a speech are closer than random pairs: the vectors carry meaning
    v = table.vectors
    assert (v[1:] * v[:-1]).sum(1).mean() > (v @ v.T).mean() + 0.02
    res = subprocess.run([sys.executable, "-m", "lvm.cli", "inspect", str(out), "--json"], capture_output=True,
                         text=True, timeout=120)
    stats = json.loads(res.stdout)
    assert (stats["articles"] == 2 and stats["sentences"] == len(table)
            and stats["meta"]["encoder"] == "all-MiniLM-L6-v2")


def test_a_big_corpus_is_written_as_shards_with_progress_and_a_row_report(tmp_path, corpus_dir):
    """An --out that is not a .parquet file is a folder of Parquet shards; the log shows the embedding's rate and
    ETA and the rows that may not be sentences."""
    from lvm.data.shards import is_sharded

    corpus = tmp_path / "corpus"
    corpus.mkdir()
    shutil.copy(corpus_dir / "gutenberg" / "pg11.txt", corpus)
    lines = []
    summary = build_dataset(corpus, tmp_path / "alice", encoder=CountingEncoder(), cache_dir=tmp_path / "cache",
                            log=lines.append)
    assert is_sharded(tmp_path / "alice") and len(read_table(tmp_path / "alice")) == summary["sentences"]
    assert any("sentences/s, ETA" in line for line in lines)
    assert any(line.startswith("rows: heading_like") for line in lines)
    assert summary["row_checks"]["spaced_apostrophe"] == 0 and summary["row_checks"]["rows"] == summary["sentences"]


def test_a_killed_builds_temporary_files_are_removed_by_the_next_build(tmp_path, corpus_dir):
    """What kill -9 leaves (a half-written table beside --out, a half-written cache entry) is removed by the next
    build once it is stale; a fresh one (a live writer's) is left alone (#28 item 7)."""
    import os
    import time

    corpus = tmp_path / "corpus"
    corpus.mkdir()
    shutil.copy(corpus_dir / "sotu" / "Kennedy1.txt", corpus)
    enc = CountingEncoder()
    build_dataset(corpus, tmp_path / "t.parquet", encoder=enc, cache_dir=tmp_path / "cache", log=lambda m: None)
    cache = next((tmp_path / "cache").iterdir())
    old = time.time() - 3600
    left = [tmp_path / ".t.parquet.abc123.tmp", cache / ".deadbeef.npy.xyz.tmp", tmp_path / ".big.k2j.tmp"]
    for f in left[:2]:
        f.write_bytes(b"half")
        os.utime(f, (old, old))
    left[2].mkdir()
    (left[2] / "part-00000.parquet").write_bytes(b"x")
    os.utime(left[2], (old, old))
    live = cache / ".cafe.npy.live.tmp"
    live.write_bytes(b"being written")
    build_dataset(corpus, tmp_path / "t.parquet", encoder=enc, cache_dir=tmp_path / "cache", log=lambda m: None)
    build_dataset(corpus, tmp_path / "big", encoder=enc, cache_dir=tmp_path / "cache", log=lambda m: None)
    assert not any(f.exists() for f in left) and live.exists()

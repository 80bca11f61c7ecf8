import json

"""Encoder backends and cross-document batching: ONNX vectors against the torch path, backend-specific cache
keys, and batching across documents giving the same vectors and the same per-document cache files."""

import numpy as np
import pytest
from typer.testing import CliRunner

from lvm.ingest.backends import resolve_backend
from lvm.ingest.corpus import Document, read_corpus
from lvm.ingest.embedding import cache_path, embed_document, embed_documents, encoder_key, groups
from lvm.ingest.encoders import HashEncoder


@pytest.fixture(scope="module")
def sentences(corpus_dir):
    """A handful of real sentences of different lengths (WikiText, a speech, a novel)."""
    docs = (read_corpus(corpus_dir / "wikitext2" / "wiki.valid.raw")[:2]
            + read_corpus(corpus_dir / "gutenberg" / "pg11.txt"))
    flat = [s for d in docs for s in d.sentences]
    return flat[:6] + flat[-6:] + ["Yes.", "A very short one"]


@pytest.fixture(scope="module")
def torch_vectors(sentences):
    from lvm.ingest.encoders import SentenceTransformerEncoder

    return SentenceTransformerEncoder().encode(sentences)


@pytest.fixture(scope="module")
def onnx_root(tmp_path_factory):
    return tmp_path_factory.mktemp("onnx-export")


def _onnx(backend, root, batch_size=64):
    from lvm.ingest.onnx_backend import onnx_encoder

    enc = onnx_encoder("all-MiniLM-L6-v2", backend, cache_root=root)
    enc.batch_size = batch_size
    return enc


def test_onnx_fp32_matches_the_torch_path(sentences, torch_vectors, onnx_root):
    enc = _onnx("onnx", onnx_root)
    v = enc.encode(sentences)
    assert v.shape == torch_vectors.shape and v.dtype == np.float32
    assert np.allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    assert (v * torch_vectors).sum(1).min() > 0.9999
    assert enc.path.is_file() and enc.path.parent == onnx_root / "onnx"  # exported once, under the cache folder


def test_onnx_int8_stays_close_to_the_torch_path(sentences, torch_vectors, onnx_root):
    enc = _onnx("onnx-int8", onnx_root)
    cos = (enc.encode(sentences) * torch_vectors).sum(1)
    assert cos.min() > 0.96 and cos.mean() > 0.985
    assert cos.min() < 0.99999  # really quantised, not the fp32 graph under another name
    assert enc.path != _onnx("onnx", onnx_root).path


def test_cache_key_differs_per_backend(tmp_path, onnx_root):
    doc = Document("d", "d", [], sentences=["One sentence.", "Another one."])
    fp32, int8 = _onnx("onnx", onnx_root), _onnx("onnx-int8", onnx_root)
    torch_like = type("T", (), {"name": "all-MiniLM-L6-v2", "dim": 384, "backend": "torch"})()
    keys = {encoder_key(e) for e in (fp32, int8, torch_like)}
    assert keys == {"all-MiniLM-L6-v2", "all-MiniLM-L6-v2@onnx", "all-MiniLM-L6-v2@onnx-int8"}
    assert len({cache_path(doc, k, tmp_path) for k in keys}) == 3
    assert encoder_key(HashEncoder(8)) == "hash:8"  # encoders without a backend keep today's key


def test_batching_across_documents_gives_per_document_vectors_and_cache_files(tmp_path, corpus_dir):
    docs = read_corpus(corpus_dir / "sotu")[:5]
    enc = HashEncoder(32)
    batched, hits = embed_documents(docs, enc, tmp_path / "a", group_sentences=10_000)
    assert hits == 0
    for d, v in zip(docs, batched):
        old, _ = embed_document(d, enc, tmp_path / "b")  # the per-document path
        assert np.array_equal(v, old)
        a, b = cache_path(d, enc.name, tmp_path / "a"), cache_path(d, enc.name, tmp_path / "b")
        assert a.name == b.name and np.array_equal(np.load(a), np.load(b))
    again, hits = embed_documents(docs, enc, tmp_path / "a")
    assert hits == len(docs) and all(np.array_equal(x, y) for x, y in zip(again, batched))


def test_batching_across_documents_with_onnx_matches_per_document(onnx_root, sentences):
    docs = [Document(f"d{i}", "", [], sentences=sentences[i:i + 3]) for i in range(0, len(sentences), 3)]
    enc = _onnx("onnx", onnx_root, batch_size=4)  # batches that mix documents and padding widths
    batched, _ = embed_documents(docs, enc, None, group_sentences=100)
    single, _ = embed_documents(docs, enc, None, group_sentences=0)
    for x, y in zip(batched, single):
        assert x.shape == y.shape and np.allclose(x, y, atol=2e-5)


def test_a_corrupt_cache_file_is_a_miss_and_is_rewritten(tmp_path):
    doc = Document("d", "d", [], sentences=["One sentence.", "Another one."])
    enc = HashEncoder(8)
    path = cache_path(doc, enc.name, tmp_path)
    path.parent.mkdir(parents=True)
    path.write_bytes(b"not numpy")
    (v,), hits = embed_documents([doc], enc, tmp_path)
    assert hits == 0 and np.array_equal(np.load(path), v)


def test_a_cache_that_cannot_be_written_warns_once_and_the_embedding_goes_on(tmp_path, monkeypatch):
    """A full disk under the embedding cache stopped the build, where a full .npz-import cache only warned: the
    cache saves time, it holds nothing the build needs."""
    from lvm.ingest import embedding

    docs = [Document(f"d{i}", "", [], sentences=[f"Sentence {i}.", f"Another {i}."]) for i in range(3)]
    calls = []

    def full(path, vecs):
        calls.append(path)
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(embedding, "write_cached", full)
    with pytest.warns(UserWarning, match="embedding cache cannot be written.*No space left") as seen:
        vectors, hits = embed_documents(docs, HashEncoder(8), tmp_path, group_sentences=0)
    assert len(vectors) == 3 and all(v.shape == (2, 8) for v in vectors) and hits == 0
    assert len(calls) == 1 and len([w for w in seen if "embedding cache" in str(w.message)]) == 1


def test_groups_keep_documents_whole():
    assert groups([3, 3, 3, 10, 1], 5) == [[0, 1], [2, 3], [4]]
    assert groups([], 5) == []


def test_backend_resolution_and_errors(monkeypatch):
    monkeypatch.setenv("LVM_EMBED_BACKEND", "onnx")  # the measured choice, forced: its own test is below
    assert resolve_backend(None, None) == "onnx" and resolve_backend("minilm", "auto") == "onnx"
    assert resolve_backend("sentence-transformers/gtr-t5-base", None) == "torch"
    assert resolve_backend("hash:8", None) == "torch"
    assert resolve_backend(None, "torch") == "torch"
    with pytest.raises(ValueError, match="openvino"):
        resolve_backend(None, "openvino")


def test_cli_rejects_an_unknown_backend(tmp_path):
    from lvm.cli import app

    res = CliRunner().invoke(app, ["build-dataset", "--corpus", "builtin", "--encoder", "hash:8", "--backend", "tpu",
                                   "--out", str(tmp_path / "d.parquet")])
    assert res.exit_code == 2 and "not one of" in res.output and "tpu" in res.output and "Traceback" not in res.output


def test_the_bf16_backend_is_chosen_only_when_faithful_and_faster():
    from lvm.ingest.backends import pick

    onnx = {"rate": 200.0, "min_cosine": 1.0}
    assert pick({"onnx": onnx}) == "onnx"
    assert pick({"onnx": onnx, "torch-bf16": {"rate": 260.0, "min_cosine": 0.99996}}) == "torch-bf16"
    assert pick({"onnx": onnx, "torch-bf16": {"rate": 260.0, "min_cosine": 0.9998}}) == "onnx"  # not faithful
    assert pick({"onnx": onnx, "torch-bf16": {"rate": 205.0, "min_cosine": 0.99999}}) == "onnx"  # not faster


def test_the_backend_choice_is_measured_once_per_cpu_and_kept(tmp_path, monkeypatch):
    from lvm.ingest import backends

    monkeypatch.delenv("LVM_EMBED_BACKEND", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    calls = []
    monkeypatch.setattr(backends, "_sample", lambda: ["One sentence.", "Another one."])
    monkeypatch.setattr(backends, "measure", lambda s: calls.append(s) or {
        "onnx": {"rate": 100.0, "min_cosine": 1.0}, "torch-bf16": {"rate": 150.0, "min_cosine": 0.99995}})
    assert backends.choose_backend() == "torch-bf16" and len(calls) == 1
    assert backends.choose_backend() == "torch-bf16" and len(calls) == 1  # read back, not measured again
    kept = json.loads(backends.choice_file().read_text())
    assert kept[backends.cpu_signature()]["measured"]["torch-bf16"]["rate"] == 150.0


def test_bf16_vectors_are_unit_and_faithful_where_the_cpu_runs_bf16():
    from lvm.util.hardware import bf16_supported

    if not bf16_supported("cpu"):
        pytest.skip("this CPU has no native bf16 (AVX-512-bf16 or AMX): the torch-bf16 backend is never chosen here")
    from lvm.ingest.backends import load_encoder

    sents = ["The cat sat on the mat.", "A completely different sentence about the stock market today."]
    a, b = load_encoder(None, "torch").encode(sents), load_encoder(None, "torch-bf16").encode(sents)
    assert np.allclose(np.linalg.norm(b, axis=1), 1.0, atol=1e-5) and (a * b).sum(1).min() >= 0.9999


def test_rate_log_reports_rate_and_eta():
    from lvm.ingest.embedding import RateLog

    lines, t = [], [0.0]
    log = RateLog(lines.append, every=30.0)
    log._clock = lambda: t[0]
    log.start = log.last = 0.0
    t[0] = 10.0
    log(1000, 10000)  # within 30 s: quiet
    t[0] = 40.0
    log(4000, 10000)
    t[0] = 50.0
    log(10000, 10000)  # the last one always
    assert len(lines) == 2 and "4,000 / 10,000 sentences (40.0 %), 100 sentences/s, ETA 60 s" in lines[0]

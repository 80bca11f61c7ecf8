"""The article input (lvm.models.base, article=True): the article-so-far rows, the models, training, prediction
and serving read the mean of every earlier sentence of the article besides the context."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from fastapi.testclient import TestClient
from test_server import DIM, register

from lvm.data.table import SentenceTable, article_so_far, window_targets
from lvm.evaluation.metrics import Windows, article_mean, article_starts, predict_rows, window_batch
from lvm.evaluation.predictors import model_predictor, predict
from lvm.models import MODEL_NAMES, build_model
from lvm.models.io import load_model, save_model
from lvm.train.config import TrainConfig
from lvm.train.trainer import fit

SMALL = {"lstm": {"hidden": 16}, "gru": {"hidden": 16}, "transformer": {"hidden": 16, "heads": 2, "ffn": 32},
         "mamba2": {"hidden": 16, "layers": 1, "headdim": 8}}


def test_article_so_far_is_the_mean_of_every_earlier_row_of_the_article():
    rng = np.random.default_rng(0)
    position = np.concatenate([np.arange(n) for n in (7, 1, 20, 3, 12)])
    vectors = rng.normal(size=(len(position), 4)).astype(np.float32)
    starts = np.arange(len(position)) - position
    want = np.array([vectors[starts[r]:r].mean(0) if position[r] else np.zeros(4) for r in range(len(position))])
    for chunk in (1, 5, 7, 1000):  # article boundaries inside and across chunks
        np.testing.assert_allclose(article_so_far(vectors, position, chunk=chunk), want, atol=1e-6)
    # for a window's target it is the article_mean baseline's vector (context included)
    t = window_targets(np.repeat(np.arange(5), [7, 1, 20, 3, 12]).astype(str), position, 3)
    w = window_batch(vectors, t, 3, starts)
    np.testing.assert_allclose(article_mean(w), want[t], atol=1e-6)


@pytest.mark.parametrize("arch", MODEL_NAMES)
def test_residual_article_model_starts_as_the_article_blend(arch):
    torch.manual_seed(0)
    model = build_model(arch, 8, context=4, residual=True, article=True, **SMALL.get(arch, {}))
    assert model.inputs == 5
    ctx, art = torch.randn(3, 4, 8), torch.randn(3, 8)
    blend = 0.5 * F.normalize(art, dim=-1) + 0.5 * F.normalize(ctx.mean(1), dim=-1)
    torch.testing.assert_close(model(ctx, art), blend)
    with pytest.raises(ValueError, match="no article was given"):
        model(ctx)
    plain = build_model(arch, 8, context=4, residual=True, **SMALL.get(arch, {}))
    with pytest.raises(ValueError, match="given an article"):
        plain(ctx, art)
    with pytest.raises(ValueError, match=r"expected article \[3, 8\]"):
        model(ctx, art[:2])


def test_the_article_is_read_and_survives_save_and_load(tmp_path):
    torch.manual_seed(0)
    model = build_model("lstm", 8, context=4, residual=True, article=True, hidden=16)
    torch.nn.init.normal_(model.head.out.weight)  # a head that is not zero: the output depends on features
    ctx, art = torch.randn(3, 4, 8), torch.randn(3, 8)
    assert not torch.allclose(model(ctx, art), model(ctx, -art))  # the article row reaches the features too
    save_model(tmp_path / "m", model, {})
    loaded, config = load_model(tmp_path / "m")
    assert config["article"] is True and loaded.article
    torch.testing.assert_close(loaded(ctx, art), model(ctx, art))
    # a folder written before the article input existed has no "article" key: a plain model
    plain = build_model("lstm", 8, context=4, hidden=16)
    save_model(tmp_path / "old", plain, {})
    cfg = json.loads((tmp_path / "old" / "config.json").read_text())
    cfg.pop("article")
    (tmp_path / "old" / "config.json").write_text(json.dumps(cfg))
    assert load_model(tmp_path / "old")[0].article is False


def test_transformer_counts_the_article_row_against_max_context():
    build_model("transformer", 8, context=3, article=True, hidden=16, heads=2, ffn=32, max_context=4)
    with pytest.raises(ValueError, match="the article row exceeds max_context 4"):
        build_model("transformer", 8, context=4, article=True, hidden=16, heads=2, ffn=32, max_context=4)


def topic_table(n_articles=60, length=24, dim=8, seed=0) -> SentenceTable:
    """Every sentence is its article's topic plus much noise: the context mean alone is a poor guess of the topic,
    the mean of the whole article so far a good one."""
    rng = np.random.default_rng(seed)
    rows, vecs = [], []
    for a in range(n_articles):
        topic = rng.normal(size=dim)
        topic /= np.linalg.norm(topic)
        for p in range(length):
            v = topic + 1.2 * rng.normal(size=dim) / np.sqrt(dim)
            rows.append((f"a{a:03d}", p, f"s{p}"))
            vecs.append(v / np.linalg.norm(v))
    return SentenceTable.from_sentences(rows, np.array(vecs, np.float32), {"encoder": "synthetic"})


def test_training_with_the_article_input_uses_it(tmp_path):
    table = topic_table()
    C = 3
    art = np.asarray(table.article_id)
    train_rows = np.flatnonzero(np.isin(art, np.unique(art)[:48]))
    val_rows = np.flatnonzero(~np.isin(art, np.unique(art)[:48]))
    train_t = window_targets(table.article_id, table.position, C, train_rows)
    val_t = window_targets(table.article_id, table.position, C, val_rows)
    common = dict(arch="lstm", epochs=6, batch_size=64, context=C, model={"hidden": 16}, lr=3e-3, precision="fp32")
    cfg = TrainConfig(**common, article=True)
    with pytest.raises(ValueError, match="pass position="):
        fit(cfg, table.vectors, train_t, val_t, tmp_path / "x")
    with_article = fit(cfg, table.vectors, train_t, val_t, tmp_path / "a", position=table.position)
    without = fit(TrainConfig(**common, article=False), table.vectors, train_t, val_t, tmp_path / "p")
    assert with_article["best_val_cosine"] > without["best_val_cosine"] + 0.05

    # prediction: a saved model reads the article from Windows, the same numbers as predict() with the rows
    saved = model_predictor(tmp_path / "a")
    assert saved.needs_article
    starts = article_starts(table.position)
    got = predict_rows(saved, table.vectors, val_t, C, starts)
    ctx = table.vectors[val_t[:, None] + np.arange(-C, 0)]
    want = predict(saved.model, ctx, article=article_so_far(table.vectors, table.position)[val_t])
    np.testing.assert_allclose(got, want, atol=1e-5)
    cos = float(np.mean(np.sum(got * table.vectors[val_t], axis=1)))
    assert cos == pytest.approx(with_article["best_val_cosine"], abs=2e-3)
    # bare contexts: nothing before the window is known, so the article is the context itself
    np.testing.assert_allclose(saved(ctx[:4]), predict(saved.model, ctx[:4], article=ctx[:4].mean(1)), atol=1e-6)
    assert np.allclose(saved(Windows(ctx[:4])), saved(ctx[:4]))


def article_registry(tmp_path):
    """A registry whose production model reads the article (a head that is not zero, so the input matters)."""
    from lvm.store.registry import Registry

    torch.manual_seed(0)
    model = build_model("lstm", DIM, context=5, residual=True, article=True, hidden=16)
    torch.nn.init.normal_(model.head.out.weight, std=0.1)
    folder = tmp_path / "m"
    save_model(folder, model, {"data_hash": "h", "encoder": f"hash:{DIM}"})
    (folder / "metrics.json").write_text(json.dumps({"cosine": 0.5}))
    (folder / "history.json").write_text("[]")
    reg = Registry(tmp_path / "registry")
    register(reg, folder, alias="production")
    return reg, model


def test_server_reads_the_article_field(tmp_path):
    from lvm.server.app import create_app

    reg, model = article_registry(tmp_path)
    rng = np.random.default_rng(0)
    ctx = rng.normal(size=(2, 5, DIM)).astype(np.float32)
    art = rng.normal(size=(2, DIM)).astype(np.float32)
    with TestClient(create_app(reg.root)) as client:
        assert client.get("/model").json()["article"] is True
        r = client.post("/predict", json={"contexts": ctx.tolist(), "article": art.tolist()})
        assert r.status_code == 200, r.text
        np.testing.assert_allclose(r.json()["vectors"], predict(model, ctx, article=art), atol=1e-5)
        r = client.post("/predict", json={"contexts": ctx.tolist()})  # no article: the context is all there is
        np.testing.assert_allclose(r.json()["vectors"], predict(model, ctx, article=ctx.mean(1)), atol=1e-5)
        for bad, message in [(json.dumps(art[:1].tolist()), "[2][16] array"), ('"x"', "[2][16] array"),
                             (json.dumps([[1.0] * DIM, [1.0] * (DIM - 1)]), "[2][16] array"),
                             ("[" + ", ".join(["[" + ", ".join(["NaN"] * DIM) + "]"] * 2) + "]",
                              "non-finite values (NaN, Infinity or beyond float32 range), first at article[0][0]")]:
            body = '{"contexts": ' + json.dumps(ctx.tolist()) + ', "article": ' + bad + "}"
            r = client.post("/predict", content=body, headers={"content-type": "application/json"})
            assert r.status_code == 422 and message in r.json()["detail"], r.text
        assert client.post("/predict", json={"contexts": ctx.tolist()}).status_code == 200  # still serving


def test_plain_model_refuses_an_article_field(tmp_path):
    from test_server import make_model_dir

    from lvm.server.app import create_app
    from lvm.store.registry import Registry

    reg = Registry(tmp_path / "registry")
    register(reg, make_model_dir(tmp_path / "m", seed=0), alias="production")
    with TestClient(create_app(reg.root)) as client:
        assert client.get("/model").json()["article"] is False
        body = {"contexts": np.zeros((1, 5, DIM)).tolist(), "article": np.zeros((1, DIM)).tolist()}
        r = client.post("/predict", json=body)
        assert r.status_code == 422 and "does not read the article" in r.json()["detail"]


def test_next_reads_every_sentence_it_is_sent(tmp_path):
    """/next with an article model: the context is the last C sentences, the article the mean of all of them."""
    from conftest import make_table

    from lvm.data.dataset import write_table
    from lvm.ingest.encoders import HashEncoder
    from lvm.server.app import create_app
    from lvm.server.bank import load_bank

    encoder, bank_path = HashEncoder(DIM), tmp_path / "bank.parquet"
    write_table(make_table(n_articles=4, length=10, dim=DIM), bank_path)

    reg, model = article_registry(tmp_path)
    bank = load_bank(bank_path)
    sentences = [str(t) for t in bank.text[:9]]
    vecs = encoder.encode(sentences).astype(np.float32)
    pred = predict(model, vecs[None, -5:], article=vecs.mean(0, keepdims=True))[0]
    scores = bank.vectors @ pred
    scores[np.isin(bank.text, sentences)] = -np.inf  # exclude_context: the sentences sent
    top = np.argsort(-scores)[:3]
    with TestClient(create_app(reg.root, encoder=encoder, bank_path=bank_path)) as client:
        r = client.post("/next", json={"sentences": sentences, "k": 3})
        assert r.status_code == 200, r.text
        assert [x["text"] for x in r.json()["results"]] == [bank.text[i] for i in top]
        long = sentences[:1] + ["x" * 10_001] + sentences[2:]  # every sentence is encoded, so every one is checked
        r = client.post("/next", json={"sentences": long, "k": 3})
        assert r.status_code == 413 and "sentences[1]" in r.json()["detail"]


def test_a_memory_mapped_table_trains_the_same_and_leaves_no_spill_file(tmp_path):
    """A memory-mapped table (lvm.data.shards) gets its article rows in an unlinked, memory-mapped temporary file."""
    table = topic_table(n_articles=12, length=12)
    np.save(tmp_path / "v.npy", table.vectors)
    mapped = np.load(tmp_path / "v.npy", mmap_mode="r")
    t = window_targets(table.article_id, table.position, 3)
    cfg = TrainConfig(arch="lstm", epochs=2, batch_size=32, context=3, model={"hidden": 8}, precision="fp32",
                      patience=None)
    a = fit(cfg, table.vectors, t[::2], t[1::2], tmp_path / "ram", position=table.position)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)   # torch's "not writable" warning is for arrays it may write
        b = fit(cfg, mapped, t[::2], t[1::2], tmp_path / "mapped", position=table.position)
    assert a["best_val_cosine"] == b["best_val_cosine"]
    assert not [p.name for p in (tmp_path / "mapped").iterdir() if p.name.startswith(".article-rows")]

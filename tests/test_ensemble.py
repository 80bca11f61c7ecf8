"""The ensemble of trained models (lvm.models.ensemble, lvm.models.io.save_ensemble): one model folder whose
prediction is the mean of its members' unit predictions, saved, loaded, registered and served like any other."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from fastapi.testclient import TestClient
from test_server import DIM, register

from lvm.evaluation.predictors import model_predictor, predict
from lvm.models import Ensemble, build_model
from lvm.models.io import load_model, save_ensemble, save_model

SMALL = {"lstm": {"hidden": 8}, "transformer": {"hidden": 8, "heads": 2, "ffn": 16}, "gru": {"hidden": 8}}


def member(arch: str, seed: int, article: bool = True, context: int = 5, dim: int = DIM):
    torch.manual_seed(seed)
    m = build_model(arch, dim, context=context, residual=True, article=article, **SMALL[arch])
    torch.nn.init.normal_(m.head.out.weight, std=0.2)  # not the blend alone: members differ
    return m


def folder(tmp_path, name: str, model, **config) -> str:
    path = tmp_path / name
    save_model(path, model, {"encoder": f"hash:{DIM}", "data_hash": "h", "split": {"seed": 0},
                             "dataset": "t.parquet", **config})
    (path / "metrics.json").write_text(json.dumps({"val_cosine": 0.4}))
    return str(path)


def test_ensemble_is_the_mean_of_unit_predictions():
    a, b = member("lstm", 0), member("transformer", 1)
    ctx, art = torch.randn(4, 5, DIM), torch.randn(4, DIM)
    want = (F.normalize(a(ctx, art), dim=-1) + F.normalize(b(ctx, art), dim=-1)) / 2
    torch.testing.assert_close(Ensemble([a, b])(ctx, art), want)
    with pytest.raises(ValueError, match="at least 2"):
        Ensemble([a])
    with pytest.raises(ValueError, match="share D, context and the article input"):
        Ensemble([a, member("gru", 2, article=False)])
    with pytest.raises(ValueError, match="share D, context and the article input"):
        Ensemble([a, member("gru", 2, context=4)])


def test_save_ensemble_round_trip_and_refusals(tmp_path):
    dirs = {"lstm": folder(tmp_path, "l", member("lstm", 0)), "transformer": folder(tmp_path, "t",
                                                                                    member("transformer", 1))}
    out = save_ensemble(dirs, tmp_path / "ens")
    model, config = load_model(out)
    assert isinstance(model, Ensemble) and config["arch"] == "ensemble" and config["article"] is True
    assert config["member_names"] == ["lstm", "transformer"] and config["data_hash"] == "h"
    assert json.loads((out / "metrics.json").read_text())["members_val_cosine"] == {"lstm": 0.4, "transformer": 0.4}
    rng = np.random.default_rng(0)
    ctx, art = rng.normal(size=(3, 5, DIM)).astype(np.float32), rng.normal(size=(3, DIM)).astype(np.float32)
    each = [model_predictor(d).model for d in dirs.values()]
    want = sum(predict(m, ctx, article=art) for m in each)
    want /= np.linalg.norm(want, axis=1, keepdims=True)
    np.testing.assert_allclose(predict(model, ctx, article=art), want, atol=1e-5)

    other = folder(tmp_path, "o", member("gru", 3), data_hash="other")
    with pytest.raises(ValueError, match="disagree on 'data_hash'"):
        save_ensemble({**dirs, "gru": other}, tmp_path / "bad")
    with pytest.raises(ValueError, match="at least 2 trained models"):
        save_ensemble({"lstm": dirs["lstm"]}, tmp_path / "bad")
    assert not (tmp_path / "bad").exists()


def test_an_ensemble_is_registered_and_served(tmp_path):
    from lvm.server.app import create_app
    from lvm.store.registry import Registry

    dirs = {"lstm": folder(tmp_path, "l", member("lstm", 0)), "gru": folder(tmp_path, "g", member("gru", 1))}
    out = save_ensemble(dirs, tmp_path / "ens")
    reg = Registry(tmp_path / "registry")
    register(reg, out, alias="production")
    model, _ = load_model(out)
    ctx = np.random.default_rng(1).normal(size=(2, 5, DIM)).astype(np.float32)
    with TestClient(create_app(reg.root)) as client:
        info = client.get("/model").json()
        assert info["arch"] == "ensemble" and info["article"] is True
        r = client.post("/predict", json={"contexts": ctx.tolist()})
        assert r.status_code == 200, r.text
        np.testing.assert_allclose(r.json()["vectors"], predict(model, ctx, article=ctx.mean(1)), atol=1e-5)

"""A served /predict is the evaluated prediction, bit for bit in fp32: the server predicts through the evaluation's
one inference path (lvm.evaluation.predictors), for a plain model, a model that reads the article so far, and an
ensemble of the two."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import make_table
from fastapi.testclient import TestClient

from lvm.evaluation.heldout import HeldOutSet
from lvm.evaluation.metrics import article_mean
from lvm.evaluation.predictors import model_predictor
from lvm.models import build_model
from lvm.models.io import save_ensemble, save_model
from lvm.server.app import create_app
from lvm.store.registry import Registry

DIM, C = 16, 3


def _model(folder, arch: str, article: bool, seed: int):
    torch.manual_seed(seed)
    hp = {"hidden": 32, "layers": 1}
    model = build_model(arch, DIM, context=C, article=article, **hp)
    for p in model.parameters():  # away from the zero-initialised head, so the outputs differ per window
        torch.nn.init.normal_(p, std=0.2)
    save_model(folder, model, {"arch": arch, "dim": DIM, "context": C, "residual": False, "article": article,
                               "model": hp, "data_hash": "h", "encoder": f"hash:{DIM}", "seed": seed})
    return folder


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    base = tmp_path_factory.mktemp("served")
    plain = _model(base / "plain", "lstm", False, 1)
    art = _model(base / "article", "transformer", True, 2)
    art2 = _model(base / "article2", "lstm", True, 3)
    return {"plain": plain, "article": art, "ensemble": save_ensemble({"a": art, "b": art2}, base / "ensemble")}


@pytest.mark.parametrize("kind", ["plain", "article", "ensemble"])
def test_a_served_prediction_is_the_evaluated_one_bit_for_bit(tmp_path, folders, kind):
    table = make_table(n_articles=4, length=12, dim=DIM)
    held = HeldOutSet.of(table, None, C)
    w = held.windows(held.targets)
    evaluated = model_predictor(folders[kind])(w)
    body = {"contexts": w.ctx.tolist()}
    if kind != "plain":
        body["article"] = article_mean(w).astype(np.float32).tolist()
    reg = Registry(tmp_path / "registry")
    reg.register(folders[kind], data_hash="h", encoder=f"hash:{DIM}", encoder_dim=DIM, alias="production")
    with TestClient(create_app(reg.root)) as client:
        r = client.post("/predict", json=body)
    assert r.status_code == 200, r.text
    served = np.asarray(r.json()["vectors"], dtype=np.float32)
    assert served.shape == evaluated.shape and np.array_equal(served, evaluated)

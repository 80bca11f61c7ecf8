"""The forward-prediction suite on cases whose answer is known: an oracle, a copier, a bag of sentences, a
rotation model, a trained model on sequences with a real forward signal."""

import numpy as np
import pytest

from lvm.forward import ROLLOUT_STEPS, contrastive_accuracy, forward_suite, summary
from lvm.metrics import article_starts

C, D = 3, 16


def rotation_data(n_articles=40, length=30, dim=D, noise=0.15, seed=0):
    """v[p+1] = R v[p] + noise (R a fixed random rotation), unit rows: the next vector is predictable from the
    last one and from nothing else, and order matters."""
    rng = np.random.default_rng(seed)
    R = np.linalg.qr(rng.normal(size=(dim, dim)))[0]
    vecs, pos = [], []
    for _ in range(n_articles):
        v = rng.normal(size=dim)
        for p in range(length):
            v /= np.linalg.norm(v)
            vecs.append(v)
            pos.append(p)
            v = R @ v + noise * rng.normal(size=dim) / np.sqrt(dim)
    vectors = np.array(vecs, np.float32)
    position = np.array(pos)
    return vectors, position, R


@pytest.fixture(scope="module")
def data():
    vectors, position, R = rotation_data()
    starts = article_starts(position)
    targets = np.flatnonzero(position >= C)
    return vectors, position, starts, targets, R


def _suite(fn, data, **kw):
    vectors, _, starts, targets, _ = data
    return forward_suite(fn, vectors, targets, np.arange(len(vectors)), C, starts, n_boot=200, **kw)


def test_offset_sweep_of_the_true_next_vector_peaks_at_zero(data):
    vectors, _, _, targets, R = data
    s = _suite(lambda w: w.ctx[:, -1] @ R.T, data, pred=vectors[targets])
    sw = s["offsets"]
    assert sw["k"] == list(range(-(C + 2), 4)) and sw["input"] == [False, False, True, True, True, False, False,
                                                                    False, False]
    k0 = sw["k"].index(0)
    assert sw["cosine"][k0] == pytest.approx(1.0) and int(np.argmax(sw["cosine"])) == k0
    assert s["contrastive_accuracy"] == pytest.approx(1.0)


def test_contrastive_accuracy_of_a_random_predictor_is_chance(data):
    vectors, _, _, targets, _ = data
    rnd = np.random.default_rng(3).normal(size=(len(targets), D))
    assert contrastive_accuracy(rnd, targets, np.arange(len(vectors)), vectors, C) == pytest.approx(0.5, abs=0.03)
    nan = np.full((len(targets), D), np.nan)
    assert contrastive_accuracy(nan, targets, np.arange(len(vectors)), vectors, C) == 0.0


def test_the_last_input_copier_echoes_and_a_rotation_model_predicts_forward(data):
    R = data[4]
    copier = summary(_suite(lambda w: w.ctx[:, -1], data))
    rotation = summary(_suite(lambda w: w.ctx[:, -1] @ R.T, data))
    assert copier["paraphrase_ratio"] > 1.2 and rotation["paraphrase_ratio"] == pytest.approx(1.0, abs=0.05)
    assert rotation["forward_margin"] > copier["forward_margin"] and rotation["forward_margin_lo"] > 0
    assert rotation["shuffle_drop_lo"] > 0.1 and rotation["rollout@5"] > 0.5
    assert copier["last_input_gain"] == 0.0 and rotation["last_input_gain_lo"] > 0.5


def test_a_bag_of_sentences_shows_no_order_ablation_drop(data):
    s = _suite(lambda w: np.tanh(w.ctx.sum(1)), data)   # order-invariant by construction
    for kind in ("shuffled", "reversed", "mean"):       # (the mean context has the same sum)
        assert s["ablations"][kind]["drop"] == pytest.approx(0.0, abs=1e-6)
        assert s["ablations"][kind]["ci95"] == pytest.approx([0.0, 0.0], abs=1e-6)
    R = data[4]
    assert _suite(lambda w: w.ctx[:, -1] @ R.T, data)["ablations"]["mean"]["drop"] > 0.1


def test_rollout_feeds_predictions_back(data):
    R = data[4]
    s = _suite(lambda w: w.ctx[:, -1] @ R.T, data)["rollout"]
    assert s["steps"] == list(range(1, ROLLOUT_STEPS + 1)) and s["n"] > 0
    assert s["cosine"][0] > s["cosine"][-1] > 0.5     # errors compound, the signal stays
    frozen = _suite(lambda w: w.ctx[:, 0], data)["rollout"]["cosine"]   # oldest input: never sees a prediction
    assert frozen[1] < frozen[0] or frozen[0] < 0.5


def test_a_trained_model_with_a_real_forward_signal_passes_every_gate(data, tmp_path):
    from lvm.decision import forward_gates
    from lvm.evaluation import model_predictor
    from lvm.metrics import on_context
    from lvm.train import TrainConfig, fit

    vectors, _, starts, targets, _ = data
    art = starts[targets]
    train_t, val_t = targets[art < starts[-1] * 0.7], targets[art >= starts[-1] * 0.7]
    cfg = TrainConfig(arch="lstm", epochs=8, batch_size=64, lr=3e-3, context=C, precision="fp32", patience=None,
                      residual=False, model={"hidden": 32, "layers": 1})
    fit(cfg, vectors, train_t, val_t, tmp_path / "m")
    suite = forward_suite(on_context(model_predictor(tmp_path / "m")), vectors, val_t, np.unique(
        np.concatenate([val_t - k for k in range(C + 1)])), C, starts, n_boot=200)
    gates = forward_gates(summary(suite))
    assert all(g["passed"] for g in gates.values()), gates
    copier = forward_gates(summary(forward_suite(lambda w: w.ctx[:, -1], vectors, val_t, np.unique(
        np.concatenate([val_t - k for k in range(C + 1)])), C, starts, n_boot=200)))
    assert not copier["last_input_gain"]["passed"] and copier["last_input_gain"]["value"] == pytest.approx(0.0)
    assert copier["forward_margin"]["passed"]   # why the forward margin alone is not enough to catch a copier

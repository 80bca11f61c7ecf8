"""The forward-prediction suite on cases whose answer is known: an oracle, a copier, a bag of sentences, a
rotation model, a trained model on sequences with a real forward signal."""

import numpy as np
import pytest

from lvm.evaluation.forward import ROLLOUT_STEPS, contrastive_accuracy, summary
from lvm.evaluation.metrics import article_starts
from lvm.evaluation.suite import forward_suite

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
    s = _suite(lambda w: w.ctx[:, -1] @ R.T, data)  # the rotation data: this is (nearly) the true next vector
    sw = s["offsets"]
    assert sw["k"] == list(range(-(C + 2), 4)) and sw["input"] == [False, False, True, True, True, False, False,
                                                                    False, False]
    k0 = sw["k"].index(0)
    assert sw["cosine"][k0] > 0.98 and int(np.argmax(sw["cosine"])) == k0
    assert s["contrastive_accuracy"] > 0.99


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


def test_an_article_aware_predictor_is_measured_with_the_sentence_before_the_window_unseen():
    """Independent random sentences: nothing is predictable, so an honest margin is 0. The article mean holds the
    sentence before the window, which is what its served margin measures (below 0); with that sentence left out
    of its article the margin is 0 again. A context-only predictor is not asked again: both margins are one."""
    from lvm.evaluation.metrics import article_mean

    rng = np.random.default_rng(0)
    position = np.tile(np.arange(12), 200)
    vectors = rng.normal(size=(len(position), D)).astype(np.float32)
    starts = article_starts(position)
    targets = np.flatnonzero(position >= C)
    s = forward_suite(article_mean, vectors, targets, np.arange(len(vectors)), C, starts, n_boot=200)
    served, unseen = s["forward_margin_served"], s["forward_margin"]
    assert served["ci95"][1] < -0.3
    assert abs(unseen["diff"]) < 0.02 and unseen["ci95"][0] < 0.03 and unseen["ci95"][1] > -0.03
    assert served["n"] == unseen["n"] == int((position[targets] > C).sum())

    calls = []

    def ctx_mean(w):
        calls.append(len(w))
        return w.ctx.mean(1)
    ctx_mean.needs_article = False
    s = forward_suite(ctx_mean, vectors, targets, np.arange(len(vectors)), C, starts, n_boot=200)
    assert s["forward_margin"] == s["forward_margin_served"]
    # plain, 3 ablations, the rollout (its first step is the plain prediction, not made again)
    assert sum(calls) == len(targets) * (1 + 3) + s["rollout"]["n"] * (ROLLOUT_STEPS - 1)


def test_without_order_tests_the_margins_are_the_same_and_no_ablation_or_rollout_is_run(data):
    R = data[4]
    fn = lambda w: w.ctx[:, -1] @ R.T  # noqa: E731
    full, cheap = _suite(fn, data), _suite(fn, data, order_tests=False)
    for k in ("forward_margin", "forward_margin_served", "direction_margin", "contrastive_accuracy", "offsets"):
        assert cheap[k] == full[k]
    assert cheap["ablations"] == {} and cheap["rollout"]["cosine"] == []
    assert summary(cheap)["shuffle_drop"] is None and summary(full)["shuffle_drop"] is not None


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


@pytest.mark.parametrize("article", [False, True])
def test_a_trained_model_with_a_real_forward_signal_passes_every_gate(data, tmp_path, article):
    from lvm.decision import forward_gates
    from lvm.evaluation.compare import model_predictor
    from lvm.evaluation.metrics import on_context
    from lvm.train.config import TrainConfig
    from lvm.train.trainer import fit

    vectors, _, starts, targets, _ = data
    art = starts[targets]
    train_t, val_t = targets[art < starts[-1] * 0.7], targets[art >= starts[-1] * 0.7]
    cfg = TrainConfig(arch="lstm", epochs=8, batch_size=64, lr=3e-3, context=C, precision="fp32", patience=None,
                      residual=False, article=article, model={"hidden": 32, "layers": 1})
    fit(cfg, vectors, train_t, val_t, tmp_path / "m", position=data[1])
    suite = forward_suite(on_context(model_predictor(tmp_path / "m")), vectors, val_t, np.unique(
        np.concatenate([val_t - k for k in range(C + 1)])), C, starts, n_boot=200)
    gates = forward_gates(summary(suite))
    assert all(g["passed"] for g in gates.values()), gates
    copier = forward_gates(summary(forward_suite(lambda w: w.ctx[:, -1], vectors, val_t, np.unique(
        np.concatenate([val_t - k for k in range(C + 1)])), C, starts, n_boot=200)))
    assert not copier["last_input_gain"]["passed"] and copier["last_input_gain"]["value"] == pytest.approx(0.0)
    assert copier["forward_margin"]["passed"]   # why the forward margin alone is not enough to catch a copier


# --------------------------------------------------------------------------------------------- lvm evaluate

def _table(seed, dim=D, encoder="synthetic-rotation", n_articles=24):
    from lvm.data.table import SentenceTable

    vectors, position, _ = rotation_data(n_articles=n_articles, length=20, dim=dim, seed=seed)
    rows = [(f"s{seed}-a{i // 20:03d}", int(p), "") for i, p in enumerate(position)]
    return SentenceTable.from_sentences(rows, vectors, {"encoder": encoder})


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny lstm trained on one rotation table (seed 0) through train_on_table (config.json records it)."""
    from lvm.data.dataset import write_table
    from lvm.train.config import TrainConfig
    from lvm.train.on_table import train_on_table

    d = tmp_path_factory.mktemp("ood")
    path = write_table(_table(0), d / "train.parquet")
    cfg = TrainConfig(arch="lstm", epochs=3, batch_size=64, lr=3e-3, context=C, precision="fp32",
                      model={"hidden": 16, "layers": 1})
    train_on_table(path, cfg, d / "m", baselines=False)
    return d, path


def test_lvm_evaluate_scores_another_corpus_out_of_distribution(trained):
    from typer.testing import CliRunner

    from lvm.cli import app
    from lvm.data.dataset import write_table

    d, _ = trained
    other = write_table(_table(7, n_articles=6), d / "other.parquet")
    res = CliRunner().invoke(app, ["evaluate", "--model", str(d / "m"), "--data", str(other),
                                   "--json-out", str(d / "ood.json")])
    assert res.exit_code == 0, res.output
    assert "out of distribution" in res.output and "forward margin" in res.output
    assert "article_blend (baseline)" in res.output
    import json
    out = json.loads((d / "ood.json").read_text())
    assert out["part"] == "all" and out["out_of_distribution"] and out["n"] == 6 * (20 - C)
    assert set(out["baselines"]) == {"global_mean", "last_context", "context_mean", "ridge", "article_mean",
                                     "article_blend"}
    assert out["models"]["lstm"]["forward"]["offsets"]["k"][0] == -(C + 2)
    same = CliRunner().invoke(app, ["evaluate", "--model", str(d / "m"), "--data", str(d / "train.parquet")])
    assert same.exit_code == 0 and "test windows" in same.output, same.output


@pytest.mark.parametrize("kind", ["encoder", "dim"])
def test_lvm_evaluate_refuses_another_encoder_or_dimension(trained, kind):
    from typer.testing import CliRunner

    from lvm.cli import app
    from lvm.data.dataset import write_table

    d, _ = trained
    table = _table(3, encoder="hash:16") if kind == "encoder" else _table(3, dim=8)
    path = write_table(table, d / f"bad-{kind}.parquet")
    res = CliRunner().invoke(app, ["evaluate", "--model", str(d / "m"), "--data", str(path)])
    assert res.exit_code == 2 and "error:" in res.output and path.name in res.output, res.output
    assert "Traceback" not in res.output
    assert ("'hash:16'" in res.output and "synthetic-rotation" in res.output) if kind == "encoder" else \
        "D=8" in res.output and "D=16" in res.output


def test_lvm_evaluate_on_a_nan_model_scores_zero_not_one(trained, tmp_path):
    """`lvm evaluate` on a NaN model used to print `nan | 1.0000 | 1.0000 | 1.0000`."""
    import shutil

    import torch
    from safetensors.torch import load_file, save_file
    from typer.testing import CliRunner

    from lvm.cli import app

    d, path = trained
    m = shutil.copytree(d / "m", tmp_path / "nan")
    w = load_file(m / "model.safetensors")
    save_file({k: torch.full_like(v, float("nan")) for k, v in w.items()}, m / "model.safetensors")
    res = CliRunner().invoke(app, ["evaluate", "--model", str(m), "--data", str(path), "--json-out",
                                   str(tmp_path / "nan.json")])
    assert res.exit_code == 0, res.output
    import json
    lstm = json.loads((tmp_path / "nan.json").read_text())["models"]["lstm"]
    assert lstm["cosine"] == lstm["hit@1"] == lstm["mrr"] == 0.0 and lstm["nonfinite"] == 1.0
    row = next(line for line in res.output.splitlines() if line.startswith("| **lstm** |"))
    assert row.startswith("| **lstm** | 0.0000 | 0.0000 | 0.0000 | 0.0000 |"), row
    from lvm.decision import decide
    assert decide({"lstm": lstm}, {}).branch == "investigate"


def test_compare_scores_every_predictor_with_the_suite_and_the_ood_gap(trained):
    from lvm.data.dataset import read_table, save_split, split_articles, write_table
    from lvm.evaluation.compare import compare, markdown_table, table_rows

    d, path = trained
    split = save_split(split_articles(read_table(path), (0.8, 0.1, 0.1), 0), d / "split.json")
    other = write_table(_table(9, n_articles=4), d / "other9.parquet")
    comp = compare(str(path), str(split), {"lstm": str(d / "m")}, C, ood_path=str(other))
    assert set(comp["baselines"]) == {"global_mean", "last_context", "context_mean", "ridge", "article_mean",
                                      "article_blend"}
    for m in [*comp["models"].values(), *comp["baselines"].values()]:
        assert m["forward"]["n"] == comp["n"] and m["forward_margin"] is not None
    ood = comp["ood"]
    assert ood["n"] == 4 * (20 - C) and set(ood["val_minus_ood"]) == {"lstm", *comp["baselines"]}
    assert "Out of distribution" in markdown_table(comp) and any(r["kind"] == "model (OOD)" for r in table_rows(comp))


def test_lvm_evaluate_needs_the_training_table_for_the_baselines(trained, tmp_path):
    import shutil

    from typer.testing import CliRunner

    from lvm.cli import app
    from lvm.data.dataset import write_table

    d, path = trained
    other = write_table(_table(5, n_articles=3), tmp_path / "other5.parquet")
    moved = tmp_path / "moved.parquet"
    shutil.copy(path, moved)
    m = shutil.copytree(d / "m", tmp_path / "m")
    cfg = (m / "config.json").read_text().replace(str(path), str(tmp_path / "gone.parquet"))
    (m / "config.json").write_text(cfg)
    res = CliRunner().invoke(app, ["evaluate", "--model", str(m), "--data", str(other)])
    assert res.exit_code == 2 and "gone.parquet" in res.output and "--train-data" in res.output, res.output
    ok = CliRunner().invoke(app, ["evaluate", "--model", str(m), "--data", str(other), "--train-data", str(moved)])
    assert ok.exit_code == 0, ok.output
    bad = CliRunner().invoke(app, ["evaluate", "--model", str(m), "--data", str(other), "--train-data", str(other)])
    assert bad.exit_code == 2 and "does not have the content" in bad.output and "Traceback" not in bad.output


def test_order_tests_run_on_a_seeded_sample_of_a_big_set(data, monkeypatch):
    """The shuffled context (a gate) on ORDER_WINDOWS sampled windows, the reversed and mean context and the
    rollout on DETAIL_WINDOWS of them; everything else on every window."""
    from lvm.evaluation import suite

    monkeypatch.setattr(suite, "DETAIL_WINDOWS", 50)
    vectors, _, starts, targets, R = data
    s = forward_suite(lambda w: w.ctx[:, -1] @ R.T, vectors, targets, np.arange(len(vectors)), C, starts,
                      n_boot=200, order_windows=200)
    assert s["n"] == len(targets) and s["order_windows"] == 200 and s["detail_windows"] == 50
    assert s["ablations"]["shuffled"]["n"] == 200 and s["ablations"]["reversed"]["n"] == 50
    assert 0 < s["rollout"]["n"] <= 50 and s["forward_margin"]["n"] > 1000
    again = forward_suite(lambda w: w.ctx[:, -1] @ R.T, vectors, targets, np.arange(len(vectors)), C, starts,
                          n_boot=200, order_windows=200)
    assert again["ablations"] == s["ablations"]  # seeded: the same sample every time


def test_retrieval_runs_on_a_seeded_sample_of_a_big_set_and_every_other_measure_on_every_window(data):
    """Ranking against the bank is windows x bank: above RETRIEVAL_WINDOWS it is measured on a sample, and the
    sample's contrastive accuracy is the whole set's within sampling error; cosine and the margins are unchanged."""
    vectors, _, starts, targets, R = data
    fn = lambda w: w.ctx[:, 0] @ R.T  # noqa: E731  (from the first context row: right only now and then)
    full = forward_suite(fn, vectors, targets, np.arange(len(vectors)), C, starts, n_boot=200, order_tests=False)
    part = forward_suite(fn, vectors, targets, np.arange(len(vectors)), C, starts, n_boot=200, order_tests=False,
                         retrieval_windows=300)
    assert part["cosine"] == full["cosine"] and part["forward_margin"] == full["forward_margin"]
    assert part["contrastive_accuracy"] != full["contrastive_accuracy"]  # measured on 300 windows, not all
    assert abs(part["contrastive_accuracy"] - full["contrastive_accuracy"]) < 0.03
    again = forward_suite(fn, vectors, targets, np.arange(len(vectors)), C, starts, n_boot=200, order_tests=False,
                          retrieval_windows=300)
    assert again["contrastive_accuracy"] == part["contrastive_accuracy"]  # seeded


def test_score_predictors_says_how_many_windows_were_ranked(data):
    from lvm.evaluation.heldout import HeldOutSet
    from lvm.evaluation.suite import score_predictors

    vectors, position, starts, targets, R = data
    held = HeldOutSet(vectors, targets, np.arange(len(vectors)), starts, starts, C)
    small, _ = score_predictors({"rot": lambda w: w.ctx[:, -1] @ R.T}, held, n_boot=50, order_tests=False)
    big, _ = score_predictors({"rot": lambda w: w.ctx[:, -1] @ R.T}, held, n_boot=50, order_tests=False,
                              retrieval_windows=100)
    assert small["rot"]["retrieval_windows"] == len(targets) and big["rot"]["retrieval_windows"] == 100
    assert small["rot"]["cosine"] == big["rot"]["cosine"]

"""The training engine: learning, early stopping, best weights, files, precision, reproducibility, kill+resume."""

import json
import pickle
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import sigkill_when, tiny_options
from safetensors.torch import load_file
from typer.testing import CliRunner

from lvm.evaluation.compare import evaluate_model
from lvm.evaluation.metrics import per_example_cosine
from lvm.evaluation.predictors import predict
from lvm.models import MODEL_NAMES
from lvm.models.io import load_model
from lvm.train.checkpoint import CHECKPOINT_DIR, CHECKPOINT_JSON, read_checkpoint_info
from lvm.train.config import TrainConfig
from lvm.train.on_table import train_on_table
from lvm.train.trainer import _mean_cosine, fit
from lvm.util.hardware import bf16_supported

TESTS = Path(__file__).resolve().parent
TIMING = ("seconds", "train_seconds", "samples_per_s")
TINY = {a: tiny_options(a, layers=1, heads=2) for a in MODEL_NAMES}


def tiny(arch="lstm", **over) -> TrainConfig:
    # the engine's tests read the context only; the article input has its own tests (below, test_article_input.py)
    base = {"arch": arch, "epochs": 6, "batch_size": 32, "lr": 3e-3, "model": TINY[arch], "threads": 1,
            "patience": None, "article": False}
    return TrainConfig(**{**base, **over})


@pytest.fixture(scope="module")
def data(train_windows):
    return train_windows


def strip_timing(history):
    return [{k: v for k, v in h.items() if k not in TIMING} for h in history]


def weights(folder):
    return load_file(Path(folder) / "model.safetensors")


def assert_same_weights(a, b):
    wa, wb = weights(a), weights(b)
    assert wa.keys() == wb.keys()
    for k in wa:
        assert torch.equal(wa[k], wb[k]), k


# ---------------------------------------------------------------------------------------------------- config

def test_config_round_trip_and_validation():
    cfg = TrainConfig(arch="gru", batch_size=64, model={"hidden": 8}, loss={"cosine": 1.0, "mse": 0.5}, threads=1)
    assert TrainConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    assert TrainConfig.from_dict({"arch": "lstm", "model": None, "loss": None}).model == {}
    with pytest.raises(ValueError, match="unknown TrainConfig fields"):
        TrainConfig.from_dict({"arch": "lstm", "bach_size": 3})
    for bad in ({"arch": "rnn"}, {"epochs": 0}, {"lr": -1.0}, {"precision": "fp16"}, {"schedule": "step"},
                {"batch_size": 2.5}, {"device": "tpu"}):
        with pytest.raises(ValueError):
            TrainConfig(**bad)


# ---------------------------------------------------------------------------------------------------- fit

def test_fit_learns_writes_folder_and_keeps_best(data, tmp_path):
    path, table, tr, va = data
    seen = []
    summary = fit(tiny(epochs=8), table.vectors, tr, va, tmp_path / "m", callback=seen.append,
                  meta={"data_hash": "abc", "encoder": "synthetic"})
    hist = json.loads((tmp_path / "m" / "history.json").read_text())
    assert [h["epoch"] for h in hist] == list(range(1, 9)) == [r["epoch"] for r in seen]
    assert {"epoch", "train_loss", "train_cosine", "val_cosine", "lr", "seconds", "terms"} <= set(hist[0])
    vals = [h["val_cosine"] for h in hist]
    # it learns: the training loss falls, and validation ends above the context mean, where a residual model starts
    assert hist[-1]["train_loss"] < 0.8 * hist[0]["train_loss"], [h["train_loss"] for h in hist]
    ctx_mean = per_example_cosine(table.vectors[va[:, None] + np.arange(-5, 0)].mean(1), table.vectors[va]).mean()
    assert max(vals) > ctx_mean + 0.005, (vals, ctx_mean)
    best = int(np.argmax(vals)) + 1
    assert summary["best_epoch"] == best and summary["best_val_cosine"] == vals[best - 1]
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    assert config["arch"] == "lstm" and config["dim"] == 16 and config["context"] == 5
    from lvm.train.losses import CompositeLoss

    assert config["train"]["batch_size"] == 32  # the loss recorded is the default preset, in full
    assert config["loss"] == CompositeLoss.from_config("default").config()
    assert config["data_hash"] == "abc" and config["encoder"] == "synthetic" and config["seed"] == 0
    metrics = json.loads((tmp_path / "m" / "metrics.json").read_text())
    assert metrics["val_cosine"] == vals[best - 1]
    # the saved weights are the best epoch's: recomputing val cosine gives exactly the recorded best
    model, _ = load_model(tmp_path / "m")
    V, offs = torch.from_numpy(table.vectors), torch.arange(-5, 0)
    again = _mean_cosine(model, V, None, torch.from_numpy(va), offs, torch.device("cpu"), summary["precision"], 4096)
    assert again == summary["best_val_cosine"]
    ck = read_checkpoint_info(tmp_path / "m")
    assert ck["epoch"] == 8 and ck["finished"] and ck["best_epoch"] == best
    out = predict(model, table.vectors[tr[:7, None] + np.arange(-5, 0)])
    assert out.shape == (7, 16) and np.allclose(np.linalg.norm(out, axis=1), 1, atol=1e-5)


def test_early_stopping_keeps_first_epoch(data, tmp_path):
    path, table, tr, va = data
    # min_delta=1 makes every epoch after the first "no improvement"; constant lr so epoch 1 is schedule-free
    cfg = tiny(epochs=10, patience=2, min_delta=1.0, schedule="plateau", warmup_frac=0.0, plateau_patience=5)
    s = fit(cfg, table.vectors, tr, va, tmp_path / "stop")
    assert s["stopped_early"] and s["epochs_run"] == 3 and s["best_epoch"] == 1
    s1 = fit(TrainConfig(**{**cfg.to_dict(), "epochs": 1}), table.vectors, tr, va, tmp_path / "one")
    assert not s1["stopped_early"] and s1["epochs_run"] == 1
    assert_same_weights(tmp_path / "stop", tmp_path / "one")


@pytest.mark.parametrize("arch", ["gru", "mamba2", "transformer"])
def test_every_architecture_trains(data, tmp_path, arch):
    path, table, tr, va = data
    s = fit(tiny(arch, epochs=2, model={**TINY[arch], "dropout": 0.1}), table.vectors, tr, va, tmp_path / arch)
    assert s["epochs_run"] == 2 and np.isfinite(s["best_val_cosine"])


def test_bf16_and_fp32(data, tmp_path):
    path, table, tr, va = data
    s32 = fit(tiny(epochs=2, precision="fp32"), table.vectors, tr, va, tmp_path / "fp32")
    assert s32["precision"] == "fp32"
    if bf16_supported("cpu"):
        s16 = fit(tiny(epochs=2, precision="bf16"), table.vectors, tr, va, tmp_path / "bf16")
        assert s16["precision"] == "bf16"
        assert abs(s16["best_val_cosine"] - s32["best_val_cosine"]) < 0.1
        assert s16["best_val_cosine"] != s32["best_val_cosine"]  # it really ran in another precision
    else:
        with pytest.warns(UserWarning, match="bf16"):
            s16 = fit(tiny(epochs=2, precision="bf16"), table.vectors, tr, va, tmp_path / "bf16")
        assert s16["precision"] == "fp32"


def test_bf16_falls_back_to_fp32_where_unsupported(data, tmp_path, monkeypatch):
    """The fallback path runs on every CPU: pretend bf16 is missing, ask for it, get an fp32 run and a warning."""
    import lvm.util.hardware as hardware

    monkeypatch.setattr(hardware, "_BF16_CPU", False)
    path, table, tr, va = data
    with pytest.warns(UserWarning, match="bf16 autocast is not supported"):
        s = fit(tiny(epochs=1, precision="bf16"), table.vectors, tr, va, tmp_path / "fallback")
    assert s["precision"] == "fp32" and np.isfinite(s["best_val_cosine"])


def test_seeded_runs_are_reproducible(data, tmp_path):
    path, table, tr, va = data
    cfg = tiny(epochs=3, model={"hidden": 32, "layers": 2, "dropout": 0.2})
    a = fit(cfg, table.vectors, tr, va, tmp_path / "a")
    b = fit(cfg, table.vectors, tr, va, tmp_path / "b")
    c = fit(TrainConfig(**{**cfg.to_dict(), "seed": 1}), table.vectors, tr, va, tmp_path / "c")
    assert a["best_val_cosine"] == b["best_val_cosine"] != c["best_val_cosine"]
    assert_same_weights(tmp_path / "a", tmp_path / "b")
    ha, hb = (json.loads((tmp_path / d / "history.json").read_text()) for d in "ab")
    assert strip_timing(ha) == strip_timing(hb)


def crash_when_committing(monkeypatch, epoch: int):
    """Make the checkpoint commit (checkpoint.json) of `epoch` raise; returns the real writer, to put back."""
    import lvm.train.checkpoint as train_mod

    real = train_mod.write_json

    def crash(p, payload):
        if Path(p).name == CHECKPOINT_JSON and payload["epoch"] == epoch:
            raise RuntimeError("simulated crash")
        return real(p, payload)

    monkeypatch.setattr(train_mod, "write_json", crash)
    return real


def test_article_input_runs_are_reproducible_and_resume_exactly(data, tmp_path, monkeypatch):
    """The article rows are one more function of the data: same seed, same weights; a resume after a crash ends
    where an uninterrupted run does; another article structure (positions) is another data set."""
    import lvm.train.checkpoint as train_mod

    path, table, tr, va = data
    cfg = tiny(epochs=3, article=True)
    a = fit(cfg, table.vectors, tr, va, tmp_path / "a", position=table.position)
    b = fit(cfg, table.vectors, tr, va, tmp_path / "b", position=table.position)
    assert a["best_val_cosine"] == b["best_val_cosine"]
    assert_same_weights(tmp_path / "a", tmp_path / "b")
    real = crash_when_committing(monkeypatch, 2)
    with pytest.raises(RuntimeError, match="simulated crash"):
        fit(cfg, table.vectors, tr, va, tmp_path / "crash", position=table.position)
    monkeypatch.setattr(train_mod, "write_json", real)
    resumed = fit(cfg, table.vectors, tr, va, tmp_path / "crash", resume=True, position=table.position)
    assert resumed["resumed_from"] == [1]
    assert_same_weights(tmp_path / "crash", tmp_path / "a")
    # the same vectors with the first two articles read as one: the checkpoint is not reused
    merged = np.asarray(table.position).copy()
    first, second, third = np.flatnonzero(merged == 0)[:3]
    merged[second:third] += second - first
    crash_when_committing(monkeypatch, 2)
    with pytest.raises(RuntimeError):
        fit(cfg, table.vectors, tr, va, tmp_path / "other", position=table.position)
    monkeypatch.setattr(train_mod, "write_json", real)
    with pytest.warns(UserWarning, match="another config or data set"):
        fit(cfg, table.vectors, tr, va, tmp_path / "other", resume=True, position=merged)


# ---------------------------------------------------------------------------------------------------- resume

def test_resume_after_sigkill_is_exact(data, tmp_path):
    path, table, tr, va = data
    cfg = tiny(epochs=6, model={"hidden": 32, "layers": 2, "dropout": 0.2}, schedule="cosine", patience=4)
    killed = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, str(TESTS / "_train_child.py"), str(path), str(killed),
                             json.dumps(cfg.to_dict()), "0.5"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    ckpt = killed / CHECKPOINT_DIR / CHECKPOINT_JSON
    sigkill_when(proc, ckpt, lambda state: state["epoch"] >= 2)
    assert proc.returncode == -signal.SIGKILL
    at_kill = read_checkpoint_info(killed)["epoch"]
    assert 2 <= at_kill < 6 and not (killed / "model.safetensors").exists()

    resumed = fit(cfg, table.vectors, tr, va, killed, resume=True)
    whole = fit(cfg, table.vectors, tr, va, tmp_path / "whole")
    assert resumed["resumed_from"] == [at_kill] and whole["resumed_from"] == []
    for key in ("best_val_cosine", "best_epoch", "epochs_run", "stopped_early"):
        assert resumed[key] == whole[key], key
    assert_same_weights(killed, tmp_path / "whole")
    hk, hw = (json.loads((d / "history.json").read_text()) for d in (killed, tmp_path / "whole"))
    assert strip_timing(hk) == strip_timing(hw)
    mk, mw = (json.loads((d / "metrics.json").read_text()) for d in (killed, tmp_path / "whole"))
    assert mk["val_cosine"] == mw["val_cosine"]
    # the last checkpoint (weights + optimizer) is bit-identical too
    sk, sw = (torch.load(d / CHECKPOINT_DIR / "state-000006.pt", weights_only=True)
              for d in (killed, tmp_path / "whole"))
    for k in sw["model"]:
        assert torch.equal(sk["model"][k], sw["model"][k])
    for i, st in sw["optimizer"]["state"].items():
        for name, t in st.items():
            assert torch.equal(sk["optimizer"]["state"][i][name], t)


def test_crash_between_state_file_and_commit(data, tmp_path, monkeypatch):
    """A crash after epoch 3's state file is written but before checkpoint.json names it: resume uses epoch 2."""
    import lvm.train.checkpoint as train_mod

    path, table, tr, va = data
    cfg = tiny(epochs=4)
    real = crash_when_committing(monkeypatch, 3)
    with pytest.raises(RuntimeError, match="simulated crash"):
        fit(cfg, table.vectors, tr, va, tmp_path / "crash")
    monkeypatch.setattr(train_mod, "write_json", real)
    assert read_checkpoint_info(tmp_path / "crash")["epoch"] == 2
    # written, never committed: a failure that Python sees removes it (a SIGKILL leaves it to the next run's clean-up)
    assert not (tmp_path / "crash" / CHECKPOINT_DIR / "state-000003.pt").exists()
    resumed = fit(cfg, table.vectors, tr, va, tmp_path / "crash", resume=True)
    whole = fit(cfg, table.vectors, tr, va, tmp_path / "whole")
    assert resumed["resumed_from"] == [2] and resumed["best_val_cosine"] == whole["best_val_cosine"]
    assert_same_weights(tmp_path / "crash", tmp_path / "whole")
    assert sorted(f.name for f in (tmp_path / "crash" / CHECKPOINT_DIR).iterdir()) == sorted(
        f.name for f in (tmp_path / "whole" / CHECKPOINT_DIR).iterdir())


def test_resume_of_another_config_starts_afresh(data, tmp_path):
    path, table, tr, va = data
    fit(tiny(epochs=2), table.vectors, tr, va, tmp_path / "m")
    with pytest.warns(UserWarning, match="another config"):
        s = fit(tiny(epochs=2, lr=1e-3), table.vectors, tr, va, tmp_path / "m", resume=True)
    assert s["resumed_from"] == [] and s["epochs_run"] == 2


def test_no_load_path_unpickles(data, tmp_path, monkeypatch):
    from lvm.data.dataset import save_split, split_articles

    path, table, tr, va = data
    cfg = tiny(epochs=2)
    fixture_split = save_split(split_articles(table, (0.8, 0.1, 0.1), 0, method="permutation"), tmp_path / "s.json")
    train_on_table(path, cfg, tmp_path / "m", split_path=fixture_split)  # the split `tr` and `va` come from
    calls = []
    real_load = torch.load

    def checked_load(*args, **kwargs):
        calls.append(kwargs.get("weights_only"))
        assert kwargs.get("weights_only") is True, "torch.load without weights_only=True"
        return real_load(*args, **kwargs)

    def forbidden(*args, **kwargs):
        raise AssertionError("arbitrary unpickling on a load path")

    monkeypatch.setattr(torch, "load", checked_load)
    for name in ("load", "loads", "Unpickler"):
        monkeypatch.setattr(pickle, name, forbidden)
    # resume from the finished checkpoint, then every reader of the folder
    recorded = json.loads((tmp_path / "m" / "config.json").read_text())
    meta = {k: recorded[k] for k in ("data_hash", "encoder", "split", "dataset")}  # what lvm evaluate checks
    s = fit(cfg, table.vectors, tr, va, tmp_path / "m", resume=True, meta=meta)
    assert s["resumed_from"] == [2] and calls == [True]
    load_model(tmp_path / "m")
    evaluate_model(tmp_path / "m", path)


# ---------------------------------------------------------------------------------------------------- tables

def test_train_on_table_and_evaluate_model(data, tmp_path):
    path, table, tr, va = data
    epochs = []
    s = train_on_table(path, tiny(epochs=3), tmp_path / "m", callback=lambda r: epochs.append(r["epoch"]))
    assert epochs == [1, 2, 3] and s["part"] == "test" and s["model_dir"] == str(tmp_path / "m")
    json.dumps(s)
    m = json.loads((tmp_path / "m" / "metrics.json").read_text())
    assert m["cosine"] == s["cosine"] and {"hit@1", "hit@5", "mrr", "direction_margin", "n"} <= set(m)
    assert set(m["held_out"]) == {"val", "test"}
    # the four context baselines and the two that know the article (the forward-prediction issue: in every table)
    assert set(m["held_out"]["test"]["baselines"]) == {"global_mean", "last_context", "context_mean", "ridge",
                                                      "article_mean", "article_blend"}
    assert m["split"]["seed"] == 0 and m["split"]["by_article"] and len(m["data_hash"]) == 64
    assert m["encoder"] == "synthetic" and m["best_baseline"]["name"] in m["held_out"]["test"]["baselines"]
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    assert config["data_hash"] == m["data_hash"] and config["split"] == m["split"]
    ev = evaluate_model(tmp_path / "m", path)
    assert ev["same_data"] and ev["same_split"] and ev["part"] == "test"
    assert ev["model"]["cosine"] == pytest.approx(m["cosine"], abs=1e-6)
    assert ev["baselines"]["ridge"]["cosine"] == pytest.approx(m["held_out"]["test"]["baselines"]["ridge"]["cosine"])
    ev_val = evaluate_model(tmp_path / "m", path, part="val")
    assert ev_val["model"]["cosine"] == pytest.approx(m["held_out"]["val"]["model"]["cosine"], abs=1e-6)
    # the paired difference to the best baseline, with its interval over the held-out articles
    paired = ev["vs_best_baseline"]
    assert paired["baseline"] == ev["best_baseline"]["name"]
    lstm = paired["models"]["lstm"]
    assert lstm["diff"] == pytest.approx(ev["margin_over_best_baseline"], abs=1e-6)
    assert lstm["ci95"][0] <= lstm["diff"] <= lstm["ci95"][1] and lstm["n"] == ev["n"]
    from lvm.evaluation.compare import markdown_table
    text = markdown_table({"models": {"lstm": ev["model"]}, "baselines": ev["baselines"], "vs_best_baseline": paired})
    line = next(x for x in text.splitlines() if x.startswith("cosine minus"))  # the forward detail follows it
    assert f"cosine minus {paired['baseline']} (the best baseline)" in line and "lstm " in line


def test_train_on_table_without_baselines(data, tmp_path):
    path, table, tr, va = data
    s = train_on_table(path, tiny(epochs=1), tmp_path / "m", baselines=False)
    m = json.loads((tmp_path / "m" / "metrics.json").read_text())
    assert s["best_baseline"] is None and "baselines" not in m["held_out"]["test"] and "cosine" in m


def test_hard_negatives_are_the_targets_article_neighbours(data, tmp_path, monkeypatch):
    """With the retrieval preset the engine hands the loss, for each target row t, rows t+1..t+k and t-C-k..t-C-1
    (never the context t-C..t-1), masked where they would fall outside the table."""
    from lvm.train.losses import CompositeLoss

    _, table, tr, va = data
    seen = []
    real = CompositeLoss.forward

    def spy(self, pred, target, negatives=None, negative_mask=None):
        seen.append((target.detach().clone(), negatives, negative_mask))
        return real(self, pred, target, negatives, negative_mask)

    monkeypatch.setattr(CompositeLoss, "forward", spy)
    fit(tiny(epochs=1, loss="retrieval"), table.vectors, tr, va, tmp_path / "m")
    V = torch.from_numpy(np.asarray(table.vectors))
    k, C = 4, 5
    want = torch.cat([torch.arange(1, k + 1), torch.arange(-C - k, -C)])
    for target, negatives, mask in seen:
        assert negatives.shape == (len(target), 2 * k, V.shape[1])
        rows = ((V[None] == target[:, None]).all(-1)).float().argmax(1)       # row index of each target
        nrows = rows[:, None] + want
        inside = (nrows >= 0) & (nrows < len(V))
        assert torch.equal(mask, inside)
        torch.testing.assert_close(negatives[mask], V[nrows[mask]])
    assert seen


def test_auto_threads_share_the_cores_among_running_fits(data, tmp_path, monkeypatch):
    """threads="auto": the cores are divided among the fits running in this process, re-balanced each epoch, and
    the caller's thread count is restored afterwards."""
    from lvm.train import trainer
    from lvm.util import hardware

    counter = hardware.RunningFits()
    monkeypatch.setattr(hardware.os, "cpu_count", lambda: 4)
    assert counter.share() == 4
    counter.enter(), counter.enter()
    assert counter.share() == 2
    counter.enter(), counter.enter(), counter.enter()
    assert counter.share() == 1          # never 0, even with more fits than cores
    for _ in range(4):
        counter.leave()
    assert counter.share() == 4          # the last one left running gets every core

    with pytest.raises(ValueError, match="threads"):
        tiny(threads="some")
    seen = []
    monkeypatch.setattr(trainer, "running_fits", counter)
    monkeypatch.setattr(hardware.os, "cpu_count", lambda: 2)
    counter.enter()                      # another training is running: this one gets 2 // 2 = 1 thread
    before = torch.get_num_threads()
    fit(tiny(epochs=2, threads="auto"), data[1].vectors, data[2], data[3], tmp_path / "m",
        callback=lambda r: seen.append(torch.get_num_threads()))
    assert seen == [1, 1] and torch.get_num_threads() == before
    counter.leave()
    assert counter.share() == 2


# ---------------------------------------------------------------------------------------------------- fine-tuning

def test_init_starts_from_a_trained_folder_and_records_it(data, tmp_path):
    """Fine-tuning (TrainConfig.init): the run starts from the folder's weights, so its validation cosine before
    the first epoch is the folder's best, not an untrained model's; the sizes come from the folder."""
    path, table, tr, va = data
    base = fit(tiny(epochs=4), table.vectors, tr, va, tmp_path / "base")
    cold = fit(tiny(epochs=1), table.vectors, tr, va, tmp_path / "cold")
    warm = fit(tiny(epochs=1, model={}, init=str(tmp_path / "base")), table.vectors, tr, va, tmp_path / "warm")
    assert warm["initial_val_cosine"] == pytest.approx(base["best_val_cosine"], abs=1e-5)
    assert cold["initial_val_cosine"] < base["best_val_cosine"] - 1e-3  # an untrained start is further down
    config = json.loads((tmp_path / "warm" / "config.json").read_text())
    assert config["train"]["init"] == str(tmp_path / "base") and config["model"]["hidden"] == 32


@pytest.mark.parametrize("change, says", [({"arch": "gru", "model": TINY["gru"]}, "arch 'lstm'"),
                                          ({"context": 3}, "context 5"),
                                          ({"model": {"hidden": 16, "layers": 1}}, "model")])
def test_init_from_a_model_that_does_not_fit_names_the_folder_and_the_mismatch(data, tmp_path, change, says):
    path, table, tr, va = data
    fit(tiny(epochs=1), table.vectors, tr, va, tmp_path / "base")
    with pytest.raises(ValueError, match=f"--init {tmp_path / 'base'}.*{says}"):
        fit(tiny(epochs=1, init=str(tmp_path / "base"), **change), table.vectors, tr, va, tmp_path / "m")
    assert not (tmp_path / "m" / "model.safetensors").exists()


def test_lvm_train_init_fine_tunes_from_a_folder(data, tmp_path):
    path, *_ = data
    from lvm.cli import app

    base = tmp_path / "base"
    fit(tiny(arch="gru", epochs=2, article=True), data[1].vectors, data[2], data[3], base, position=data[1].position)
    res = CliRunner().invoke(app, ["train", "--data", str(path), "--epochs", "1", "--init", str(base),
                                   "--out", str(tmp_path / "m")])
    assert res.exit_code == 0, res.output
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    assert config["arch"] == "gru" and config["train"]["init"] == str(base)


def test_a_training_that_ends_worse_than_it_started_says_so(data, tmp_path):
    """--lr 1e9 trained silently to val cosine 0.004: no NaN, just a ruined model (#28)."""
    path, table, tr, va = data
    base = fit(tiny(epochs=4), table.vectors, tr, va, tmp_path / "base")
    with pytest.warns(UserWarning, match="training made the model worse.*learning rate"):
        fit(tiny(epochs=2, lr=50.0, init=str(tmp_path / "base"), precision="fp32"), table.vectors, tr, va,
            tmp_path / "m")
    assert base["best_val_cosine"] > 0


def test_a_batch_as_large_as_the_training_set_says_every_epoch_is_one_step(data, tmp_path):
    path, table, tr, va = data
    with pytest.warns(UserWarning, match="every epoch is one optimizer step"):
        fit(tiny(epochs=1, batch_size=len(tr)), table.vectors, tr, va, tmp_path / "m")

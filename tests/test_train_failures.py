"""Training and model folders under faults and bad input: a failed or killed run keeps the model it would replace,
two runs cannot share a folder, a tampered config cannot make a loader allocate without bound, a dead writer's
leftovers are cleaned, and the CLI answers every such case with one error line (exit 2 for a mistake, 1 for a
failed run)."""

import errno
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import sigkill_when
from safetensors.torch import load_file
from typer.testing import CliRunner

from lvm.cli import app
from lvm.models import MODEL_NAMES, build_model
from lvm.models.io import CONFIG, MODEL_FILES, WEIGHTS, load_model, save_model
from lvm.train.checkpoint import CHECKPOINT_DIR, CHECKPOINT_JSON
from lvm.train.config import TrainConfig
from lvm.train.trainer import ModelFolderBusy, fit

TESTS = Path(__file__).resolve().parent
runner = CliRunner()
MODEL_TINY = {"lstm": {"hidden": 32, "layers": 1}, "gru": {"hidden": 32, "layers": 1},
              "mamba2": {"hidden": 32, "layers": 1, "headdim": 16, "d_state": 8},
              "transformer": {"hidden": 32, "layers": 1, "heads": 2, "ffn": 64}}


def tiny(**over) -> TrainConfig:
    base = {"arch": "lstm", "epochs": 2, "batch_size": 32, "lr": 3e-3, "model": {"hidden": 32, "layers": 1},
            "threads": 1, "patience": None, "article": False}  # the engine alone: tests/test_article_input.py
    return TrainConfig(**{**base, **over})


@pytest.fixture(scope="module")
def data(train_windows):
    return train_windows


@pytest.fixture()
def good_model(data, tmp_path):
    """A finished model folder and a snapshot of its files' bytes."""
    path, table, tr, va = data
    out = tmp_path / "keep"
    fit(tiny(), table.vectors, tr, va, out)
    return out, {name: (out / name).read_bytes() for name in MODEL_FILES}


def assert_unchanged(folder: Path, snapshot: dict) -> None:
    for name, content in snapshot.items():
        assert (folder / name).is_file(), f"{name} was deleted"
        assert (folder / name).read_bytes() == content, f"{name} was changed"
    load_model(folder)  # and it still loads


# ---------------------------------------------------------------------------------------------------- item 3

def test_failed_fresh_run_keeps_the_model_it_would_replace(data, good_model):
    path, table, tr, va = data
    out, snapshot = good_model
    with pytest.raises(FloatingPointError, match="loss became"):
        fit(tiny(lr=1e9, epochs=3), table.vectors, tr, va, out)
    assert_unchanged(out, snapshot)


def test_cli_failed_fresh_run_keeps_the_model(data, good_model):
    path, *_ = data
    out, snapshot = good_model
    res = runner.invoke(app, ["train", "--data", str(path), "--epochs", "3", "--lr", "1e9", "--out", str(out),
                              "--arch", "lstm", "--precision", "fp32"])
    assert res.exit_code == 1 and "error:" in res.output and "loss became" in res.output
    assert "Traceback" not in res.output
    assert_unchanged(out, snapshot)


def test_sigkilled_fresh_run_keeps_the_model(data, good_model):
    path, table, tr, va = data
    out, snapshot = good_model
    cfg = tiny(epochs=6, seed=3)
    proc = subprocess.Popen([sys.executable, str(TESTS / "_train_child.py"), str(path), str(out),
                             json.dumps(cfg.to_dict()), "0.5", "fresh"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    ckpt = out / CHECKPOINT_DIR / CHECKPOINT_JSON
    sigkill_when(proc, ckpt, lambda state: state["config"]["seed"] == 3)  # the new run's first checkpoint
    assert_unchanged(out, snapshot)
    # the interrupted run resumes from its own checkpoint, and only then replaces the model
    s = fit(cfg, table.vectors, tr, va, out, resume=True)
    assert s["resumed_from"] and load_file(out / WEIGHTS).keys() == load_file_bytes(snapshot[WEIGHTS]).keys()
    assert (out / WEIGHTS).read_bytes() != snapshot[WEIGHTS]


def load_file_bytes(content: bytes) -> dict:
    from safetensors.torch import load

    return load(content)


# ---------------------------------------------------------------------------------------------------- item 5

def test_second_run_into_a_busy_folder_is_refused_with_the_holder(data, tmp_path):
    path, table, tr, va = data
    out = tmp_path / "busy"
    proc = subprocess.Popen([sys.executable, str(TESTS / "_train_child.py"), str(path), str(out),
                             json.dumps(tiny(epochs=6).to_dict()), "1.0"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    try:
        deadline = time.time() + 120
        while not (out / CHECKPOINT_DIR / CHECKPOINT_JSON).is_file():
            assert time.time() < deadline and proc.poll() is None, proc.communicate()
            time.sleep(0.02)
        with pytest.raises(ModelFolderBusy, match=f"pid {proc.pid}"):
            fit(tiny(), table.vectors, tr, va, out)
        res = runner.invoke(app, ["train", "--data", str(path), "--epochs", "1", "--out", str(out)])
        assert res.exit_code == 2 and "error:" in res.output and str(out) in res.output
        assert f"pid {proc.pid}" in res.output
    finally:
        proc.kill()
        proc.communicate()
    # the holder died: its lock is gone with it, and a new run may take the folder
    s = fit(tiny(epochs=1), table.vectors, tr, va, out)
    assert s["epochs_run"] == 1


# ---------------------------------------------------------------------------------------------------- item 6

@pytest.mark.parametrize("key,value", [("dim", 10_000_000), ("hidden", 1_000_000)])
def test_tampered_config_is_refused_before_building(tmp_path, key, value, monkeypatch):
    model = build_model("lstm", 16, hidden=32, layers=1)
    save_model(tmp_path / "m", model, {"seed": 0})
    cfg = json.loads((tmp_path / "m" / CONFIG).read_text())
    if key == "dim":
        cfg["dim"] = value
    else:
        cfg["model"]["hidden"] = value
    (tmp_path / "m" / CONFIG).write_text(json.dumps(cfg))
    allocated = []
    real_empty = torch.empty

    def spy(*a, **k):  # nothing big is allocated on the way to the refusal
        t = real_empty(*a, **k)
        if t.device.type != "meta":
            allocated.append(t.numel())
        return t

    monkeypatch.setattr(torch, "empty", spy)
    with pytest.raises(ValueError, match="does not match|must be a whole number from 1 to 65,536"):
        load_model(tmp_path / "m")
    assert sum(allocated) < 10_000_000


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_every_architecture_checks_shapes_without_allocating(tmp_path, name):
    model = build_model(name, 16, residual=True, **MODEL_TINY[name])
    save_model(tmp_path / name, model, {"seed": 0})
    loaded, _ = load_model(tmp_path / name)
    ctx = torch.randn(2, 5, 16)
    with torch.no_grad():
        assert torch.equal(model.eval()(ctx), loaded(ctx))


# ---------------------------------------------------------------------------------------------------- item 13

def test_disk_full_during_a_checkpoint_leaves_no_orphan(data, tmp_path, monkeypatch):
    import lvm.train.checkpoint as train_mod

    path, table, tr, va = data
    out = tmp_path / "full"
    real = train_mod.write_json
    calls = {"n": 0}

    def full_on_second_checkpoint(p, d):
        if Path(p).name == CHECKPOINT_JSON:
            calls["n"] += 1
            if calls["n"] == 2:
                raise OSError(errno.ENOSPC, "No space left on device", str(p))
        return real(p, d)

    monkeypatch.setattr(train_mod, "write_json", full_on_second_checkpoint)
    with pytest.raises(OSError, match="No space"):
        fit(tiny(epochs=3), table.vectors, tr, va, out)
    ck = out / CHECKPOINT_DIR
    referenced = json.loads((ck / CHECKPOINT_JSON).read_text())
    left = sorted(f.name for f in ck.iterdir())
    assert left == sorted({CHECKPOINT_JSON, referenced["state_file"], referenced["best_file"]}), left


def test_leftovers_of_a_dead_writer_are_cleaned(data, tmp_path):
    path, table, tr, va = data
    out = tmp_path / "dead"
    fit(tiny(epochs=1), table.vectors, tr, va, out)
    ck = out / CHECKPOINT_DIR
    (ck / "state-000009.pt").write_bytes(b"x" * 1000)
    (ck / ".state-000010.pt.abc.tmp").write_bytes(b"x")
    (out / ".model.safetensors.abc.tmp").write_bytes(b"x")
    fit(tiny(epochs=2), table.vectors, tr, va, out, resume=True)
    assert not (ck / "state-000009.pt").exists() and not (ck / ".state-000010.pt.abc.tmp").exists()
    assert not (out / ".model.safetensors.abc.tmp").exists()


# ---------------------------------------------------------------------------------------------------- item 9

def test_corrupt_checkpoint_files_name_the_file(data, tmp_path):
    path, table, tr, va = data
    out = tmp_path / "corrupt"
    fit(tiny(epochs=1), table.vectors, tr, va, out)
    ck = out / CHECKPOINT_DIR
    state = json.loads((ck / CHECKPOINT_JSON).read_text())
    (ck / state["state_file"]).write_bytes(b"not a torch file")
    res = runner.invoke(app, ["train", "--data", str(path), "--epochs", "2", "--out", str(out), "--resume",
                              "--arch", "lstm"])
    assert res.exit_code == 2 and "error:" in res.output and state["state_file"] in res.output, res.output
    (ck / CHECKPOINT_JSON).write_text("{not json")
    res = runner.invoke(app, ["train", "--data", str(path), "--epochs", "2", "--out", str(out), "--resume"])
    assert res.exit_code == 2 and "error:" in res.output and CHECKPOINT_JSON in res.output, res.output
    assert "Traceback" not in res.output


def test_corrupt_best_weights_name_the_file(data, tmp_path):
    path, table, tr, va = data
    out = tmp_path / "corrupt_best"
    fit(tiny(epochs=1), table.vectors, tr, va, out)
    state = json.loads((out / CHECKPOINT_DIR / CHECKPOINT_JSON).read_text())
    (out / CHECKPOINT_DIR / state["best_file"]).write_bytes(b"\x00" * 20)
    with pytest.raises(ValueError, match=state["best_file"]):
        fit(tiny(epochs=2), table.vectors, tr, va, out, resume=True)


@pytest.mark.parametrize("loss,words", [('{"cosine": ', "--loss is not valid JSON"),
                                        ('{"nope": 1}', "nope"), ("no-such-preset", "no-such-preset")])
def test_bad_loss_option_is_one_clear_error(data, tmp_path, loss, words):
    path, *_ = data
    res = runner.invoke(app, ["train", "--data", str(path), "--epochs", "1", "--loss", loss,
                              "--out", str(tmp_path / "m")])
    assert res.exit_code == 2 and "error:" in res.output and words in res.output, res.output
    assert "Traceback" not in res.output


def test_corrupt_model_weights_name_the_file(tmp_path, data):
    path, *_ = data
    model = build_model("lstm", 16, hidden=32, layers=1)
    save_model(tmp_path / "m", model, {"seed": 0})
    (tmp_path / "m" / WEIGHTS).write_bytes(b"garbage")
    res = runner.invoke(app, ["evaluate", "--model", str(tmp_path / "m"), "--data", str(path)])
    assert res.exit_code == 2 and "error:" in res.output and WEIGHTS in res.output, res.output


# ---------------------------------------------------------------------------------------------------- item 15

def test_model_and_checkpoint_files_get_the_umask_mode(data, tmp_path):
    """One rule for every file the engine writes: the usual 0666 & ~umask (model files are not secrets and are
    read by servers that may run as another user); no file is left 0600 by mkstemp."""
    path, table, tr, va = data
    out = tmp_path / "modes"
    old = os.umask(0o022)
    try:
        fit(tiny(epochs=1), table.vectors, tr, va, out)
    finally:
        os.umask(old)
    files = [f for f in out.rglob("*") if f.is_file() and not f.name.startswith(".")]
    assert {f.name for f in files} >= {*MODEL_FILES, CHECKPOINT_JSON}
    modes = {f.relative_to(out).as_posix(): oct(f.stat().st_mode & 0o777) for f in files}
    assert set(modes.values()) == {oct(0o644)}, modes



@pytest.mark.parametrize("key, name", [("state_file", "/etc/passwd"), ("state_file", "../../outside.pt"),
                                       ("best_file", "/etc/hostname"), ("state_file", 7)])
def test_checkpoint_file_names_never_point_outside_the_checkpoint_folder(data, tmp_path, monkeypatch, key, name):
    """checkpoint.json is data: a state_file or best_file that is not a plain name inside the folder is refused,
    naming the key, before anything is opened (#28 item 11)."""
    import builtins

    path, table, tr, va = data
    out = tmp_path / "hostile"
    fit(tiny(epochs=1), table.vectors, tr, va, out)
    ck = out / CHECKPOINT_DIR
    state = json.loads((ck / CHECKPOINT_JSON).read_text())
    state[key] = name
    (ck / CHECKPOINT_JSON).write_text(json.dumps(state))
    opened = []
    real_open = builtins.open
    monkeypatch.setattr(builtins, "open", lambda f, *a, **k: opened.append(str(f)) or real_open(f, *a, **k))
    with pytest.raises(ValueError, match=key):
        fit(tiny(epochs=2), table.vectors, tr, va, out, resume=True)
    assert not [f for f in opened if f.startswith("/etc")]


def test_a_full_disk_during_training_is_named_as_such(data, tmp_path, monkeypatch):
    """torch.save reports a full disk as "[enforce fail at inline_container.cc] unexpected pos": the error names
    the file and says the disk is full, and the model already there is kept (#28 item 6)."""
    import shutil
    from collections import namedtuple

    path, table, tr, va = data
    out = tmp_path / "full"
    fit(tiny(epochs=1), table.vectors, tr, va, out)
    kept = (out / "model.safetensors").read_bytes()

    def failing_save(*a, **k):
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 4741120 vs 4741008")

    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(torch, "save", failing_save)
    monkeypatch.setattr(shutil, "disk_usage", lambda p: usage(10**9, 10**9, 0))
    res = runner.invoke(app, ["train", "--data", str(path), "--epochs", "2", "--out", str(out),
                              "--arch", "lstm"])
    assert res.exit_code != 0 and "error:" in res.output and "disk is full" in res.output, res.output
    assert "inline_container" not in res.output and "Traceback" not in res.output
    assert (out / "model.safetensors").read_bytes() == kept

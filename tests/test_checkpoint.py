"""Model folders: round trip, atomic files, clear errors for missing or corrupt files."""

import json

import pytest
import torch
from conftest import tiny_options

from lvm.models import MODEL_NAMES, build_model
from lvm.models.io import CONFIG, WEIGHTS, load_model, save_model

torch.set_num_threads(1)

TINY = {a: tiny_options(a) for a in MODEL_NAMES}


def _config(name, dim=16, context=5, residual=False):
    return {"arch": name, "dim": dim, "context": context, "residual": residual, "model": dict(TINY[name]),
            "train": {"epochs": 1}, "loss": {"cosine": 1.0}, "data_hash": "abc", "encoder": "test", "seed": 0}


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_round_trip_identical_outputs(tmp_path, name):
    torch.manual_seed(0)
    model = build_model(name, 16, residual=True, **TINY[name]).eval()
    save_model(tmp_path / "m", model, _config(name, residual=True))
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == [CONFIG, WEIGHTS]  # no temp files left
    loaded, config = load_model(tmp_path / "m")
    assert config["arch"] == name and config["train"] == {"epochs": 1} and config["residual"] is True
    assert not loaded.training
    ctx = torch.randn(3, 5, 16)
    with torch.no_grad():
        assert torch.equal(model(ctx), loaded(ctx))


def test_missing_config_keys_filled_from_model(tmp_path):
    model = build_model("gru", 16, context=3, **TINY["gru"])
    save_model(tmp_path, model, {"seed": 1})
    config = json.loads((tmp_path / CONFIG).read_text())
    assert config["arch"] == "gru" and config["dim"] == 16 and config["context"] == 3
    assert config["model"]["hidden"] == 32 and config["model"]["dropout"] == 0.0  # full kwargs written
    load_model(tmp_path)


def test_config_contradicting_model_refused_before_writing(tmp_path):
    model = build_model("gru", 16, **TINY["gru"])
    with pytest.raises(ValueError, match="arch"):
        save_model(tmp_path / "m", model, {**_config("gru"), "arch": "lstm"})
    with pytest.raises(ValueError, match="hidden"):
        save_model(tmp_path / "m", model, {**_config("gru"), "model": {"hidden": 64}})
    assert not (tmp_path / "m").exists()


def test_missing_folder_and_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        load_model(tmp_path / "nowhere")
    save_model(tmp_path / "a", build_model("lstm", 16, **TINY["lstm"]), _config("lstm"))
    (tmp_path / "a" / WEIGHTS).unlink()
    with pytest.raises(FileNotFoundError, match=f"{tmp_path / 'a'}.*{WEIGHTS}"):
        load_model(tmp_path / "a")
    save_model(tmp_path / "b", build_model("lstm", 16, **TINY["lstm"]), _config("lstm"))
    (tmp_path / "b" / CONFIG).unlink()
    with pytest.raises(FileNotFoundError, match=CONFIG):
        load_model(tmp_path / "b")


def test_corrupt_files(tmp_path):
    folder = tmp_path / "m"
    save_model(folder, build_model("lstm", 16, **TINY["lstm"]), _config("lstm"))
    good = (folder / WEIGHTS).read_bytes()
    (folder / WEIGHTS).write_bytes(good[: len(good) // 2])
    with pytest.raises(ValueError, match=f"{folder}.*cannot read"):
        load_model(folder)
    (folder / WEIGHTS).write_bytes(good)
    (folder / CONFIG).write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        load_model(folder)
    (folder / CONFIG).write_text(json.dumps({"arch": "lstm", "dim": 16}))
    with pytest.raises(ValueError, match="lacks"):
        load_model(folder)
    (folder / CONFIG).write_text(json.dumps({**_config("lstm"), "arch": "rnn"}))
    with pytest.raises(ValueError, match="valid names"):
        load_model(folder)


def test_weights_not_matching_config(tmp_path):
    folder = tmp_path / "m"
    save_model(folder, build_model("lstm", 16, **TINY["lstm"]), _config("lstm"))
    config = json.loads((folder / CONFIG).read_text())
    config["model"]["hidden"] = 64  # weights were saved for hidden=32
    (folder / CONFIG).write_text(json.dumps(config))
    with pytest.raises(ValueError, match=f"{folder}.*does not match.*shape"):
        load_model(folder)
    config["arch"], config["model"] = "gru", dict(TINY["gru"])
    (folder / CONFIG).write_text(json.dumps(config))
    with pytest.raises(ValueError, match="missing"):
        load_model(folder)


def test_nothing_is_unpickled(tmp_path):
    save_model(tmp_path, build_model("lstm", 16, **TINY["lstm"]), _config("lstm"))
    assert (tmp_path / WEIGHTS).read_bytes()[8:9] == b"{"  # safetensors: u64 header length, then JSON

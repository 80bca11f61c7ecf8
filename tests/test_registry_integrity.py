"""The registry's integrity: non-finite weights refused, tampered JSON named, killed writers cleaned up,
history capped."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.numpy import save_file
from safetensors.torch import save_file as save_torch
from test_registry import fake_model_dir, reg_kwargs
from typer.testing import CliRunner

import lvm.store.registry as registry_module
from lvm.cli import app
from lvm.store.registry import Registry, RegistryError

ROOT = Path(__file__).resolve().parents[1]
runner = CliRunner()


@pytest.fixture
def reg(tmp_path):
    reg = Registry(tmp_path / "reg")
    reg.register(fake_model_dir(tmp_path / "good"), alias="production", **reg_kwargs())
    return reg


# ------------------------------------------------------------------------------------------- weights
@pytest.mark.parametrize("kind", ["nan-f32", "inf-bf16", "nan-f16", "garbage"])
def test_register_refuses_unloadable_or_nonfinite_weights(tmp_path, reg, kind):
    bad = fake_model_dir(tmp_path / "bad")
    weights = bad / "model.safetensors"
    if kind == "nan-f32":
        w = np.ones((4, 4), dtype=np.float32)
        w[2, 3] = np.nan
        save_file({"ok": np.zeros(3, dtype=np.float32), "lstm.weight": w}, str(weights))
    elif kind == "inf-bf16":
        w = torch.ones(5, dtype=torch.bfloat16)
        w[0] = float("inf")
        save_torch({"head.bias": w, "steps": torch.arange(3)}, str(weights))
    elif kind == "nan-f16":
        save_file({"w": np.array([1, np.nan, np.nan], dtype=np.float16)}, str(weights))
    else:
        weights.write_bytes(b"not a safetensors file at all")
    with pytest.raises(RegistryError) as info:
        reg.register(bad, alias="production", **reg_kwargs())
    msg = str(info.value)
    assert str(weights) in msg
    if kind == "garbage":
        assert "not a safetensors file" in msg
    else:
        assert "non-finite weights" in msg and {"nan-f32": "lstm.weight (1 of 16)", "inf-bf16": "head.bias (1 of 5)",
                                                 "nan-f16": "w (2 of 3)"}[kind] in msg
    assert [d["version"] for d in reg.list()] == [1] and reg.resolve("production") == 1  # nothing stored


def test_register_accepts_finite_bf16_and_integer_tensors(tmp_path, reg):
    ok = fake_model_dir(tmp_path / "ok")
    save_torch({"w": torch.randn(3, 3).to(torch.bfloat16), "n": torch.tensor([2**31 - 1, -1]),
                "d": torch.tensor([1e300], dtype=torch.float64)}, str(ok / "model.safetensors"))
    assert reg.register(ok, **reg_kwargs()) == 2


# ------------------------------------------------------------------------------------------- tampered JSON
TAMPERED_ALIASES = [
    ("invalid JSON", '{"aliases": {"production": 1', "is not valid JSON"),
    ("a list", "[1, 2]", "must hold a JSON object, got list"),
    ("aliases a list", '{"aliases": [1]}', "'aliases' must be an object"),
    ("alias a string", '{"aliases": {"production": "one"}}', "alias 'production' must point to a version"),
    ("alias a bool", '{"aliases": {"production": true}}', "alias 'production' must point to a version"),
    ("history not lists", '{"aliases": {"production": 1}, "history": {"production": 3}}',
     "history of alias 'production' must be a list"),
    ("history of strings", '{"aliases": {"production": 1}, "history": {"production": ["v1"]}}',
     "history of alias 'production' must be a list"),
    ("log not a list", '{"aliases": {"production": 1}, "log": {}}', "'log' must be a list"),
]


@pytest.mark.parametrize("name,text,message", TAMPERED_ALIASES, ids=[t[0] for t in TAMPERED_ALIASES])
def test_tampered_aliases_json_is_a_named_registry_error(reg, name, text, message):
    os.replace(reg.aliases_path, reg.aliases_path.with_name("saved.json"))
    reg.aliases_path.write_text(text)
    for call in (reg.aliases, lambda: reg.resolve("production"), reg.list, lambda: reg.show(1),
                 lambda: reg.promote(1), reg.rollback):
        with pytest.raises(RegistryError, match="aliases.json") as info:
            call()
        assert message in str(info.value), (name, str(info.value))
    for args in (["registry", "ls"], ["registry", "show", "production"], ["registry", "promote", "1"],
                 ["registry", "rollback"]):
        res = runner.invoke(app, [*args, "--root", str(reg.root)])
        assert res.exit_code == 2 and "error:" in res.output, (args, res.output)
        assert str(reg.aliases_path) in res.output and "Traceback" not in res.output
    assert reg.aliases_path.read_text() == text  # a refused write leaves the file for a person to fix


TAMPERED_VERSION = [
    ("invalid JSON", '{"version": 1,', "is not valid JSON"),
    ("a string", '"v1"', "must hold a JSON object, got str"),
    ("dim a string", '{"version": 1, "dim": "sixteen", "context": 5}', "'dim' must be a positive integer"),
    ("context negative", '{"version": 1, "dim": 16, "context": -5}', "'context' must be a positive integer"),
    ("metrics a list", '{"version": 1, "dim": 16, "context": 5, "metrics": [1]}', "'metrics' must be an object"),
]


@pytest.mark.parametrize("name,text,message", TAMPERED_VERSION, ids=[t[0] for t in TAMPERED_VERSION])
def test_tampered_version_json_is_a_named_registry_error(reg, name, text, message):
    path = reg.get(1) / "version.json"
    os.chmod(path, 0o644)
    path.write_text(text)
    for call in (reg.list, lambda: reg.show("production"), lambda: registry_module.read_version_info(path.parent)):
        with pytest.raises(RegistryError, match="version.json") as info:
            call()
        assert message in str(info.value) and str(path) in str(info.value), (name, str(info.value))
    for args in (["registry", "ls"], ["registry", "show", "v1"]):
        res = runner.invoke(app, [*args, "--root", str(reg.root)])
        assert res.exit_code == 2 and "error:" in res.output and str(path) in res.output, (args, res.output)
        assert "Traceback" not in res.output


# ------------------------------------------------------------------------------------------- killed writers
def test_tmp_files_of_a_killed_writer_are_removed_by_the_next_mutation(tmp_path, reg):
    """A writer SIGKILLed between writing .aliases.json.<uuid>.tmp and the rename leaves the file behind."""
    v2 = reg.register(fake_model_dir(tmp_path / "two"), **reg_kwargs())
    ready = tmp_path / "ready"
    script = textwrap.dedent(f"""
        import os, pathlib, time
        import lvm.store.registry as r
        def stuck(src, dst):  # the process is killed here: the tmp file is written, not yet renamed
            pathlib.Path({str(ready)!r}).touch()
            time.sleep(60)
        r.os.replace = stuck
        r.Registry({str(reg.root)!r}).promote({v2})
    """)
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    for _ in range(3):
        ready.unlink(missing_ok=True)
        proc = subprocess.Popen([sys.executable, "-c", script], env=env)
        try:
            for _ in range(600):
                if ready.exists() or proc.poll() is not None:
                    break
                time.sleep(0.05)
            assert ready.exists(), "the writer never reached the rename"
        finally:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
    # one of our own, with an old-style name, just in case
    (reg.root / f".aliases.json.{uuid.uuid4().hex}.tmp").write_text("{}")
    orphans = sorted(reg.root.glob(".aliases.json.*.tmp"))
    assert len(orphans) == 2  # each killed writer removed the ones before it: only the last one and ours are left
    assert reg.resolve("production") == 1  # the killed promotions never happened
    reg.promote(v2)
    assert not list(reg.root.glob(".aliases.json.*.tmp"))
    assert reg.resolve("production") == v2 and reg.rollback() == 1


# ------------------------------------------------------------------------------------------- history cap
def test_alias_history_is_capped_and_rollback_still_works(tmp_path, reg, monkeypatch):
    assert 10 <= registry_module.HISTORY_LIMIT <= 10_000  # a named constant, a sensible size
    monkeypatch.setattr(registry_module, "HISTORY_LIMIT", 6)
    v2 = reg.register(fake_model_dir(tmp_path / "two"), **reg_kwargs())
    v3 = reg.register(fake_model_dir(tmp_path / "three"), **reg_kwargs())
    sequence = [v2, v3, 1] * 7  # 21 promotions
    for v in sequence:
        reg.promote(v)
    data = json.loads(reg.aliases_path.read_text())
    history = data["history"]["production"]
    assert len(history) == 6
    assert history == ([1] + sequence)[-7:-1]  # the most recent previous versions, oldest first
    for expected in reversed(history):
        assert reg.rollback() == expected
    with pytest.raises(RegistryError, match="no previous version"):
        reg.rollback()
    assert len(data["log"]) <= registry_module.LOG_LIMIT


@pytest.mark.parametrize("field, value", [("context", 1_000_000_000), ("dim", 0), ("context", "5"),
                                          ("model.hidden", 10**9)])
def test_a_config_with_an_absurd_size_is_refused_before_anything_is_built(tmp_path, field, value):
    """A registered model whose config.json names an absurd size is refused naming the field, before the server
    or the evaluation builds anything from it (#28 item 4)."""
    import json

    from lvm.models import build_model
    from lvm.models.io import load_model, save_model

    folder = tmp_path / "m"
    save_model(folder, build_model("lstm", 8, context=3, hidden=8, layers=1),
               {"arch": "lstm", "dim": 8, "context": 3, "residual": False, "model": {"hidden": 8, "layers": 1}})
    cfg = json.loads((folder / "config.json").read_text())
    if field.startswith("model."):
        cfg["model"][field[6:]] = value
    else:
        cfg[field] = value
    (folder / "config.json").chmod(0o644)
    (folder / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match=rf"config\.json: {field} must be a whole number"):
        load_model(folder)


def test_absurd_sizes_on_the_command_line_are_one_error_line(tmp_path):
    from typer.testing import CliRunner

    from lvm.cli import app

    runner = CliRunner()
    res = runner.invoke(app, ["models", "--dim", "99999999"])
    assert res.exit_code == 2 and "error:" in res.output and "dim must be a whole number" in res.output, res.output
    res = runner.invoke(app, ["build-dataset", "--corpus", "builtin", "--encoder", "hash:99999999999",
                              "--out", str(tmp_path / "t.parquet")])
    assert res.exit_code == 2 and "error:" in res.output and "at most 65,536" in res.output, res.output
    assert "Traceback" not in res.output

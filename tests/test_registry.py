"""lvm.store.registry: versions, aliases, atomicity, rollback, concurrency (threads and processes), crash safety."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save_file

from lvm.store.registry import Registry, RegistryError, UnknownAliasError, UnknownVersionError

ROOT = Path(__file__).resolve().parents[1]


def fake_model_dir(path: Path, *, arch="lstm", dim=16, context=5, cosine=0.5, history=True) -> Path:
    """A model folder as lvm.train writes it; the registry only checks that the weights parse and are finite."""
    path.mkdir(parents=True, exist_ok=True)
    save_file({"w": np.random.default_rng(0).normal(size=(8, 8)).astype(np.float32)}, str(path / "model.safetensors"))
    (path / "config.json").write_text(json.dumps({"arch": arch, "dim": dim, "context": context, "model": {}}))
    (path / "metrics.json").write_text(json.dumps({"cosine": cosine}))
    if history:
        (path / "history.json").write_text(json.dumps([{"epoch": 1, "val_cosine": cosine}]))
    (path / "checkpoint").mkdir(exist_ok=True)  # resume state: not copied into the registry
    return path


def reg_kwargs(**extra):
    return {"data_hash": "abc123", "encoder": "hash:16", "encoder_dim": 16, **extra}


@pytest.fixture
def model_dir(tmp_path):
    return fake_model_dir(tmp_path / "model")


def test_register_copies_files_and_writes_version_json(tmp_path, model_dir):
    reg = Registry(tmp_path / "reg")
    v = reg.register(model_dir, flow_run_id="run-1", **reg_kwargs())
    assert v == 1
    path = reg.get(1)
    assert path == tmp_path / "reg" / "versions" / "v1"
    assert sorted(p.name for p in path.iterdir()) == [
        "README.md", "config.json", "history.json", "metrics.json", "model.safetensors", "version.json"]
    assert (path / "model.safetensors").read_bytes() == (model_dir / "model.safetensors").read_bytes()
    info = json.loads((path / "version.json").read_text())
    assert info["version"] == 1 and info["arch"] == "lstm" and info["dim"] == 16 and info["context"] == 5
    assert info["metrics"] == {"cosine": 0.5}
    assert info["data_hash"] == "abc123" and info["encoder"] == "hash:16" and info["encoder_dim"] == 16
    assert info["flow_run_id"] == "run-1"
    assert info["created_at"].endswith("+00:00")
    # immutable: files are read-only
    for f in path.iterdir():
        assert not f.stat().st_mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH), f
    # numbering increments; explicit metrics override metrics.json; history.json is optional
    other = fake_model_dir(tmp_path / "m2", arch="gru", history=False)
    assert reg.register(other, metrics={"cosine": 0.9}, **reg_kwargs()) == 2
    assert reg.show("v2")["metrics"] == {"cosine": 0.9}
    assert not (reg.get(2) / "history.json").exists()
    listed = reg.list()
    assert [d["version"] for d in listed] == [1, 2] and [d["arch"] for d in listed] == ["lstm", "gru"]
    assert reg.show(2)["config"]["arch"] == "gru"


def test_promote_get_rollback(tmp_path, model_dir):
    reg = Registry(tmp_path / "reg")
    v1 = reg.register(model_dir, alias="production", **reg_kwargs())
    v2 = reg.register(model_dir, alias="candidate", **reg_kwargs())
    reg.register(model_dir, **reg_kwargs())
    assert reg.aliases() == {"production": v1, "candidate": v2}
    assert reg.get("production") == reg.get(v1) and reg.get("candidate") == reg.get("v2")
    assert {d["version"]: d["aliases"] for d in reg.list()} == {1: ["production"], 2: ["candidate"], 3: []}

    assert reg.promote(v2) == 2
    assert reg.promote("v3", alias="production") == 3
    assert reg.promote(3) == 3  # promoting the current version again is a no-op, not a history entry
    assert reg.alias_history("production") == [1, 2]
    assert reg.show("production")["aliases"] == ["production"]

    assert reg.rollback() == 2
    assert reg.resolve("production") == 2
    assert reg.rollback("production") == 1
    with pytest.raises(RegistryError, match="no previous version"):
        reg.rollback()
    assert reg.resolve("production") == 1
    log = json.loads(reg.aliases_path.read_text())["log"]
    assert [e["action"] for e in log][-2:] == ["rollback", "rollback"]


def test_clear_errors(tmp_path, model_dir):
    reg = Registry(tmp_path / "reg")
    with pytest.raises(UnknownAliasError, match="'production' is not set"):
        reg.get("production")
    reg.register(model_dir, **reg_kwargs())
    with pytest.raises(UnknownVersionError, match=r"unknown version v7 .*versions: v1"):
        reg.get(7)
    with pytest.raises(UnknownVersionError, match="unknown version v9"):
        reg.promote("v9")
    with pytest.raises(UnknownVersionError, match="not a version"):
        reg.promote("latest-ish!")
    with pytest.raises(UnknownAliasError, match="invalid alias"):
        reg.promote(1, alias="v2")
    with pytest.raises(UnknownAliasError, match="nothing to roll back"):
        reg.rollback("candidate")
    with pytest.raises(RegistryError, match="does not exist"):
        reg.register(tmp_path / "nope", **reg_kwargs())
    (tmp_path / "empty").mkdir()
    with pytest.raises(RegistryError, match="lacks model.safetensors, config.json"):
        reg.register(tmp_path / "empty", **reg_kwargs())
    assert [d["version"] for d in reg.list()] == [1]


def test_crash_between_version_and_alias_keeps_production(tmp_path, model_dir, monkeypatch):
    reg = Registry(tmp_path / "reg")
    reg.register(model_dir, alias="production", **reg_kwargs())
    before = reg.aliases_path.read_bytes()

    def crash(data):
        raise RuntimeError("power cut")

    monkeypatch.setattr(reg, "_write_aliases", crash)
    with pytest.raises(RuntimeError, match="power cut"):
        reg.register(model_dir, alias="production", **reg_kwargs())
    with pytest.raises(RuntimeError, match="power cut"):
        reg.promote(2)
    monkeypatch.undo()
    assert reg.aliases_path.read_bytes() == before
    assert reg.resolve("production") == 1
    assert [d["version"] for d in reg.list()] == [1, 2]  # the version itself is complete, just not promoted
    assert reg.promote(2) == 2 and reg.rollback() == 1


def test_crash_while_replacing_aliases_file_leaves_old_file(tmp_path, model_dir, monkeypatch):
    reg = Registry(tmp_path / "reg")
    reg.register(model_dir, alias="production", **reg_kwargs())
    reg.register(model_dir, **reg_kwargs())
    before = reg.aliases_path.read_bytes()

    def failing_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(OSError, match="disk full"):
        reg.promote(2)
    monkeypatch.undo()
    assert reg.aliases_path.read_bytes() == before
    assert sorted(p.name for p in reg.root.iterdir()) == [".lock", "aliases.json", "versions"]  # no tmp file left


def test_crash_while_copying_leaves_no_version(tmp_path, model_dir, monkeypatch):
    import shutil

    reg = Registry(tmp_path / "reg")
    reg.register(model_dir, alias="production", **reg_kwargs())
    real_copy = shutil.copyfile
    calls = []

    def flaky_copy(src, dst, *a, **k):
        calls.append(src)
        if len(calls) == 2:
            raise OSError("I/O error")
        return real_copy(src, dst, *a, **k)

    monkeypatch.setattr(shutil, "copyfile", flaky_copy)
    with pytest.raises(OSError, match="I/O error"):
        reg.register(model_dir, alias="production", **reg_kwargs())
    monkeypatch.undo()
    assert sorted(p.name for p in reg.versions_dir.iterdir()) == ["v1"]
    assert reg.resolve("production") == 1


def test_leftover_tmp_dir_is_ignored_and_cleaned(tmp_path, model_dir):
    reg = Registry(tmp_path / "reg")
    reg.register(model_dir, alias="production", **reg_kwargs())
    # what a process killed in the middle of register() leaves behind
    leftover = reg.versions_dir / ".tmp-v2-deadbeef"
    leftover.mkdir()
    (leftover / "model.safetensors").write_bytes(b"partial")
    assert [d["version"] for d in reg.list()] == [1]
    with pytest.raises(UnknownVersionError):
        reg.get(2)
    assert reg.resolve("production") == 1
    assert reg.register(model_dir, **reg_kwargs()) == 2
    assert not leftover.exists()
    assert json.loads((reg.get(2) / "version.json").read_text())["version"] == 2


def _check_consistent(reg: Registry, promoted: set[int]) -> None:
    data = json.loads(reg.aliases_path.read_text())  # parses: never half-written
    current = data["aliases"]["production"]
    history = data["history"]["production"]
    assert len(history) == len(promoted) - 1, (history, promoted)
    assert set(history) | {current} == promoted
    assert [d["version"] for d in reg.list()] == sorted(promoted)
    assert not [p for p in reg.root.iterdir() if p.name.endswith(".tmp")]


def test_concurrent_threads(tmp_path, model_dir):
    reg_root = tmp_path / "reg"
    errors, versions = [], []

    def worker():
        try:
            reg = Registry(reg_root)  # one object per thread, like separate tasks would have
            for _ in range(4):
                v = reg.register(model_dir, **reg_kwargs())
                versions.append(v)
                reg.promote(v)
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert sorted(versions) == list(range(1, 25))
    _check_consistent(Registry(reg_root), set(versions))


def test_concurrent_processes(tmp_path, model_dir):
    reg_root, go = tmp_path / "reg", tmp_path / "go"
    script = textwrap.dedent(f"""
        import os, time
        from lvm.store.registry import Registry
        reg = Registry({str(reg_root)!r})
        while not os.path.exists({str(go)!r}):  # start both loops together
            time.sleep(0.005)
        for _ in range(10):
            v = reg.register({str(model_dir)!r}, data_hash="h", encoder="e", encoder_dim=16)
            reg.promote(v)
            print(v, flush=True)
    """)
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    procs = [subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, env=env) for _ in range(2)]
    time.sleep(0.5)
    go.touch()
    outputs = [p.communicate(timeout=60) for p in procs]
    for p, (out, err) in zip(procs, outputs):
        assert p.returncode == 0, err
    versions = [int(x) for out, _ in outputs for x in out.split()]
    assert sorted(versions) == list(range(1, 21))
    _check_consistent(Registry(reg_root), set(versions))


def test_default_root_follows_lvm_data_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("LVM_DATA_DIR", str(tmp_path / "elsewhere"))
    assert Registry().root == tmp_path / "elsewhere" / "registry"


def test_lineage_and_articles_are_kept_per_version_and_shown_by_the_cli(tmp_path, model_dir):
    """Every version says where it came from (version.json "lineage", printed by `lvm registry show`) and which
    articles it saw per part (articles.json, read-only like the rest); a version registered without has neither."""
    from typer.testing import CliRunner

    from lvm.cli import app

    reg = Registry(tmp_path / "reg")
    lineage = {"data_hash": "abc123", "split": {"method": "hash", "seed": 0}, "articles_added": ["Bush9"],
               "code_version": "c0de", "flow_run_id": "run-7"}
    v = reg.register(model_dir, alias="production", lineage=lineage, articles={"train": ["b", "a"], "test": ["c"]},
                     **reg_kwargs())
    assert reg.show(v)["lineage"] == lineage
    assert reg.articles("production") == {"train": ["a", "b"], "test": ["c"]}
    assert not (reg.get(v) / "articles.json").stat().st_mode & stat.S_IWUSR
    assert reg.articles(reg.register(model_dir, **reg_kwargs())) is None and reg.show(2)["lineage"] == {}
    with pytest.raises(RegistryError, match="lineage must be a dict"):
        reg.register(model_dir, lineage=["x"], **reg_kwargs())
    out = CliRunner().invoke(app, ["registry", "show", "production", "--root", str(reg.root)])
    assert out.exit_code == 0, out.output
    assert "lineage of v1:" in out.output and "  flow_run_id: run-7" in out.output
    assert '  articles_added: ["Bush9"]' in out.output


def test_every_registered_version_has_a_model_card(tmp_path, model_dir):
    """#27 item 8: README.md in the version folder: data, encoder, metrics, intended use; read-only like the rest."""
    reg = Registry(tmp_path / "reg")
    v = reg.register(model_dir, lineage={"data_path": "/data/t.parquet", "articles": 12,
                                         "split": {"method": "hash", "seed": 0, "fractions": [0.8, 0.1, 0.1]},
                                         "gates": {"forward_margin": {"value": 0.01, "threshold": 0.0,
                                                                      "passed": True}}},
                     metrics={"cosine": 0.4567}, **reg_kwargs())
    card = (reg.get(v) / "README.md").read_text()
    assert card.startswith(f"# Model v{v}: ") and "Intended use" in card and "| cosine | 0.4567 |" in card
    assert "/data/t.parquet" in card and "hash, seed 0" in card and "| forward_margin | 0.0100 | 0.0 | yes |" in card
    assert not (reg.get(v) / "README.md").stat().st_mode & stat.S_IWUSR

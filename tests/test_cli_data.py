"""The data commands of the `lvm` CLI: help everywhere, article counts on real corpora, clear errors."""

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from lvm.cli import app

runner = CliRunner()


@pytest.mark.parametrize("cmd", ["build-dataset", "inspect", "import-npz", "export-npz"])
def test_help(cmd):
    res = runner.invoke(app, [cmd, "--help"])
    assert res.exit_code == 0 and "Usage" in res.output


@pytest.mark.parametrize("rel,articles", [("wikitext2/wiki.valid.raw", 60), ("sotu", 77)])
def test_build_and_inspect_real_corpora(tmp_path, corpus_dir, rel, articles):
    out = tmp_path / "d.parquet"
    res = runner.invoke(app, ["build-dataset", "--corpus", str(corpus_dir / rel), "--encoder", "hash:32",
                              "--out", str(out), "--no-cache"])
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["inspect", str(out), "--json"])
    stats = json.loads(res.output)
    assert stats["articles"] == articles and stats["dim"] == 32
    assert sum(stats["articles_per_split"].values()) == articles
    text = runner.invoke(app, ["inspect", str(out)]).output
    assert "mean_vector_norm" in text and "windows" in text


def test_bad_inputs_exit_2_and_write_nothing(tmp_path):
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"\xff\xfe not utf8. Really not.")
    out = tmp_path / "o.parquet"
    res = runner.invoke(app, ["build-dataset", "--corpus", str(bad), "--encoder", "hash:8", "--out", str(out)])
    assert res.exit_code == 2 and "not valid UTF-8" in res.output and not out.exists()
    np.savez(tmp_path / "k.npz", context_sequences=np.ones((2, 3, 4), np.float32))
    res = runner.invoke(app, ["import-npz", str(tmp_path / "k.npz"), "--out", str(out)])
    assert res.exit_code == 2 and "required_keys" in res.output and not out.exists()

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


def test_cli_conventions_version_short_help_choices_and_json_on_every_reading_command(tmp_path):
    """#27 item 5: -h and --version; a fixed-value option is a choice refused by the parser (exit 2, before torch);
    `--no-cache` is one flag; `--json` prints parseable JSON to stdout on the reading commands."""
    from lvm.store.registry import Registry

    assert runner.invoke(app, ["-h"]).exit_code == 0 and "build-dataset" in runner.invoke(app, ["-h"]).output
    res = runner.invoke(app, ["--version"])
    assert res.exit_code == 0 and res.output.startswith("lvm-pipeline")
    for args, says in ((["evaluate", "--model", "m", "--data", "d", "--part", "testt"], "testt"),
                       (["build-dataset", "--backend", "gpu"], "gpu"), (["train", "--data", "d", "--device", "tpu"],
                                                                         "tpu"),
                       (["serve", "--dtype", "float16"], "float16")):
        res = runner.invoke(app, args)
        assert res.exit_code == 2 and says in res.output and "not one of" in res.output, (args, res.output)
    assert "--no-no-cache" not in runner.invoke(app, ["build-dataset", "-h"]).output
    reg = Registry(tmp_path / "reg")
    for args in (["registry", "ls", "--json"], ["registry", "ls"]):
        res = runner.invoke(app, [*args, "--root", str(reg.root)])
        assert res.exit_code == 0
    assert json.loads(runner.invoke(app, ["registry", "ls", "--json", "--root", str(reg.root)]).output) == []

"""The investigate branch's diagnosis (lvm.diagnosis), on purpose-built runs: each failure is produced, then named.

Runs are tiny (D=16..32, a few hundred windows) and trained with lvm.train, so the file stays well under a minute
on two cores. The "learnable" data follow a quadratic map (next = W(D v*v - 1)/sqrt(D) + W v/2 + noise): a
network can learn it, while the linear baselines (ridge, last/mean of context) cannot, so beating every baseline
is possible. (On the smooth-drift data of conftest.make_table the last context vector IS the optimal prediction,
so no model can beat that baseline there.)
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from conftest import make_table, quadratic_table

from lvm.data.dataset import file_hash, save_split, split_articles, write_table
from lvm.data.table import SentenceTable
from lvm.diagnosis.evidence import diagnose, history_summary
from lvm.diagnosis.render import markdown_with_images, to_markdown, write_report
from lvm.diagnosis.rules import COLLAPSE_SPREAD_RATIO, MEMORISATION_GAP, Diagnosis
from lvm.models import build_model
from lvm.models.io import load_model, save_model
from lvm.store.runs import write_run
from lvm.train.config import TrainConfig
from lvm.train.on_table import train_on_table


def make_run(root: Path, table: SentenceTable, configs: dict, fractions=(0.8, 0.1, 0.1), model_dirs=None) -> Path:
    """A training run folder as the train flow writes it: data, split, trained model folders, run.json."""
    root.mkdir(parents=True, exist_ok=True)
    data = write_table(table, root / "data.parquet")
    split_path = save_split(split_articles(table, fractions, seed=0), root / "split.json")
    models = dict(model_dirs or {})
    for arch, cfg in configs.items():
        out = root / "models" / arch
        train_on_table(data, cfg, out, split_path=split_path)
        models[arch] = str(out)
    write_run(root, {"run_name": root.name, "flow_run_id": "test", "data_path": str(data),
                     "data_sha256": file_hash(data), "encoder": table.meta["encoder"], "split_path": str(split_path),
                     "context": 5, "models": models, "failed": {}, "baseline_threshold": 0.48,
                     "deploy_threshold": 0.55}, decision={"branch": "investigate", "reason": "built by a test"})
    return root


def cfg(**kw) -> TrainConfig:
    base = dict(precision="fp32", threads=1, device="cpu", seed=0, warmup_frac=0.0)
    return TrainConfig(**{**base, **kw})


@pytest.fixture(scope="module")
def memorised_run(tmp_path_factory):
    """The seed's failure in miniature: pure InfoNCE, ~160 training pairs, a transformer with ~300k parameters,
    60 epochs, no early stopping."""
    table = quadratic_table(12, dim=32, seed=2)
    c = cfg(arch="transformer", epochs=60, lr=1e-3, batch_size=32, loss="infonce", patience=None,
            weight_decay=0.0, model={"hidden": 128, "layers": 2, "heads": 4, "ffn": 256})
    return make_run(tmp_path_factory.mktemp("runs") / "memorised", table, {"transformer": c}, (0.6, 0.2, 0.2))


@pytest.fixture(scope="module")
def healthy_run(tmp_path_factory):
    table = quadratic_table(200, dim=16, seed=0)  # ~4,000 training windows
    c = cfg(arch="lstm", epochs=15, lr=3e-3, batch_size=64, loss="cosine", residual=True, patience=None,
            model={"hidden": 64, "layers": 1})
    return make_run(tmp_path_factory.mktemp("runs") / "healthy", table, {"lstm": c})


def _findings(d: Diagnosis, kind: str):
    return [f for f in d.findings if f.kind == kind]


def test_pure_infonce_on_few_pairs_is_diagnosed_as_memorisation(memorised_run):
    d = diagnose(memorised_run)
    assert d.verdict == "memorisation", d.summary
    top = d.findings[0]
    assert top.kind == "memorisation" and top.model == "transformer"
    m = d.models["transformer"]
    assert m.gap >= MEMORISATION_GAP and top.evidence["gap"] == m.gap
    assert m.train_cosine > m.val_cosine + MEMORISATION_GAP
    assert top.evidence["loss"] == "1·infonce" and top.evidence["train_windows"] < 400
    # the first thing to try is the loss the original project switched to
    assert "cosine or MSE" in top.recommendations[0]
    md = to_markdown(d)
    assert "MEMORISATION" in md and f"{m.gap:.3f}" in md and "small_data" in md and "built by a test" in md
    hist = json.loads((Path(m.model_dir) / "history.json").read_text())
    assert len(hist) == 60 and m.history["epochs"] == 60


def test_learnable_data_with_cosine_loss_is_healthy(healthy_run):
    d = diagnose(healthy_run)
    assert d.verdict == "healthy", d.summary + "\n" + "\n".join(f.title for f in d.findings)
    m = d.models["lstm"]
    assert all(m.test_cosine > b["cosine"] for b in d.baselines.values())
    assert abs(m.gap) < MEMORISATION_GAP
    assert m.spread["spread_ratio"] > 0.5
    assert d.findings[0].kind == "healthy" and d.findings[0].evidence["gain_over_best_baseline"] > 0
    assert not any(f.problem for f in d.findings)
    fwd = next(f for f in d.findings if f.kind == "forward" and f.model == "lstm")
    assert fwd.evidence["forward_margin"] > 0 and fwd.evidence["shuffle_drop"] > 0
    assert set(d.forward) >= {"lstm", "context_mean (baseline)", "article_blend (baseline)"}
    md = to_markdown(d, images="none")
    assert "Does it predict forward?" in md and "shuffled drop" in md


def test_a_context_mean_model_is_named_order_blind_and_backward_biased_with_numbers(tmp_path):
    """A model that returns the mean of its context is a bag of sentences by construction: the report names it,
    with the shuffle cost (0) and the forward margin."""
    from lvm.diagnosis.rules import forward_findings

    table = make_table(n_articles=30, length=14)
    from lvm.evaluation.metrics import article_starts
    from lvm.evaluation.suite import forward_suite

    starts = article_starts(table.position)
    t = np.flatnonzero(table.position >= 3)
    s = forward_suite(lambda w: w.ctx.mean(1), table.vectors, t, np.arange(len(table)), 3, starts, n_boot=200)
    m = SimpleNamespace(test_cosine=0.5)
    kinds = {f.kind: f for f in forward_findings({"mean": s}, {"mean": m}, "mean")}
    assert "order_blind" in kinds and "+0.0000" in kinds["order_blind"].title.replace("-0.0000", "+0.0000")
    assert kinds["order_blind"].evidence["shuffle_drop"] == pytest.approx(0.0, abs=1e-6)


def test_model_predicting_one_vector_is_diagnosed_as_collapse(healthy_run, tmp_path):
    """The healthy model with its output weights scaled down 1000x and a unit bias: every prediction ~ the bias."""
    run = json.loads((healthy_run / "run.json").read_text())
    src = Path(run["models"]["lstm"])
    model, config = load_model(src)
    with torch.no_grad():
        model.head.out.weight.mul_(1e-3)
        bias = torch.randn(16, generator=torch.Generator().manual_seed(0))
        model.head.out.bias.copy_(torch.nn.functional.normalize(bias, dim=0))
    model.residual = False  # otherwise the context mean would still vary with the input
    config["residual"] = False
    if model.article:  # a model that is not residual has no blend weight
        del model.blend_logit
    dst = tmp_path / "collapsed-lstm"
    save_model(dst, model, config)
    shutil.copy(src / "history.json", dst / "history.json")
    write_run(tmp_path / "collapsed", {**run, "run_name": "collapsed", "models": {"lstm": str(dst)}})
    d = diagnose(tmp_path / "collapsed")
    assert d.verdict == "collapse", d.summary
    f = d.findings[0]
    assert f.kind == "collapse" and f.evidence["spread_ratio"] < COLLAPSE_SPREAD_RATIO
    assert f.evidence["pred_pairwise_cosine"] > 0.9 > f.evidence["target_pairwise_cosine"]
    assert any("variance" in r for r in f.recommendations)


def test_model_returning_its_context_mean_is_diagnosed_as_copying(tmp_path):
    """residual=True with a zeroed head predicts exactly the context mean: no gain over that baseline."""
    table = make_table(n_articles=20, length=15, dim=16)
    root = make_run(tmp_path / "copying", table, {})
    model = build_model("gru", 16, context=5, residual=True, hidden=16, layers=1)
    with torch.no_grad():
        model.head.out.weight.zero_()
        model.head.out.bias.zero_()
    save_model(root / "gru", model, {"loss": {"cosine": 1.0}})
    write_run(root, {**json.loads((root / "run.json").read_text()), "models": {"gru": str(root / "gru")}})
    d = diagnose(root)
    write_report(d)  # into the run folder's report/
    assert d.verdict == "copying", d.summary
    f = d.findings[0]
    assert f.evidence["direction_margin"] < 0 and f.evidence["gain_over_copying"] <= 0
    assert d.models["gru"].test_cosine == pytest.approx(d.baselines["context_mean"]["cosine"], abs=1e-5)
    assert d.models["gru"].history == {}  # no history.json: curves are skipped, not an error
    assert "learning_curves_gru" not in d.files and (root / "report" / "cosine_hist.png").is_file()


def test_run_without_models_reports_the_failures(tmp_path):
    root = make_run(tmp_path / "failed", make_table(n_articles=10, length=12), {})
    write_run(root, {**json.loads((root / "run.json").read_text()), "failed": {"lstm": "RuntimeError: boom"}})
    d = diagnose(root)
    assert d.verdict == "no_model" and "boom" in to_markdown(d)
    assert set(d.baselines) == {"global_mean", "last_context", "context_mean", "ridge", "article_mean",
                                "article_blend"}


def test_report_files_and_embedded_markdown(memorised_run, tmp_path):
    out = tmp_path / "elsewhere"
    d = diagnose(memorised_run)
    assert not (memorised_run / "report").exists()  # diagnose only reads: the report is written apart
    write_report(d, out)
    names = {p.name for p in out.iterdir()}
    assert {"report.md", "report.html", "diagnosis.json", "learning_curves_transformer.png",
            "cosine_hist.png", "offset_sweep.png"} <= names
    for png in out.glob("*.png"):
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size < 150_000
    md = (out / "report.md").read_text()
    assert "](learning_curves_transformer.png)" in md and "](cosine_hist.png)" in md
    emb = markdown_with_images(d)
    assert emb.count("](data:image/png;base64,") == 3 and ".png)" not in emb
    page = (out / "report.html").read_text()
    assert page.startswith("<!DOCTYPE html>") and page.count('src="data:image/png;base64,') == 3
    assert not re.search(r'src="(?!data:)', page)  # standalone: nothing to fetch
    saved = json.loads((out / "diagnosis.json").read_text())
    assert saved["verdict"] == "memorisation" and saved["findings"][0]["evidence"]["gap"] > MEMORISATION_GAP


def test_history_summary_flags_an_early_validation_peak():
    hist = [{"epoch": e, "train_cosine": 0.1 + 0.05 * e, "val_cosine": v}
            for e, v in enumerate([0.10, 0.20, 0.25, 0.22, 0.20, 0.18, 0.17, 0.16, 0.15, 0.14], start=1)]
    s = history_summary(hist)
    assert s["best_epoch"] == 3 and s["peaked_early"] and not s["still_improving"]
    assert s["final_gap"] == pytest.approx(0.6 - 0.14)
    rising = [{"epoch": e, "train_cosine": 0.5, "val_cosine": 0.1 * e} for e in range(1, 6)]
    s = history_summary(rising)
    assert s["still_improving"] and not s["peaked_early"]
    assert history_summary([]) == {}


def test_missing_run_json_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="run.json"):
        diagnose(tmp_path)


def test_diagnosis_does_not_import_prefect():
    import subprocess
    import sys

    code = "import sys, lvm.diagnosis.evidence, lvm.diagnosis.render; assert 'prefect' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).resolve().parents[1])


def test_the_report_judges_with_the_runs_own_gates_and_agrees_with_the_decision(healthy_run, tmp_path):
    """A run whose forward-margin gate was raised above its model's margin: the decision's gate fails, and the
    report names backward bias with that same threshold; at the default gate both pass."""
    from lvm.decision import forward_gates
    from lvm.evaluation.forward import summary

    default = diagnose(healthy_run)
    margin = default.forward["lstm"]["forward_margin"]["diff"]
    assert forward_gates(summary(default.forward["lstm"]))["forward_margin"]["passed"]
    assert not [f for f in default.findings if f.kind == "backward_bias" and f.model == "lstm"]

    raised = tmp_path / "raised"
    shutil.copytree(healthy_run, raised)
    run = json.loads((raised / "run.json").read_text())
    run["gates"] = {"min_forward_margin": margin + 0.01}
    (raised / "run.json").write_text(json.dumps(run))
    d = diagnose(raised)
    gate = forward_gates(summary(d.forward["lstm"]), min_forward_margin=margin + 0.01)["forward_margin"]
    bias = [f for f in d.findings if f.kind == "backward_bias" and f.model == "lstm"]
    assert not gate["passed"] and bias and f"{margin + 0.01:+.4f}" in bias[0].title
    assert d.forward["lstm"] == default.forward["lstm"]  # the same numbers, judged by the run's gate


def test_lvm_diagnose_takes_a_model_folder_from_lvm_train(tmp_path, monkeypatch):
    """#27: `lvm diagnose MODEL_DIR` refused a model folder ("has no run.json"). It now writes a run folder for that
    model (the table, the split re-drawn from config.json's record) and diagnoses it like a flow run's."""
    from typer.testing import CliRunner

    from lvm.cli import app

    monkeypatch.setenv("LVM_DATA_DIR", str(tmp_path / "data"))
    data = write_table(quadratic_table(40, dim=16, seed=0), tmp_path / "t.parquet")
    model = tmp_path / "m"
    train_on_table(data, cfg(arch="lstm", epochs=2, model={"hidden": 16, "layers": 1}, article=False), model)
    res = CliRunner().invoke(app, ["diagnose", str(model)])
    assert res.exit_code == 0, res.output
    run_dir = tmp_path / "data" / "runs" / "diagnose-m"
    assert (run_dir / "run.json").is_file() and (run_dir / "report" / "report.md").is_file()
    assert "lstm" in res.stdout and str(run_dir) in res.stderr
    moved = tmp_path / "other.parquet"
    data.rename(moved)
    res = CliRunner().invoke(app, ["diagnose", str(model)])
    assert res.exit_code == 2 and "names no training table that is still there" in res.output


def test_a_run_on_too_little_data_opens_with_that_verdict_and_never_calls_one_model_two_opposite_things(tmp_path):
    """#27 item 6: on a 3-article table the diagnosis listed 18 findings, called one model memorising and
    underfitting, and never said that such numbers mean nothing. It opens with the data-size verdict now (here: a
    batch larger than the training set, one training article), problems before notes."""
    table = quadratic_table(3, length=14, dim=16, seed=5)
    c = cfg(arch="lstm", epochs=3, lr=3e-3, batch_size=256, patience=None, model={"hidden": 16, "layers": 1},
            article=False)
    run = make_run(tmp_path / "tiny", table, {"lstm": c}, (0.34, 0.33, 0.33))
    d = diagnose(run)
    assert d.verdict == "too_little_data" and d.findings[0].kind == "too_little_data"
    assert "every epoch is one optimizer step" in d.findings[0].title
    kinds = [f.kind for f in d.findings if f.model == "lstm"]
    assert not ({"memorisation", "underfitting"} <= set(kinds)), kinds
    rest = [f.problem for f in d.findings[1:]]
    assert rest == sorted(rest, reverse=True)  # after the verdict: every problem, then the notes
    assert "too little data" in to_markdown(d, images="none")

"""Scheduled retrains on a corpus that grows: the challenger against production on the same test windows, the hash
split that never moves an article, a re-run with nothing new, and an encoder change refused."""

import json
import shutil
from pathlib import Path

import pytest
from conftest import prefect_harness

TINY = {"*": {"hidden": 32, "layers": 1}}
# Thresholds low enough that deploy is reachable on tiny models of hash:32 vectors (which never pass the forward
# gates: the hash encoder keeps too little of a sentence); the baselines and the champion still have to be beaten.
COMMON = dict(architectures=["lstm"], model_options=TINY, encoder="hash:32", fractions=(0.6, 0.2, 0.2),
              baseline_threshold=0.0, deploy_threshold=0.0, require_forward=False, runner="threads")


@pytest.fixture(scope="module", autouse=True)
def harness(tmp_path_factory):
    with prefect_harness(tmp_path_factory.mktemp("lvm-data")) as data:
        yield data


def _grow(corpus_dir: Path, folder: Path, n: int) -> None:
    """The first `n` State of the Union speeches in `folder` (copied from the shared corpus a few at a time)."""
    folder.mkdir(exist_ok=True)
    for f in sorted((corpus_dir / "sotu").glob("*.txt"))[:n]:
        if not (folder / f.name).exists():
            shutil.copy(f, folder)


def _retrain(folder, epochs, lr, **kw):
    from flows.train_lvm import train_lvm

    return train_lvm(data=str(folder), epochs=epochs, train_options={"lr": lr}, **{**COMMON, **kw})


def _states(run_dir) -> dict:
    from prefect import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    run_id = json.loads(Path(run_dir, "run.json").read_text())["flow_run_id"]
    with get_client(sync_client=True) as c:
        flow_ids = [run_id] + [str(f.id) for f in c.read_flow_runs() if f.parent_task_run_id
                               and str(c.read_task_run(f.parent_task_run_id).flow_run_id) == run_id]
        trs = c.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=flow_ids)))
    return {t.name: t.state.name for t in trs}  # clean task run names (#27)


def test_three_retrains_on_a_growing_corpus(harness, corpus_dir):
    """Run 1 deploys; a re-run with no new text is cached and promotes nothing; run 2 (one epoch at a tiny rate)
    loses to production, which stays; run 3 (a better challenger) beats production and is promoted. No article
    of an earlier test part is in a later training part, and every version keeps its lineage."""
    from lvm.data.dataset import load_split
    from lvm.store.registry import Registry

    folder = harness / "my-text"
    reg = Registry(harness / "registry")
    _grow(corpus_dir, folder, 10)
    r1 = _retrain(folder, 3, 3e-3)
    assert r1.decision == "deploy", r1.reason
    assert r1.champion == {} and "no production model" in r1.champion_table and r1.split["method"] == "hash"
    assert reg.aliases()["production"] == r1.registry["version"] == 1
    lin = reg.show(1)["lineage"]
    assert lin["articles_added_count"] == 10 and lin["previous_production"] is None
    assert lin["split"]["method"] == "hash" and lin["data_hash"] == r1.dataset.sha256 and lin["flow_run_id"]
    assert lin["code_version"] and reg.articles(1)["test"] == load_split(r1.split["path"]).articles["test"]

    again = _retrain(folder, 3, 3e-3)  # nothing new: cached, and production is this very model
    states = _states(again.run_dir)
    assert states["train-lstm"] == "Cached" and states["evaluate"] == "Cached", states
    embeds = {k: v for k, v in states.items() if k.startswith("embed-")}
    assert embeds and set(embeds.values()) == {"Cached"}, states
    assert again.decision == "hold" and again.registry is None and "same weights" in again.reason
    assert [v["version"] for v in reg.list()] == [1] and reg.aliases() == {"production": 1}

    _grow(corpus_dir, folder, 14)
    r2 = _retrain(folder, 1, 1e-5)  # worse on purpose
    assert r2.decision == "hold" and reg.aliases()["production"] == 1 and reg.aliases()["candidate"] == 2
    diff = r2.champion["difference"]["diff"]
    assert diff < 0 and f"difference {diff:+.4f}" in r2.reason and "Production stays v1" in r2.reason
    assert r2.champion["verdict"] == "champion" and "champion v1" in r2.champion_table
    lin2 = reg.show(2)["lineage"]
    assert lin2["articles_added_count"] == 4 and lin2["previous_production"] == 1
    assert lin2["vs_production"]["diff"] == pytest.approx(diff)

    _grow(corpus_dir, folder, 18)
    # better: more epochs. With the reader's true SOTU sentences a 10-speech hash:32 lstm plateaus ~0.0015 above v1
    # (10 epochs, or width 64: +0.0008), so the bar is set to 0.001: what is tested is the rule, at any bar
    r3 = _retrain(folder, 10, 3e-3, min_improvement=0.001)
    assert r3.decision == "deploy", r3.reason
    d = r3.champion["difference"]
    assert r3.champion["verdict"] == "challenger" and d["diff"] >= 0.001 and d["ci95"][0] > 0
    assert reg.aliases()["production"] == r3.registry["version"] == 3 and reg.alias_history() == [1]
    assert r3.champion["champion"]["cosine"] < r3.champion["challenger"]["cosine"]
    assert "challenger − champion cosine" in r3.champion_table and "promoted" in r3.champion_table
    assert r3.champion["leaks"] == {"champion_train_in_test": [], "champion_test_in_train": []}
    decision = json.loads(Path(r3.run_dir, "decision.json").read_text())
    assert decision["champion"]["version"] == 1 and decision["branch"] == "deploy"

    splits = [load_split(r.split["path"]).articles for r in (r1, r2, r3)]
    for i, earlier in enumerate(splits):
        for later in splits[i + 1:]:
            assert not set(earlier["test"]) & set(later["train"])
            assert set(earlier["test"]) <= set(later["test"])  # the hash split keeps them all in test
    assert len(splits[2]["train"]) > len(splits[0]["train"])


def test_an_encoder_change_is_refused_naming_both(harness, corpus_dir):
    """Production (from the test above, or a first run here) holds hash:32 vectors; hash:48 cannot be compared."""
    from lvm.store.registry import Registry

    folder = harness / "my-text"
    _grow(corpus_dir, folder, 10)
    if "production" not in Registry(harness / "registry").aliases():
        assert _retrain(folder, 3, 3e-3).decision == "deploy"
    with pytest.raises(Exception, match=r"encoder 'hash:32' \(D=32\).*encoder 'hash:48' \(D=48\)"):
        _retrain(folder, 1, 1e-3, encoder="hash:48")


def test_the_dataset_flow_announces_new_text_once(harness, corpus_dir, monkeypatch):
    """lvm.dataset.updated is emitted when the table changed (new documents), not on a re-run with nothing new,
    and not for the table the train flow builds itself (notify=False)."""
    import tasks.data
    from flows.build_dataset import build_dataset_flow

    sent = []
    monkeypatch.setattr(tasks.data, "emit_event", lambda event, **kw: sent.append((event, kw)))
    folder = harness / "announced"
    _grow(corpus_dir, folder, 3)
    build_dataset_flow(corpus=str(folder), encoder="hash:32")
    build_dataset_flow(corpus=str(folder), encoder="hash:32")
    assert [e for e, _ in sent] == ["lvm.dataset.updated"]
    assert sent[0][1]["resource"]["prefect.resource.id"] == "lvm.dataset.announced"
    assert sent[0][1]["payload"]["previous_sha256"] is None and sent[0][1]["payload"]["documents"] == 3
    _grow(corpus_dir, folder, 4)
    build_dataset_flow(corpus=str(folder), encoder="hash:32", notify=False)
    assert len(sent) == 1
    _grow(corpus_dir, folder, 5)
    build_dataset_flow(corpus=str(folder), encoder="hash:32")
    assert len(sent) == 2 and sent[1][1]["payload"]["previous_sha256"]

import pytest

from lvm.decision import decide

BASE = {"global_mean": {"cosine": 0.27}, "context_mean": {"cosine": 0.42}, "ridge": {"cosine": 0.46}}


@pytest.mark.parametrize("score,branch", [(0.60, "deploy"), (0.55, "deploy"), (0.50, "hold"), (0.48, "hold"),
                                          (0.47, "investigate"), (0.02, "investigate")])
def test_thresholds(score, branch):
    d = decide({"lstm": {"cosine": score - 0.01}, "gru": {"cosine": score}}, BASE)
    assert d.branch == branch and d.best_arch == "gru" and d.best_cosine == score
    assert f"{score:.4f}" in d.reason


def test_above_threshold_but_losing_to_a_baseline_is_held():
    d = decide({"lstm": {"cosine": 0.56}}, {**BASE, "ridge": {"cosine": 0.58}})
    assert d.branch == "hold" and not d.beats_all_baselines and "ridge" in d.reason


def test_no_models_investigates_and_bad_thresholds_raise():
    assert decide({}, BASE).branch == "investigate"
    with pytest.raises(ValueError):
        decide({"lstm": {"cosine": 0.5}}, BASE, baseline_threshold=0.6, deploy_threshold=0.5)

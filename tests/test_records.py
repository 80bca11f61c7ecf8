"""The flow's typed records and option groups match the library they feed, and a misspelt option is refused."""

import dataclasses
import inspect

import pytest

from tasks.records import DatasetRecord, LossWeights, ModelOptions, SplitRecord, TrainOptions, given


def test_option_groups_name_exactly_what_the_library_accepts():
    from lvm.models import MODELS
    from lvm.train.config import TrainConfig
    from lvm.train.losses import CompositeLoss

    flow_owned = {"arch", "epochs", "context", "seed", "model", "loss", "init"}  # the flow's own parameters
    assert set(TrainOptions.model_fields) == {f.name for f in dataclasses.fields(TrainConfig)} - flow_owned
    assert set(LossWeights.model_fields) == set(inspect.signature(CompositeLoss.__init__).parameters) - {"self"}
    arch_options = set().union(*(cls.defaults for cls in MODELS.values()))
    assert set(ModelOptions.model_fields) == arch_options


def test_given_keeps_only_what_was_set():
    assert given(None) == {} and given({"lr": 1e-3}) == {"lr": 1e-3}
    assert given(TrainOptions(lr=1e-3, patience=0)) == {"lr": 1e-3, "patience": 0}
    assert given(ModelOptions(hidden=32)) == {"hidden": 32}


def test_the_flow_refuses_a_misspelt_option_before_it_runs():
    from flows.train_lvm import train_lvm

    ok = train_lvm.validate_parameters({"train_options": {"lr": 1e-3}, "model_options": {"*": {"hidden": 32}},
                                        "loss": {"cosine": 1.0, "infonce": 0.1}})
    assert isinstance(ok["train_options"], TrainOptions) and ok["model_options"]["*"].hidden == 32
    for bad in ({"train_options": {"lrr": 1e-3}}, {"model_options": {"*": {"hiden": 32}}},
                {"loss": {"infonse": 0.1}}):
        with pytest.raises(Exception, match="lrr|hiden|infonse"):
            train_lvm.validate_parameters(bad)


def test_records_are_frozen():
    rec = SplitRecord(path="s.json", seed=0, fractions=[0.8, 0.1, 0.1], by_article=True, articles={"train": 8},
                      rows={"train": 80}, article_ids_sha256="0" * 64)
    with pytest.raises(Exception):
        rec.seed = 1
    assert "sha256" in DatasetRecord.model_fields

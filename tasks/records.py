"""The records the flow's stages pass to each other and the flow's option groups, typed (pydantic, as Prefect
validates flow parameters with it): a misspelt option is refused when the run starts, and the UI shows a form.

Records are frozen: a stage's output is also the cache key of the stages after it."""

from __future__ import annotations

from typing import Optional, Union

from pydantic import BaseModel, ConfigDict, Field, create_model

from lvm.models import option_defaults


class DatasetRecord(BaseModel):
    """A validated sentence table (load_and_validate's result)."""

    model_config = ConfigDict(frozen=True)

    path: str                   # absolute path of the table
    sha256: str                 # content hash (lvm.data.dataset.file_hash): what every later stage is keyed on
    articles: int
    sentences: int
    dim: int
    encoder: str
    windows: int                # windows of the run's context length
    mean_vector_norm: float     # anisotropy: 0 = directions spread evenly, 1 = all alike
    duplicate_rate: float
    short_articles: int         # articles too short for one window (skipped, with a warning)


class SplitRecord(BaseModel):
    """An article-disjoint split saved beside the runs (split-by-article's result): lvm.data.dataset.Split.record()
    and where the row indices are."""

    model_config = ConfigDict(frozen=True)

    path: str                   # the split's JSON (row indices per part), lvm.data.dataset.load_split reads it
    seed: int
    fractions: list[float]
    by_article: bool
    articles: dict[str, int]    # articles per part
    rows: dict[str, int]        # sentences per part
    article_ids_sha256: str     # which articles are in which part
    method: str = "permutation"  # lvm.data.dataset.SPLIT_METHODS: "hash" keeps every article in its part as data grows


class LossWeights(BaseModel):
    """lvm.train.losses.CompositeLoss's weights. Unset fields take CompositeLoss's own defaults (cosine 1, the
    others 0); no loss at all (None) is the measured default preset."""

    model_config = ConfigDict(extra="forbid")

    cosine: Optional[float] = None
    mse: Optional[float] = None
    infonce: Optional[float] = None
    moment: Optional[float] = None
    variance: Optional[float] = None
    temperature: Optional[float] = None
    hard_negatives: Optional[int] = None


def _model_options() -> type[BaseModel]:
    """ModelOptions, one optional field per build option of any registered architecture (lvm.models), described by
    the architectures that take it and their defaults: a new architecture's options appear here by themselves."""
    fields = {}
    for key, by_arch in option_defaults().items():
        kind = float if any(isinstance(v, float) for v in by_arch.values()) else int
        said = ", ".join(f"{a} {v}" for a, v in by_arch.items())
        fields[key] = (Optional[kind], Field(None, description=f"default: {said}"))
    return create_model("ModelOptions", __config__=ConfigDict(extra="forbid"), __doc__=(
        "Build options of one architecture (lvm.models); unset fields keep the architecture's own default, and an "
        "option the architecture does not have is refused by it when the model is built."), **fields)


ModelOptions = _model_options()


class TrainOptions(BaseModel):
    """lvm.train.config.TrainConfig fields a run may change; unset fields keep TrainConfig's defaults."""

    model_config = ConfigDict(extra="forbid")

    batch_size: Optional[int] = None
    lr: Optional[float] = None
    weight_decay: Optional[float] = None
    warmup_frac: Optional[float] = None
    schedule: Optional[str] = None
    min_lr_frac: Optional[float] = None
    plateau_factor: Optional[float] = None
    plateau_patience: Optional[int] = None
    grad_clip: Optional[float] = None
    patience: Optional[int] = None
    min_delta: Optional[float] = None
    device: Optional[str] = None
    precision: Optional[str] = None
    residual: Optional[bool] = None
    article: Optional[bool] = None
    eval_batch_size: Optional[int] = None
    threads: Optional[Union[int, str]] = None  # torch threads per training; unset: the flow shares the cores


def given(options: BaseModel | dict | None) -> dict:
    """The fields set in an option group, as the plain dict the library takes."""
    if options is None:
        return {}
    if isinstance(options, dict):
        return dict(options)
    return options.model_dump(exclude_none=True)

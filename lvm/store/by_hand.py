"""A model trained by hand (`lvm train`) into the registry: `lvm registry register MODEL_DIR`, with what its folder
records about its data, split and held-out evaluation, and (given the rule) its forward gates."""

from __future__ import annotations

from pathlib import Path

from lvm.store.registry import Registry, RegistryError
from lvm.store.version_files import _read_registry_json


def register_model_folder(registry: Registry, folder: str | Path, alias: str | None = None,
                          gates=None) -> int:
    """Register `folder` (model.safetensors + config.json, metrics.json when it has one) as a new version; returns
    its number. Lineage: the folder, its data hash, table, split record, training config (and `init`, for a fine-tuned
    model); with `gates` (metrics -> gates, e.g. lvm.decision.forward_gates) its held-out metrics' forward gates,
    when they have the forward columns."""
    folder = Path(folder)
    config_path = folder / "config.json"
    if not config_path.is_file():
        raise RegistryError(f"{folder}: not a model folder (no config.json); train one with `lvm train`")
    config = _read_registry_json(config_path)
    metrics = _read_registry_json(folder / "metrics.json") if (folder / "metrics.json").is_file() else {}
    lineage = {"registered_from": str(folder.resolve()), "by": "lvm registry register",
               **{k: config.get(k) for k in ("data_hash", "dataset", "split", "encoder") if k in config}}
    train = config.get("train") or {}
    if train:
        lineage["train"] = train
        if train.get("init"):
            lineage["init"] = train["init"]
    if gates is not None and "forward_margin" in metrics:
        lineage["gates"] = gates(metrics)
    return registry.register(folder, data_hash=config.get("data_hash"), encoder=config.get("encoder"),
                             encoder_dim=config.get("dim"), metrics=metrics, alias=alias, lineage=lineage)

"""Champion against challenger: the model in production and a retrain's best model scored on the same held-out
windows (the retrain's test split), with the per-window paired difference and its article-bootstrap interval.

A retrain on noisier text or with an unlucky seed must not replace a better production model: lvm.decision.challenge
turns this comparison into the verdict. Only vectors of one encoder (same name and D) and windows of one context
length are comparable, so anything else is refused here, before any training, with both sides named.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from lvm.data.dataset import load_split, read_table
from lvm.evaluation.compare import score_all
from lvm.evaluation.heldout import HeldOutSet
from lvm.evaluation.metrics import on_context, paired_difference
from lvm.evaluation.predictors import model_predictor
from lvm.store.registry import Registry

ADDED_SHOWN = 100  # article ids of "added since production" kept in a lineage (the count is always kept)


class ChampionMismatch(ValueError):
    """Production cannot be scored on this run's windows (another encoder, D or context length)."""


def weights_sha256(model_dir: str | Path) -> str:
    """Content hash of a model's weights: the registry copies the file byte for byte, so a version and the folder
    it was registered from hash alike (a re-run whose best model is production already)."""
    h = hashlib.sha256()
    with open(Path(model_dir) / "model.safetensors", "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def production_champion(registry_root: str | Path, encoder: str, dim: int, context: int) -> dict | None:
    """The `production` version as a small record (version, path, arch, encoder, dim, context, data_hash,
    weights_sha256), or None when no production is set. Raises ChampionMismatch naming both encoders (and D,
    context) when production was trained on vectors this run's cannot be compared with."""
    reg = Registry(registry_root)
    if "production" not in reg.aliases():
        return None
    info = reg.show("production")
    v = info["version"]
    prod_dim = int(info.get("encoder_dim") or info["dim"])
    if str(info.get("encoder")) != str(encoder) or prod_dim != int(dim):
        raise ChampionMismatch(
            f"production v{v} in {reg.root} was trained on encoder {info.get('encoder')!r} (D={prod_dim}), but this "
            f"run's table is embedded with encoder {encoder!r} (D={dim}): the champion cannot be scored on these "
            f"vectors. Retrain on text embedded with {info.get('encoder')!r}, or pass challenge_production=False to "
            f"replace production on today's decision alone")
    if int(info["context"]) != int(context):
        raise ChampionMismatch(f"production v{v} reads {info['context']} sentences of context, this run {context}: "
                               f"score them on the same windows (context={info['context']}) or pass "
                               f"challenge_production=False")
    return {"version": v, "path": info["path"], "arch": info["arch"], "encoder": info.get("encoder"), "dim": prod_dim,
            "context": int(info["context"]), "data_hash": info.get("data_hash"),
            "weights_sha256": weights_sha256(info["path"])}


def corpus_changes(current: dict[str, list[str]], previous: dict[str, list[str]] | None) -> dict:
    """Articles of this run's split (`current`: part -> ids, `Split.articles`) that the previous version's did not
    have (`previous`: its articles.json; None: unknown, e.g. a first version, when every article counts as added).
    Read from the splits, so the table is not read again."""
    ids = sorted({str(a) for part in current.values() for a in part})
    before = set() if previous is None else {a for part in previous.values() for a in part}
    added = [a for a in ids if a not in before]
    return {"articles_added_count": len(added), "articles_added": added[:ADDED_SHOWN],
            "articles_removed_count": len(before - set(ids)), "previous_known": previous is not None}


def _flat(metrics: dict) -> dict:
    return {k: v for k, v in metrics.items() if k != "forward"}


def score_champion(table_path: str | Path, split_path: str | Path, champion: dict, challenger_dir: str | Path,
                   context: int, challenger_arch: str = "challenger", part: str = "test") -> dict:
    """Champion and challenger on the same windows of `part`: each one's flat metrics (cosine, mrr, forward margin,
    ...), the challenger − champion cosine difference window by window with its 95% article-bootstrap interval,
    and the split leaks that would make the comparison unfair (champion's training articles in this test part,
    champion's test articles in this training part). When the challenger has the champion's very weights, nothing
    is scored: {"same_model": True}."""
    out = {"version": champion["version"], "champion_arch": champion["arch"], "challenger_arch": challenger_arch,
           "part": part, "same_model": weights_sha256(challenger_dir) == champion["weights_sha256"]}
    if out["same_model"]:
        return out
    table = read_table(table_path, validate=False)
    split = load_split(split_path)
    try:
        held = HeldOutSet.of(table, split.part(part), context, part)
    except ValueError:
        raise ValueError(f"the {part} split of {table_path} has no windows of context {context}") from None
    fns = {"challenger": on_context(model_predictor(challenger_dir)), "champion": on_context(model_predictor(
        champion["path"]))}
    metrics, cosines = score_all(fns, held)
    diff = paired_difference(cosines["challenger"], cosines["champion"], held.target_groups)
    file = Path(champion["path"]) / "articles.json"  # lvm.store.registry: the parts the champion saw, when recorded
    previous = json.loads(file.read_text()) if file.is_file() else None
    leaks = None
    if previous is not None:
        leaks = {"champion_train_in_test": sorted(set(previous.get("train", [])) & set(split.articles[part])),
                 "champion_test_in_train": sorted(set(previous.get("test", [])) & set(split.articles["train"]))}
    return {**out, "n": len(held), "articles": len(split.articles[part]), "metric": "cosine",
            "challenger": _flat(metrics["challenger"]), "champion": _flat(metrics["champion"]), "difference": diff,
            "leaks": leaks}

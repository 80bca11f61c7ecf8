"""What a diagnosis says about the data rather than a model: the data-size verdict it opens with when the run had
too little data for its numbers to mean anything, and the notes (small data, few test windows, anisotropy,
duplicates, thresholds, a model still improving or narrow, a dataset changed since the run)."""

from __future__ import annotations

from lvm.diagnosis.findings import (
    ANISOTROPY_NORM,
    COLLAPSE_SPREAD_RATIO,
    DUPLICATE_RATE,
    NARROW_SPREAD_RATIO,
    SMALL_DATA_WINDOWS,
    TINY_EVAL_WINDOWS,
    Finding,
)

MIN_TRAIN_ARTICLES = 3    # fewer training articles: the models have seen one or two texts
MIN_EVAL_WINDOWS = 30     # fewer held-out windows: no interval means anything


def data_size_verdict(data: dict, eval_part: str) -> Finding | None:
    """The finding a diagnosis opens with when the data is too small to judge anything: too few training articles,
    too few held-out windows, or a batch at least as large as the training set (every epoch one optimizer step)."""
    arts = (data.get("articles_per_split") or {}).get("train")
    tw = (data.get("windows_per_split") or {}).get("train")
    ew = (data.get("windows_per_split") or {}).get(eval_part)
    batch = data.get("batch_size")
    why = []
    if arts is not None and arts < MIN_TRAIN_ARTICLES:
        why.append(f"{arts} training article{'s' if arts != 1 else ''}")
    if ew is not None and ew < MIN_EVAL_WINDOWS:
        why.append(f"{ew} {eval_part} windows")
    if batch and tw is not None and batch >= tw:
        why.append(f"a batch of {batch} against {tw} training windows: every epoch is one optimizer step")
    if not why:
        return None
    return Finding("too_little_data", "too little data for these numbers to mean anything: " + "; ".join(why),
                   {"train_articles": arts, "train_windows": tw, f"{eval_part}_windows": ew, "batch_size": batch,
                    "min_train_articles": MIN_TRAIN_ARTICLES, "min_eval_windows": MIN_EVAL_WINDOWS},
                   ["more text: hundreds of articles and thousands of windows (make run's built-in corpus has 79 "
                    "articles); the findings below are listed, not to be believed"])


def notes(models: dict, data: dict, baselines: dict, best_base: dict, eval_part: str, thresholds: dict,
           data_changed: bool) -> list[Finding]:
    notes = []
    tw = data.get("windows_per_split", {}).get("train")
    if tw is not None and tw < SMALL_DATA_WINDOWS:
        notes.append(Finding("small_data", f"small training set: {tw} windows",
                             {"train_windows": tw, "threshold": SMALL_DATA_WINDOWS,
                              "articles": data.get("articles_per_split", {}).get("train")},
                             ["more articles (a bigger corpus): networks of seed size need far more than this"],
                             problem=False))
    ew = data.get("windows_per_split", {}).get(eval_part)
    if ew is not None and ew < TINY_EVAL_WINDOWS:
        notes.append(Finding("tiny_eval", f"only {ew} {eval_part} windows: held-out scores are noisy",
                             {f"{eval_part}_windows": ew, "threshold": TINY_EVAL_WINDOWS},
                             ["a larger test fraction or more articles"], problem=False))
    if data.get("mean_vector_norm", 0) >= ANISOTROPY_NORM:
        notes.append(Finding("anisotropy", "anisotropic embeddings: the vectors share a strong common direction",
                             {"mean_vector_norm": data["mean_vector_norm"], "threshold": ANISOTROPY_NORM,
                              "global_mean_cosine": baselines.get("global_mean", {}).get("cosine")},
                             ["read cosines against the global_mean baseline, not against 0",
                              "consider centring the vectors (subtract the training mean) before training"],
                             problem=False))
    if data.get("duplicate_rate", 0) >= DUPLICATE_RATE:
        notes.append(Finding("duplicates", f"{data['duplicate_rate']:.1%} of the rows repeat an earlier vector",
                             {"duplicate_rate": data["duplicate_rate"], "duplicate_rows": data.get("duplicate_rows"),
                              "threshold": DUPLICATE_RATE},
                             ["deduplicate boilerplate sentences, or check the sentence splitter"], problem=False))
    bt = thresholds.get("baseline_threshold")
    if bt is not None and best_base["cosine"] < bt:
        bname = best_base["name"]
        notes.append(Finding(
            "thresholds", f"even the best baseline ({bname}) is below the baseline threshold {bt:.2f}",
            {"best_baseline": bname, "best_baseline_cosine": best_base["cosine"],
             "baseline_threshold": bt, "deploy_threshold": thresholds.get("deploy_threshold")},
            ["cosines do not carry over between encoders: leave the thresholds out and the run derives them from "
             "its own global-mean baseline (lvm.decision.thresholds)"], problem=False))
    for arch, m in models.items():
        if m.history.get("still_improving"):
            notes.append(Finding("still_improving", f"{arch}: validation cosine was still rising at the last epoch",
                                 {"final_val_cosine": m.history.get("final_val_cosine"),
                                  "epochs": m.history.get("epochs")},
                                 ["train for more epochs"], model=arch, problem=False))
        r = m.spread.get("spread_ratio")
        if r is not None and COLLAPSE_SPREAD_RATIO <= r < NARROW_SPREAD_RATIO:
            notes.append(Finding("narrow", f"{arch}: predictions are narrower than the targets (not collapsed)",
                                 {"spread_ratio": r, "collapse_below": COLLAPSE_SPREAD_RATIO},
                                 ["expected with cosine/MSE on hard data (predictions shrink to the conditional "
                                  "mean); a variance term widens them if retrieval matters"], model=arch,
                                 problem=False))
    if data_changed:
        notes.append(Finding("data_changed", "the dataset file changed since the run (sha256 differs from run.json)",
                             {}, ["re-run training: these numbers are on the current file"], problem=False))
    return notes



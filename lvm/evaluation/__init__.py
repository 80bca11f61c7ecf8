"""Evaluation: how a model or a baseline is scored, in one place.

- `metrics`: predictions for windows (`predict_rows`), the baselines (`fit_baselines`), cosine, retrieval and the
  paired difference with its article-bootstrap interval.
- `forward`: the forward-prediction suite (does a model predict what comes next, or echo its input?).
- `compare`: every model and baseline on one split of one table, and `evaluate_model` for `lvm evaluate`.
"""

"""Evaluation: how a model or a baseline is scored, in one place.

- `heldout`: `HeldOutSet`, the windows of one part of one table, built once; `suite`: every measure of every
  predictor in one pass over them (`score_predictors`, `forward_suite`).
- `metrics`: the definitions — predictions for windows (`predict_rows`), cosine, retrieval (`Bank`) and the paired
  difference with its article-bootstrap interval; `forward`: the forward-prediction measures.
- `baselines`: the closed-form baselines, fitted on the training windows only; `predictors`: the one inference
  path of a trained network (the server's too).
- `compare`: every model and baseline on one split of one table, and `evaluate_model` for `lvm evaluate`;
  `champion`: production against the challenger on the same windows.
"""

"""Training: one architecture fitted on (vectors, target rows), pure torch (never imports prefect).

- `config`: `TrainConfig`, everything that decides a run, with its defaults.
- `schedule`: the learning-rate schedule (warm-up, then cosine decay or reduce on plateau).
- `checkpoint`: the per-epoch training state a killed run resumes from, bit for bit.
- `trainer`: `fit`, the loop (early stopping, checkpoints, resume, fine-tuning from a model folder).
- `on_table`: `train_on_table`, a table in, a model folder out (held-out scores when run alone).
"""

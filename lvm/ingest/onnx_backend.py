"""ONNX Runtime encoding of a sentence-transformers model, exported here from its local weights (nothing downloaded).

sentence-transformers' own `backend="onnx"` needs `optimum`, which is not always installable, so the graph is
exported with `torch.onnx.export`: the transformer plus mean pooling and L2 normalisation (what the model's Pooling
and Normalize modules do), so one session call gives the final vectors. The tokenizer stays the model's HF
tokenizer with its max_seq_length. `onnx-int8` is the same graph with weights quantised by
`onnxruntime.quantization.quantize_dynamic` (activations quantised per call). Exported files are cached under
the embedding cache folder, named by model, backend and a fingerprint of the weights and library versions, so a
new torch/onnxruntime or new weights export again instead of reusing a stale file.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path

import numpy as np

ONNX_BACKENDS = ("onnx", "onnx-int8")
# in the file name: a new recipe re-exports
RECIPE = "pooled;eager-attention;ort-bert-fusion;int8=per-channel-matmul-v1"
SUPPORTED_MODULES = ("Transformer", "Pooling", "Normalize")


def _versions() -> str:
    import onnx
    import onnxruntime
    import torch
    import transformers

    return (f"torch={torch.__version__};onnx={onnx.__version__};ort={onnxruntime.__version__};"
            f"tf={transformers.__version__}")


def check_exportable(st_model) -> None:
    """Only Transformer → mean Pooling → Normalize models are exported (the graph re-implements those modules)."""
    kinds = [type(m).__name__ for m in st_model]
    pooling = st_model[1] if len(st_model) > 1 else None
    mode = getattr(pooling, "pooling_mode", None)
    if mode is None and hasattr(pooling, "get_pooling_mode_str"):  # older sentence-transformers
        mode = pooling.get_pooling_mode_str()
    mean_only = mode == "mean"
    if tuple(kinds) != SUPPORTED_MODULES or not mean_only:
        raise ValueError(f"the ONNX backend supports Transformer → mean Pooling → Normalize models only; this model's "
                         f"modules are {kinds}: use --backend torch")


def fingerprint(model_dir: Path, backend: str) -> str:
    """Hash of the model's files (weights included), the backend and the exporting library versions."""
    h = hashlib.sha256(f"{backend};{RECIPE};{_versions()}".encode())
    for p in sorted(Path(model_dir).rglob("*")):
        if p.is_file() and p.suffix in (".json", ".safetensors", ".bin", ".txt"):
            h.update(p.name.encode() + b"\0")
            with open(p, "rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    h.update(block)
    return h.hexdigest()[:16]


def model_file(name: str, model_dir: Path, backend: str, cache_root: Path) -> Path:
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", name)
    return Path(cache_root) / "onnx" / f"{slug}.{backend}.{fingerprint(model_dir, backend)}.onnx"


class _Pooled:
    """torch module: transformer → masked mean → unit norm (what Pooling(mean) + Normalize compute)."""

    @staticmethod
    def build(auto_model):
        import torch

        class Pooled(torch.nn.Module):
            def __init__(self, inner):
                super().__init__()
                self.inner = inner

            def forward(self, input_ids, attention_mask, token_type_ids):
                hidden = self.inner(input_ids=input_ids, attention_mask=attention_mask,
                                    token_type_ids=token_type_ids).last_hidden_state
                m = attention_mask.unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * m).sum(1) / m.sum(1).clamp(min=1e-9)
                return torch.nn.functional.normalize(pooled, p=2.0, dim=1)

        return Pooled(auto_model).eval()


def export(st_model, path: Path, fuse: bool = True) -> Path:
    """Write the fp32 graph of a loaded SentenceTransformer to `path` (atomically). With `fuse`, ONNX Runtime's
    transformer optimizer fuses attention, LayerNorm and GELU (load the model with eager attention for that:
    the SDPA graph is not recognised as attention)."""
    import torch

    from lvm.util.atomic import write_atomic

    check_exportable(st_model)
    module = _Pooled.build(st_model[0].auto_model)
    tok = st_model.tokenizer(["an example sentence to trace", "short"], padding=True, return_tensors="pt")
    args = (tok["input_ids"], tok["attention_mask"], tok.get("token_type_ids", torch.zeros_like(tok["input_ids"])))
    dyn = {"input_ids": {0: "batch", 1: "seq"}, "attention_mask": {0: "batch", 1: "seq"},
           "token_type_ids": {0: "batch", 1: "seq"}, "embedding": {0: "batch"}}

    def write(tmp: str) -> None:
        import warnings

        with torch.no_grad(), warnings.catch_warnings():
            # the tracer's notes on shape checks that are constant for this graph (no causal mask, mask = input)
            warnings.simplefilter("ignore")
            torch.onnx.export(module, args, tmp, input_names=["input_ids", "attention_mask", "token_type_ids"],
                              output_names=["embedding"], dynamic_axes=dyn, opset_version=17, dynamo=False)
        if fuse:
            from onnxruntime.transformers.optimizer import optimize_model

            cfg = st_model[0].auto_model.config
            fused = optimize_model(tmp, model_type="bert", num_heads=int(cfg.num_attention_heads),
                                   hidden_size=int(cfg.hidden_size), opt_level=1)
            fused.save_model_to_file(tmp)

    write_atomic(path, write)
    return path


def quantize(fp32: Path, path: Path) -> Path:
    """int8 weights (per output channel, signed) of the MatMuls, activations quantised dynamically per call; the
    fused Attention nodes stay fp32."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    from lvm.util.atomic import write_atomic

    def write(tmp: str) -> None:
        quantize_dynamic(str(fp32), tmp, weight_type=QuantType.QInt8, per_channel=True, op_types_to_quantize=["MatMul"],
                         extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})  # fused ops lack type info

    write_atomic(path, write)
    return path


def default_threads() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


class OnnxEncoder:
    """Same interface as SentenceTransformerEncoder; encodes with an ONNX Runtime session on CPU.
    Sentences are sorted by token length and batched, so each batch is padded to its own longest sentence."""

    def __init__(self, name: str, model_dir: Path, backend: str = "onnx", cache_root: Path | None = None,
                 batch_size: int = 64, threads: int | None = None):
        if backend not in ONNX_BACKENDS:
            raise ValueError(f"unknown ONNX backend {backend!r}: choose one of {', '.join(ONNX_BACKENDS)}")
        import onnxruntime as ort
        from transformers import AutoTokenizer

        from lvm.util.paths import embedding_cache_dir

        cache_root = Path(cache_root) if cache_root else embedding_cache_dir()
        self.name, self.backend, self.batch_size = name, backend, int(batch_size)
        self.model_dir = Path(model_dir)
        cfg_path = self.model_dir / "sentence_bert_config.json"
        self.max_length = int(json.loads(cfg_path.read_text()).get("max_seq_length", 256)) if cfg_path.exists() else 256
        self.tokenizer = AutoTokenizer.from_pretrained(str(self.model_dir))
        self.pad_id = int(self.tokenizer.pad_token_id or 0)
        self.path = self._ensure_file(cache_root)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = int(threads or default_threads())
        opts.inter_op_num_threads = 1
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(str(self.path), opts, providers=["CPUExecutionProvider"])
        self._inputs = {i.name for i in self.session.get_inputs()}
        self.dim = int(self.session.get_outputs()[0].shape[1]) if isinstance(
            self.session.get_outputs()[0].shape[1], int) else int(self.encode(["x"]).shape[1])

    def _ensure_file(self, cache_root: Path) -> Path:
        path = model_file(self.name, self.model_dir, self.backend, cache_root)
        if path.exists():
            return path
        fp32 = model_file(self.name, self.model_dir, "onnx", cache_root)
        if not fp32.exists():
            from sentence_transformers import SentenceTransformer

            fp32.parent.mkdir(parents=True, exist_ok=True)
            st = SentenceTransformer(str(self.model_dir), device="cpu", model_kwargs={"attn_implementation": "eager"})
            export(st, fp32)
        if self.backend == "onnx-int8":
            quantize(fp32, path)
        return path

    def encode(self, sentences: list[str], progress: bool | None = None) -> np.ndarray:
        if not sentences:
            return np.zeros((0, getattr(self, "dim", 0)), dtype=np.float32)
        sentences = list(sentences)
        ids = self.tokenizer(sentences, truncation=True, max_length=self.max_length, padding=False)["input_ids"]
        order = np.argsort([-len(x) for x in ids], kind="stable")
        out = np.empty((len(sentences), 0), dtype=np.float32)
        for start in range(0, len(order), self.batch_size):
            idx = order[start:start + self.batch_size]
            width = max(len(ids[i]) for i in idx)
            input_ids = np.full((len(idx), width), self.pad_id, dtype=np.int64)
            mask = np.zeros((len(idx), width), dtype=np.int64)
            for row, i in enumerate(idx):
                input_ids[row, :len(ids[i])] = ids[i]
                mask[row, :len(ids[i])] = 1
            feeds = {"input_ids": input_ids, "attention_mask": mask, "token_type_ids": np.zeros_like(input_ids)}
            vecs = self.session.run(None, {k: v for k, v in feeds.items() if k in self._inputs})[0]
            if out.shape[1] == 0:
                out = np.empty((len(sentences), vecs.shape[1]), dtype=np.float32)
            out[idx] = vecs
        return np.ascontiguousarray(out, dtype=np.float32)


def onnx_encoder(name: str, backend: str, cache_root: Path | None = None) -> OnnxEncoder:
    """The ONNX encoder for the bundled model (by any of its aliases) or a local sentence-transformers folder."""
    from lvm.ingest.encoders import DEFAULT_ENCODER, bundled_model_path, is_bundled

    if is_bundled(name):
        return OnnxEncoder(DEFAULT_ENCODER, bundled_model_path(), backend, cache_root)
    if not (Path(name) / "modules.json").is_file():
        raise ValueError(f"encoder {name!r}: the {backend} backend needs the bundled model or a local "
                         f"sentence-transformers folder (with modules.json); use --backend torch for hub names")
    return OnnxEncoder(name, Path(name), backend, cache_root)

"""The LVM server: serves the model that a registry alias (``production`` by default) points to.

Endpoints (JSON in, JSON out; errors are ``{"detail": "<message>"}`` with a 4xx status):

``GET /health``
    ``{"status": "ok", "version", "alias", "last_reload_error"}``; 503 while no model is loaded. Never needs a token
    (for load balancers and process supervisors).
``GET /model``
    version, alias, arch, dim, context, metrics, encoder, encoder_dim, data_hash, created_at, loaded_at, max_batch,
    dtype, next_available.
``POST /predict`` ``{"contexts": [[[float] * D] * C] * B}``
    -> ``{"version": N, "vectors": [[float] * D] * B}``: the predicted next-sentence embeddings, unit-normalised.
    The context length must be exactly the model's ``C`` (models are trained on exactly C sentences; pad or
    trim on the client side), every vector must have the model's ``D`` values, every value must be finite.
``POST /next`` ``{"sentences": [str, ...], "k": 5, "exclude_context": true}``
    Encodes the last C sentences with the server's encoder, predicts the next embedding and returns the k
    sentences of the bank (a sentence table in Parquet) with the highest cosine to it:
    ``{"version", "method": "nearest-neighbour", "results": [{"text", "score", "article_id", "position"}]}``.
    This is nearest-neighbour decoding, not text generation: inverting an embedding into new text
    (vec2text) needs the GTR-T5 encoder and its trained inversion models on a GPU, which this server does not
    assume. With ``exclude_context`` (default) the context's own sentences are never returned.

Status codes: 400 malformed JSON or empty body; 401 missing/wrong bearer token (when a token is set);
413 body larger than ``max_body_bytes`` or more than ``max_batch`` contexts; 422 well-formed JSON with wrong
content (missing field, wrong nesting or types, wrong dimension, wrong context length, NaN/Infinity - the
parser accepts the non-standard ``NaN``/``Infinity`` literals only to reject them with a clear message);
503 no model loaded, or /next without a bank/encoder or with one of the wrong dimension.

Hot reload: every request does at most one ``os.stat`` of ``aliases.json`` per ``poll_interval`` (0.5 s). When the
file changed and the alias now names another version, a background thread loads that version completely
(weights, eval mode, one warm-up forward pass) and then replaces a single reference. Requests never wait for a
load and never hold a lock during inference: each request takes the reference once and uses that model to the
end, so requests in flight during a swap finish on the old model and none is dropped. A version that fails to
load leaves the current model serving and is reported in ``/health``.

The body is read by the endpoint itself rather than through a pydantic model, so that its size is capped while
it streams in, NaN/Infinity get a clear 422 and the messages can name the served model's C and D. Parsing is
orjson + numpy (~0.1 ms for one 5x768 context; bodies over 256 KiB are parsed in the thread pool), and responses
are serialised by orjson straight from the numpy array. Inference runs in the thread pool under
``torch.inference_mode``; the other handlers are ``async`` so they cost no thread hop.
"""

from __future__ import annotations

import argparse
import hmac
import json
import logging
import os
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import orjson
import torch
from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from lvm.registry import Registry, RegistryError

log = logging.getLogger("lvm.server")

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000
DEFAULT_MAX_BATCH = 1024
MAX_K = 100
MAX_SENTENCES = 10_000
TOKEN_ENV = "LVM_SERVER_TOKEN"
FORCED_CHECK_S = 5.0
INLINE_PARSE_BYTES = 256 << 10  # bodies up to this size are parsed on the event loop (< ~0.3 ms)


class EncoderLike(Protocol):
    name: str
    dim: int

    def encode(self, texts: list[str]) -> np.ndarray: ...


# ---------------------------------------------------------------------------------------------- model holder
@dataclass(frozen=True)
class LoadedModel:
    version: int
    model: torch.nn.Module
    config: dict
    info: dict  # version.json
    dim: int
    context: int
    dtype: torch.dtype = torch.float32
    autocast: bool = False  # bf16 weights whose forward mixes dtypes (e.g. float32 residual streams)
    loaded_at: float = field(default_factory=time.time)


DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}


def _load_version(registry: Registry, version: int, dtype: torch.dtype = torch.float32) -> LoadedModel:
    from lvm.checkpoint import load_model

    path = registry.get(version)
    model, config = load_model(path)
    model.eval()
    if dtype != torch.float32:
        model.to(dtype)
    info = json.loads((path / "version.json").read_text(encoding="utf-8"))
    dim = int(info.get("dim") or config["dim"])
    context = int(info.get("context") or config["context"])
    autocast = False
    probe = torch.zeros(1, context, dim, dtype=dtype)
    with torch.inference_mode():  # warm-up: the first forward pass allocates and picks kernels
        try:
            out = model(probe)
        except RuntimeError:
            if dtype == torch.float32:
                raise
            autocast = True  # the model casts some activations back to float32: let autocast reconcile them
            with torch.autocast("cpu", dtype=dtype):
                out = model(probe)
    if tuple(out.shape) != (1, dim):
        raise RuntimeError(f"model v{version} maps [1, {context}, {dim}] to {tuple(out.shape)}, expected (1, {dim})")
    return LoadedModel(version=version, model=model, config=config, info=info, dim=dim, context=context,
                       dtype=dtype, autocast=autocast)


class ModelHolder:
    """Holds the model an alias points to and follows the alias (see the module docstring)."""

    def __init__(self, registry: Registry, alias: str = "production", poll_interval: float = 0.5,
                 dtype: torch.dtype = torch.float32):
        self.registry = registry
        self.dtype = dtype
        self.alias = alias
        self.poll_interval = poll_interval
        self.state: LoadedModel | None = None
        self.last_error: str | None = None
        self._signature: tuple | None = None
        self._next_check = 0.0
        self._next_forced = 0.0
        self._loading = threading.Lock()
        self.refresh()

    def _stat_signature(self) -> tuple | None:
        try:
            st = os.stat(self.registry.aliases_path)
        except FileNotFoundError:
            return None
        return (st.st_ino, st.st_mtime_ns, st.st_size)

    def _refresh_locked(self, signature: tuple | None) -> None:
        try:
            version = self.registry.resolve(self.alias)
            current = self.state
            if current is None or current.version != version:
                loaded = _load_version(self.registry, version, self.dtype)
                self.state = loaded  # the swap: one reference assignment
                log.info("serving v%s (%s) for alias %r", version, loaded.info.get("arch"), self.alias)
            self.last_error = None
        except Exception as exc:  # keep serving the current model
            self.last_error = f"{type(exc).__name__}: {exc}"
            log.warning("could not load alias %r: %s", self.alias, self.last_error)
        finally:
            self._signature = signature
            # also re-read the alias now and then even if the stat looks unchanged (coarse mtime clocks)
            self._next_forced = time.monotonic() + FORCED_CHECK_S

    def refresh(self) -> LoadedModel | None:
        """Check the alias now and load its version if it changed (blocks until done)."""
        with self._loading:
            self._refresh_locked(self._stat_signature())
        return self.state

    def _refresh_background(self, signature: tuple | None) -> None:
        try:
            self._refresh_locked(signature)
        finally:
            self._loading.release()

    def maybe_refresh(self) -> None:
        """Cheap per-request check: one stat at most every ``poll_interval``; loads happen in a thread."""
        now = time.monotonic()
        if now < self._next_check:
            return
        self._next_check = now + self.poll_interval
        signature = self._stat_signature()
        if signature == self._signature and now < self._next_forced:
            return
        if self._loading.acquire(blocking=False):
            threading.Thread(target=self._refresh_background, args=(signature,), daemon=True,
                             name="lvm-model-reload").start()

    def current(self) -> LoadedModel:
        self.maybe_refresh()
        state = self.state
        if state is None:
            detail = f"no model loaded for alias {self.alias!r}"
            if self.last_error:
                detail += f": {self.last_error}"
            raise HTTPException(503, detail)
        return state


# ---------------------------------------------------------------------------------------------- sentence bank
@dataclass
class SentenceBank:
    text: np.ndarray  # object [N]
    article_id: np.ndarray  # object [N]
    position: np.ndarray  # int64 [N]
    vectors: np.ndarray  # float32 [N, D], unit norm

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1])

    def __len__(self) -> int:
        return len(self.text)


def load_bank(path: str | os.PathLike[str]) -> SentenceBank:
    """Read a sentence table (Parquet: article_id, position, text, vector fixed_size_list<float32>[D])."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pq.read_table(path, columns=["article_id", "position", "text", "vector"])
    column = table.column("vector").combine_chunks()
    if column.null_count:
        raise ValueError(f"{path}: column 'vector' has {column.null_count} null rows")
    if pa.types.is_fixed_size_list(column.type):
        dim = column.type.list_size
    elif pa.types.is_list(column.type) or pa.types.is_large_list(column.type):
        lengths = np.asarray(column.value_lengths())
        dim = int(lengths[0]) if len(lengths) else 0
        if len(lengths) and (lengths != dim).any():
            raise ValueError(f"{path}: column 'vector' has rows of different lengths")
    else:
        raise ValueError(f"{path}: column 'vector' must be a list of float32, got {column.type}")
    vectors = np.asarray(column.flatten().to_numpy(zero_copy_only=False), dtype=np.float32).reshape(-1, dim)
    if not np.isfinite(vectors).all():
        raise ValueError(f"{path}: column 'vector' has non-finite values")
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    vectors = vectors / np.maximum(norms, 1e-12)
    return SentenceBank(
        text=np.asarray(table.column("text").to_pylist(), dtype=object),
        article_id=np.asarray(table.column("article_id").to_pylist(), dtype=object),
        position=np.asarray(table.column("position").to_numpy(zero_copy_only=False), dtype=np.int64),
        vectors=np.ascontiguousarray(vectors),
    )


# ---------------------------------------------------------------------------------------------- request helpers
def _json_response(data: Any, status_code: int = 200) -> Response:
    return Response(orjson.dumps(data, option=orjson.OPT_SERIALIZE_NUMPY), status_code=status_code,
                    media_type="application/json")


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            declared_n = int(declared)
        except ValueError:
            raise HTTPException(400, f"invalid Content-Length header {declared!r}") from None
        if declared_n > limit:
            raise HTTPException(413, f"request body of {declared_n} bytes exceeds the limit of {limit} bytes")
    chunks = []
    total = 0
    async for chunk in request.stream():
        total += len(chunk)
        if total > limit:
            raise HTTPException(413, f"request body exceeds the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _parse_json(body: bytes) -> Any:
    if not body.strip():
        raise HTTPException(400, "empty request body: expected a JSON object")
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        pass
    # orjson is strict; the standard parser also accepts NaN/Infinity literals, which are then rejected by the
    # finiteness check with a clearer message than a parse error.
    try:
        return json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise HTTPException(400, f"malformed JSON: {exc}") from None


def _require_object(payload: Any, example: str) -> dict:
    if not isinstance(payload, dict):
        raise HTTPException(422, f"request body must be a JSON object like {example}, got {type(payload).__name__}")
    return payload


def _contexts_array(raw: Any, state: LoadedModel, max_batch: int) -> np.ndarray:
    shape_hint = f"[batch][{state.context}][{state.dim}]"
    if raw is None:
        raise HTTPException(422, f"missing field 'contexts': a {shape_hint} array of numbers")
    if not isinstance(raw, list):
        raise HTTPException(422, f"'contexts' must be a {shape_hint} array of numbers, got {type(raw).__name__}")
    if len(raw) == 0:
        raise HTTPException(422, "'contexts' is empty: send at least one context")
    if len(raw) > max_batch:
        raise HTTPException(413, f"batch of {len(raw)} contexts exceeds max_batch={max_batch}; split the request")
    try:
        arr = np.asarray(raw)
    except (ValueError, TypeError):
        raise HTTPException(
            422, f"'contexts' must be a regular {shape_hint} array of numbers (rows of different lengths?)"
        ) from None
    if arr.dtype.kind not in "fiu":
        raise HTTPException(422, f"'contexts' must contain only numbers (found {arr.dtype.kind!r}-kind values)")
    if arr.ndim != 3:
        raise HTTPException(422, f"'contexts' must be a {shape_hint} array, got {arr.ndim} levels of nesting "
                                 f"(shape {list(arr.shape)})")
    if arr.shape[1] != state.context:
        raise HTTPException(422, f"each context must hold exactly {state.context} vectors (the context length of "
                                 f"model v{state.version}), got {arr.shape[1]}")
    if arr.shape[2] != state.dim:
        raise HTTPException(422, f"expected vectors of dimension {state.dim} (model v{state.version}), "
                                 f"got {arr.shape[2]}")
    with np.errstate(over="ignore", invalid="ignore"):
        arr = arr.astype(np.float32, copy=False)
    finite = np.isfinite(arr)
    if not finite.all():
        b, c, d = (int(i) for i in np.argwhere(~finite)[0])
        raise HTTPException(422, f"'contexts' has {int((~finite).sum())} non-finite values (NaN, Infinity or "
                                 f"beyond float32 range), first at contexts[{b}][{c}][{d}]")
    return np.ascontiguousarray(arr)


def _parse_contexts(body: bytes, state: LoadedModel, max_batch: int) -> np.ndarray:
    payload = _require_object(_parse_json(body), '{"contexts": [[[...]]]}')
    return _contexts_array(payload.get("contexts"), state, max_batch)


def _predict(state: LoadedModel, ctx: np.ndarray) -> np.ndarray:
    with torch.inference_mode():
        x = torch.from_numpy(ctx)
        if state.dtype != torch.float32:
            x = x.to(state.dtype)
        if state.autocast:
            with torch.autocast("cpu", dtype=state.dtype):
                out = state.model(x).float()
        else:
            out = state.model(x).float()
        out = torch.nn.functional.normalize(out, dim=-1, eps=1e-12)
    return out.numpy()


# ---------------------------------------------------------------------------------------------- the app
def create_app(
    registry_root: str | os.PathLike[str] | None = None,
    *,
    alias: str = "production",
    token: str | None = None,
    encoder: EncoderLike | None = None,
    bank_path: str | os.PathLike[str] | None = None,
    max_batch: int = DEFAULT_MAX_BATCH,
    max_body_bytes: int | None = None,
    poll_interval: float = 0.5,
    torch_threads: int | None = None,
    dtype: str = "float32",
    onednn: bool | None = None,
) -> FastAPI:
    """Build the FastAPI app.

    ``max_body_bytes=None`` sizes the limit from the loaded model: 32 bytes per float of a full batch
    (``max_batch * C * D``) plus 64 KiB, which a client writing shortest-repr floats stays well under.
    ``torch_threads`` sets torch's intra-op threads for this process (left alone when None).
    ``dtype="bfloat16"`` runs inference in bf16 (about 2x faster on CPUs with AVX-512 bf16, outputs differ from
    float32 at the 1e-2 level); responses are float32 either way.
    ``onednn`` sets ``torch.backends.mkldnn.enabled`` for the whole process (left alone when None). Measured
    here at D=768, one thread: with float32, oneDNN's LSTM takes ~4.9 ms for one context against ~2.8 ms for
    torch's own kernel (it wins from batch ~32 up: 61 vs 127 ms at 256); other architectures do not care. With
    bfloat16 oneDNN is what makes bf16 matmuls fast: keep it on.
    """
    if onednn is not None:
        torch.backends.mkldnn.enabled = bool(onednn)
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
    if torch_threads is not None:
        torch.set_num_threads(max(1, int(torch_threads)))
    registry = Registry(registry_root)
    holder = ModelHolder(registry, alias=alias, poll_interval=poll_interval, dtype=DTYPES[dtype])
    bank = load_bank(bank_path) if bank_path is not None else None
    token_bytes = token.encode() if token else None

    def body_limit(state: LoadedModel | None) -> int:
        if max_body_bytes is not None:
            return int(max_body_bytes)
        if state is None:
            return 1 << 20
        return 32 * max_batch * state.context * state.dim + (64 << 10)

    async def check_token(request: Request) -> None:  # async: a sync dependency costs a thread hop
        if token_bytes is None:
            return
        header = request.headers.get("authorization", "")
        scheme, _, credential = header.partition(" ")
        if scheme.lower() != "bearer" or not credential.strip():
            raise HTTPException(401, "missing bearer token: send 'Authorization: Bearer <token>'",
                                headers={"WWW-Authenticate": "Bearer"})
        if not hmac.compare_digest(credential.strip().encode(), token_bytes):
            raise HTTPException(401, "wrong bearer token", headers={"WWW-Authenticate": "Bearer"})

    app = FastAPI(
        title="LVM server",
        description="Predicts the embedding of the next sentence from the embeddings of the last few sentences.",
        version="1",
    )
    app.state.holder = holder
    app.state.registry = registry
    app.state.bank = bank
    app.state.encoder = encoder
    auth = [Depends(check_token)]

    @app.get("/health")
    async def health() -> Response:
        holder.maybe_refresh()
        state = holder.state
        body = {
            "status": "ok" if state is not None else "no_model",
            "alias": alias,
            "version": state.version if state else None,
            "last_reload_error": holder.last_error,
        }
        return _json_response(body, 200 if state is not None else 503)

    @app.get("/model", dependencies=auth)
    async def model_info() -> Response:
        state = holder.current()
        info = state.info
        return _json_response({
            "version": state.version,
            "alias": alias,
            "arch": info.get("arch"),
            "dim": state.dim,
            "context": state.context,
            "metrics": info.get("metrics") or {},
            "encoder": info.get("encoder"),
            "encoder_dim": info.get("encoder_dim"),
            "data_hash": info.get("data_hash"),
            "created_at": info.get("created_at"),
            "loaded_at": state.loaded_at,
            "max_batch": max_batch,
            "dtype": dtype,
            "next_available": bank is not None and encoder is not None,
        })

    predict_schema = {
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": {
                "type": "object", "required": ["contexts"],
                "properties": {"contexts": {
                    "type": "array", "description": "[batch][context][dim] embeddings",
                    "items": {"type": "array", "items": {"type": "array", "items": {"type": "number"}}}}},
            }}},
        }
    }

    @app.post("/predict", dependencies=auth, openapi_extra=predict_schema)
    async def predict(request: Request) -> Response:
        state = holder.current()
        body = await _read_body(request, body_limit(state))
        if len(body) <= INLINE_PARSE_BYTES:
            ctx = _parse_contexts(body, state, max_batch)
        else:  # a big batch takes tens of ms to parse: keep the event loop free for other requests
            ctx = await run_in_threadpool(_parse_contexts, body, state, max_batch)
        vectors = await run_in_threadpool(_predict, state, ctx)
        return _json_response({"version": state.version, "vectors": vectors})

    next_schema = {
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": {
                "type": "object", "required": ["sentences"],
                "properties": {
                    "sentences": {"type": "array", "items": {"type": "string"},
                                  "description": "the text so far; the last C sentences are used"},
                    "k": {"type": "integer", "default": 5, "minimum": 1, "maximum": MAX_K},
                    "exclude_context": {"type": "boolean", "default": True},
                },
            }}},
        }
    }

    def _next(state: LoadedModel, sentences: list[str], k: int, exclude: bool) -> list[dict]:
        assert bank is not None and encoder is not None
        used = sentences[-state.context:]
        ctx = np.asarray(encoder.encode(used), dtype=np.float32).reshape(1, state.context, -1)
        if ctx.shape[2] != state.dim:
            raise HTTPException(503, f"encoder {encoder.name!r} produced {ctx.shape[2]}-D vectors but model "
                                     f"v{state.version} expects {state.dim}-D")
        pred = _predict(state, ctx)[0]
        scores = bank.vectors @ pred
        if exclude:
            mask = np.isin(bank.text, np.asarray(used, dtype=object))
            scores = np.where(mask, -np.inf, scores)
        k = min(k, int(np.isfinite(scores).sum()))
        if k <= 0:
            return []
        top = np.argpartition(-scores, k - 1)[:k]
        top = top[np.argsort(-scores[top], kind="stable")]
        return [
            {"text": str(bank.text[i]), "score": float(scores[i]), "article_id": str(bank.article_id[i]),
             "position": int(bank.position[i])}
            for i in top
        ]

    @app.post("/next", dependencies=auth, openapi_extra=next_schema)
    async def next_sentences(request: Request) -> Response:
        state = holder.current()
        if bank is None or encoder is None:
            missing = " and ".join(n for n, v in (("sentence bank", bank), ("encoder", encoder)) if v is None)
            raise HTTPException(503, f"/next is not available: the server was started without a {missing} "
                                     "(start it with a bank Parquet file)")
        if bank.dim != state.dim:
            raise HTTPException(503, f"the sentence bank holds {bank.dim}-D vectors but model v{state.version} "
                                     f"expects {state.dim}-D")
        body = await _read_body(request, body_limit(state))
        payload = _require_object(_parse_json(body), '{"sentences": ["...", ...]}')
        sentences = payload.get("sentences")
        if not isinstance(sentences, list) or not all(isinstance(s, str) for s in sentences):
            raise HTTPException(422, "'sentences' must be a list of strings")
        if len(sentences) < state.context:
            raise HTTPException(422, f"need at least {state.context} sentences (the context length of model "
                                     f"v{state.version}), got {len(sentences)}")
        if len(sentences) > MAX_SENTENCES:
            raise HTTPException(413, f"{len(sentences)} sentences exceed the limit of {MAX_SENTENCES}; only the "
                                     f"last {state.context} are used, send those")
        k = payload.get("k", 5)
        if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= MAX_K:
            raise HTTPException(422, f"'k' must be an integer from 1 to {MAX_K}, got {k!r}")
        exclude = payload.get("exclude_context", True)
        if not isinstance(exclude, bool):
            raise HTTPException(422, f"'exclude_context' must be true or false, got {exclude!r}")
        results = await run_in_threadpool(_next, state, sentences, k, exclude)
        return _json_response({"version": state.version, "method": "nearest-neighbour",
                               "encoder": encoder.name, "results": results})

    return app


# ---------------------------------------------------------------------------------------------- running it
def run_server(app: FastAPI, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT, *, log_level: str = "info") -> None:
    """Run ``app`` with uvicorn (one process, asyncio, no access log: it costs ~10% at small requests)."""
    import uvicorn

    uvicorn.run(app, host=host, port=port, log_level=log_level, access_log=False, workers=1, timeout_keep_alive=30)


def serve(
    registry_root: str | os.PathLike[str] | None = None,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    token: str | None = None,
    bank_path: str | os.PathLike[str] | None = None,
    encoder_name: str | None = None,
    *,
    alias: str = "production",
    max_batch: int = DEFAULT_MAX_BATCH,
    torch_threads: int | None = None,
    dtype: str = "float32",
    onednn: bool | None = None,
    log_level: str = "info",
) -> None:
    """Entry point for ``lvm serve``: build the app and run it until interrupted.

    ``token`` falls back to the ``LVM_SERVER_TOKEN`` environment variable (keeps it off the command line).
    With ``bank_path``, /next is enabled with ``encoder_name`` or else the encoder the served model was
    registered with. ``onednn`` defaults to off for float32 (fastest for one context per request, see
    ``create_app``) and on for bfloat16. ``torch_threads`` defaults to half the CPUs (at least 1): requests run side by side in
    the thread pool, and more intra-op threads than free cores makes small forward passes many times slower.
    """
    logging.basicConfig(level=getattr(logging, log_level.upper(), logging.INFO),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    token = token or os.environ.get(TOKEN_ENV) or None
    if token is None and host not in ("127.0.0.1", "localhost", "::1"):
        log.warning("serving on %s without a token: anyone who can reach this address can call the model", host)
    encoder = None
    if bank_path is not None:
        from lvm.encoders import get_encoder

        if encoder_name is None:
            try:
                encoder_name = Registry(registry_root).show(alias).get("encoder")
            except RegistryError:
                encoder_name = None
        encoder = get_encoder(encoder_name)
    if torch_threads is None:
        torch_threads = max(1, (os.cpu_count() or 2) // 2)
    if onednn is None:
        onednn = dtype != "float32"
    app = create_app(registry_root, alias=alias, token=token, encoder=encoder, bank_path=bank_path,
                     max_batch=max_batch, torch_threads=torch_threads, dtype=dtype,
                     onednn=onednn)
    run_server(app, host, port, log_level=log_level)


def main(argv: list[str] | None = None) -> None:
    """``python -m lvm.server``: the same as ``lvm serve`` without the CLI package."""
    parser = argparse.ArgumentParser(prog="python -m lvm.server", description=serve.__doc__)
    parser.add_argument("--registry", default=None, help="registry folder (default: data/registry)")
    parser.add_argument("--host", default=DEFAULT_HOST)
    parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    parser.add_argument("--alias", default="production")
    parser.add_argument("--bank", default=None, help="sentence table Parquet for /next")
    parser.add_argument("--encoder", default=None)
    parser.add_argument("--max-batch", type=int, default=DEFAULT_MAX_BATCH)
    parser.add_argument("--torch-threads", type=int, default=None)
    parser.add_argument("--dtype", default="float32", choices=sorted(DTYPES))
    parser.add_argument("--onednn", choices=["on", "off"], default=None,
                        help="torch oneDNN kernels (default: off for float32, on for bfloat16)")
    parser.add_argument("--log-level", default="info")
    args = parser.parse_args(argv)
    serve(args.registry, args.host, args.port, None, args.bank, args.encoder, alias=args.alias,
          max_batch=args.max_batch, torch_threads=args.torch_threads, dtype=args.dtype,
          onednn=None if args.onednn is None else args.onednn == "on", log_level=args.log_level)


if __name__ == "__main__":
    main()

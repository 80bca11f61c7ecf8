"""The LVM server: serves the model that a registry alias (``production`` by default) points to.

Endpoints (JSON in, JSON out; errors are ``{"detail": "<message>"}`` with a 4xx status):

``GET /health``
    ``{"status", "version", "alias", "alias_version", "last_reload_error"}``; 503 while no model is loaded.
    ``status`` is ``ok`` when the served version is the one the alias points to, ``loading`` while a newly
    promoted version is being loaded, ``degraded`` when the alias points to a version that failed to load (the
    previous model keeps serving, with 200, and ``last_reload_error`` says why). ``alias_version`` is read from
    the registry on every call, so it never lags a poll. Never needs a token (for load balancers and process
    supervisors).
``GET /model``
    version, alias, arch, dim, context, metrics, encoder, encoder_dim, data_hash, created_at, loaded_at, max_batch,
    dtype, next_available.
``POST /predict`` ``{"contexts": [[[float] * D] * C] * B}``
    -> ``{"version": N, "vectors": [[float] * D] * B}``: the predicted next-sentence embeddings, unit-normalised.
    The context length must be exactly the model's ``C`` (models are trained on exactly C sentences; pad or
    trim on the client side), every vector must have the model's ``D`` values, every value must be finite and
    at most ``MAX_ABS_INPUT`` in magnitude (embeddings are near unit norm; values near float32's range overflow
    the model's arithmetic, and silently rescaling them would answer a different question).
``POST /next`` ``{"sentences": [str, ...], "k": 5, "exclude_context": true}``
    Encodes the last C sentences with the server's encoder, predicts the next embedding and returns the k
    sentences of the bank (a sentence table in Parquet) with the highest cosine to it:
    ``{"version", "method": "nearest-neighbour", "results": [{"text", "score", "article_id", "position"}]}``.
    This is nearest-neighbour decoding, not text generation: inverting an embedding into new text
    (vec2text) needs the GTR-T5 encoder and its trained inversion models on a GPU, which this server does not
    assume. With ``exclude_context`` (default) the context's own sentences are never returned. Each of the
    last C sentences (the ones encoded) may have at most ``MAX_SENTENCE_CHARS`` characters (encoders read a few
    hundred tokens at most; longer text only costs CPU).

Status codes: 400 malformed JSON or empty body; 401 missing/wrong bearer token (when a token is set);
408 body not received within ``body_timeout`` seconds (a slow or stalled client does not hold a connection);
413 body larger than ``max_body_bytes``, more than ``max_batch`` contexts, or a /next sentence longer than
``MAX_SENTENCE_CHARS``; 415 a body whose ``Content-Type`` is not ``application/json``; 422 well-formed JSON with
wrong content (missing field, wrong nesting or types, wrong dimension, wrong context length, NaN/Infinity,
values beyond ``MAX_ABS_INPUT`` - the parser accepts the non-standard ``NaN``/``Infinity`` literals only to
reject them with a clear message - or, as a last guard, a context for which the model's output is not finite);
503 no model loaded, or /next without a bank/encoder or with one of the wrong dimension.

Binding to anything but a loopback address needs a token (``--token`` or ``LVM_SERVER_TOKEN``): ``serve``
refuses to start without one unless ``insecure_no_token`` (``--insecure-no-token``) is given.

Hot reload: every request does at most one ``os.stat`` of ``aliases.json`` per ``poll_interval`` (0.5 s). When the
file changed and the alias now names another version, a background thread loads that version completely
(weights, eval mode, one warm-up forward pass) and then replaces a single reference. Requests never wait for a
load and never hold a lock during inference: each request takes the reference once and uses that model to the
end, so requests in flight during a swap finish on the old model and none is dropped. A version that fails to
load leaves the current model serving and is reported in ``/health``. The warm-up also checks the weights
and the outputs for random unit-norm contexts are finite and non-zero, so a model with NaN weights never
replaces a working one.

The body is read by the endpoint itself rather than through a pydantic model, so that its size is capped while
it streams in, NaN/Infinity get a clear 422 and the messages can name the served model's C and D. Parsing is
orjson + numpy (~0.1 ms for one 5x768 context; bodies over 256 KiB are parsed in the thread pool), and responses
are serialised by orjson straight from the numpy array. Inference runs in the thread pool under
``torch.inference_mode``; the other handlers are ``async`` so they cost no thread hop.
"""

from __future__ import annotations

import argparse
import asyncio
import hmac
import json
import logging
import os
import sys
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

from lvm.registry import Registry, RegistryError, UnknownAliasError, check_weights, read_version_info
from lvm.serve_options import DTYPE_NAMES, TOKEN_ENV, check_serve_options, is_loopback

log = logging.getLogger("lvm.server")

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000
DEFAULT_MAX_BATCH = 1024
MAX_K = 100
MAX_SENTENCES = 10_000
FORCED_CHECK_S = 5.0
INLINE_PARSE_BYTES = 256 << 10  # bodies up to this size are parsed on the event loop (< ~0.3 ms)
BODY_TIMEOUT_S = 10.0  # the whole body must arrive within this (a stalled client gets 408)
MAX_ABS_INPUT = 1e6  # |value| limit of /predict inputs: far above any embedding, far below float32 overflow
MAX_SENTENCE_CHARS = 10_000  # per encoded /next sentence
NEXT_MAX_BODY_BYTES = 8 << 20  # /next bodies (text), unless max_body_bytes is set


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
assert tuple(DTYPES) == DTYPE_NAMES


def _load_version(registry: Registry, version: int, dtype: torch.dtype = torch.float32) -> LoadedModel:
    from lvm.models.io import load_model

    path = registry.get(version)
    info = read_version_info(path)
    check_weights(path / "model.safetensors")  # NaN/Infinity weights: refuse before building anything
    model, config = load_model(path)
    model.eval()
    if dtype != torch.float32:
        model.to(dtype)
    dim = int(info.get("dim") or config["dim"])
    context = int(info.get("context") or config["context"])
    autocast = False
    generator = torch.Generator().manual_seed(0)
    probe = torch.randn(2, context, dim, generator=generator)
    probe = torch.nn.functional.normalize(probe, dim=-1).to(dtype)  # what real embeddings look like
    with torch.inference_mode():  # warm-up: the first forward pass allocates and picks kernels
        try:
            out = model(probe)
        except RuntimeError:
            if dtype == torch.float32:
                raise
            autocast = True  # the model casts some activations back to float32: let autocast reconcile them
            with torch.autocast("cpu", dtype=dtype):
                out = model(probe)
    if tuple(out.shape) != (2, dim):
        raise RuntimeError(f"model v{version} maps [2, {context}, {dim}] to {tuple(out.shape)}, expected (2, {dim})")
    out = out.float()
    if not bool(torch.isfinite(out).all()):
        raise RuntimeError(f"model v{version} failed the warm-up check: its output for random unit-norm contexts "
                           "has NaN or Infinity values (non-finite weights or unstable arithmetic)")
    if not bool((out.abs().amax(dim=-1) > 0).all()):
        raise RuntimeError(f"model v{version} failed the warm-up check: its output for random unit-norm contexts "
                           "is all zeros, which cannot be unit-normalised")
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
        self.failed_version: int | None = None  # the alias's version that last failed to load
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
                try:
                    loaded = _load_version(self.registry, version, self.dtype)
                except Exception:
                    self.failed_version = version
                    raise
                self.state = loaded  # the swap: one reference assignment
                log.info("serving v%s (%s) for alias %r", version, loaded.info.get("arch"), self.alias)
            self.last_error = None
            self.failed_version = None
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

    def loading(self) -> bool:
        return self._loading.locked()

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
    """The sentences /next can return: any sentence table `lvm.dataset.read_table` reads (Parquet, a sharded table,
    a seed .npz), validated like training data, vectors unit-normalised for cosine ranking."""
    from lvm.dataset import read_table

    table = read_table(path)
    vectors = table.vectors / np.maximum(np.linalg.norm(table.vectors, axis=1, keepdims=True), 1e-12)
    return SentenceBank(text=np.asarray(table.text, dtype=object), article_id=np.asarray(table.article_id, dtype=object),
                        position=np.asarray(table.position, dtype=np.int64),
                        vectors=np.ascontiguousarray(vectors, dtype=np.float32))


# ---------------------------------------------------------------------------------------------- request helpers
def _json_response(data: Any, status_code: int = 200) -> Response:
    return Response(orjson.dumps(data, option=orjson.OPT_SERIALIZE_NUMPY), status_code=status_code,
                    media_type="application/json")


def _require_json_content(request: Request) -> None:
    content_type = request.headers.get("content-type", "")
    media = content_type.split(";", 1)[0].strip().lower()
    if media != "application/json":
        shown = repr(content_type) if content_type else "none"
        raise HTTPException(415, f"Content-Type must be application/json, got {shown}")


async def _read_body(request: Request, limit: int, timeout: float = BODY_TIMEOUT_S) -> bytes:
    """The body, capped at ``limit`` bytes while it streams in and at ``timeout`` seconds in all."""
    _require_json_content(request)
    try:
        return await asyncio.wait_for(_collect_body(request, limit), timeout)
    except asyncio.TimeoutError:
        raise HTTPException(408, f"request body not received within {timeout:g} s") from None


async def _collect_body(request: Request, limit: int) -> bytes:
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
    huge = np.abs(arr) > MAX_ABS_INPUT
    if huge.any():
        b, c, d = (int(i) for i in np.argwhere(huge)[0])
        raise HTTPException(422, f"'contexts' has {int(huge.sum())} values beyond +-{MAX_ABS_INPUT:g}, first at "
                                 f"contexts[{b}][{c}][{d}] = {float(arr[b, c, d]):g}: values this large overflow "
                                 "float32 arithmetic in the model (sentence embeddings are near unit norm)")
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
        # scale by the largest entry first, so that squaring large outputs cannot overflow to a zero vector
        peak = out.abs().amax(dim=-1, keepdim=True)
        out = torch.nn.functional.normalize(out / peak.clamp_min(1e-30), dim=-1, eps=1e-12)
        bad = ~(torch.isfinite(out).all(dim=-1) & (peak[:, 0] > 0))
    if bool(bad.any()):
        first = int(torch.nonzero(bad)[0, 0])
        raise HTTPException(422, f"model v{state.version} gives no finite, non-zero prediction for "
                                 f"{int(bad.sum())} contexts, first contexts[{first}]: check that the values are "
                                 "embeddings of the model's encoder")
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
    body_timeout: float = BODY_TIMEOUT_S,
) -> FastAPI:
    """Build the FastAPI app.

    ``body_timeout`` bounds the time a request body may take to arrive (408 after it).
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
    bank = load_bank(bank_path) if bank_path is not None else None  # before the model: a bad bank fails fast
    holder = ModelHolder(registry, alias=alias, poll_interval=poll_interval, dtype=DTYPES[dtype])
    token_bytes = token.encode() if token else None

    def body_limit(state: LoadedModel | None) -> int:
        if max_body_bytes is not None:
            return int(max_body_bytes)
        if state is None:
            return 1 << 20
        return 32 * max_batch * state.context * state.dim + (64 << 10)

    def next_body_limit(state: LoadedModel) -> int:
        return int(max_body_bytes) if max_body_bytes is not None else min(body_limit(state), NEXT_MAX_BODY_BYTES)

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
        error = holder.last_error
        try:  # read the alias now: a status that waits for the next poll would lag behind a promotion
            target = registry.resolve(alias)
        except RegistryError as exc:
            target = None
            error = error or f"{type(exc).__name__}: {exc}"
        if state is None:
            status = "no_model"
        elif target == state.version:
            status = "ok"
        elif target is None or (holder.failed_version == target and error is not None):
            status = "degraded"  # the alias names a version that cannot be served: the old model serves
        else:
            status = "loading"  # the alias moved: its version is being loaded (or will be on this poll)
        body = {
            "status": status,
            "alias": alias,
            "version": state.version if state else None,
            "alias_version": target,
            "last_reload_error": error if status != "ok" else None,
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
        body = await _read_body(request, body_limit(state), body_timeout)
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
        body = await _read_body(request, next_body_limit(state), body_timeout)
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
        for i in range(len(sentences) - state.context, len(sentences)):
            if len(sentences[i]) > MAX_SENTENCE_CHARS:
                raise HTTPException(413, f"sentences[{i}] has {len(sentences[i])} characters, more than the limit "
                                         f"of {MAX_SENTENCE_CHARS} for each of the last {state.context} sentences "
                                         "(the ones encoded): send sentences, not documents")
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
    insecure_no_token: bool = False,
) -> None:
    """Entry point for ``lvm serve``: build the app and run it until interrupted.

    ``token`` falls back to the ``LVM_SERVER_TOKEN`` environment variable (keeps it off the command line).
    Without a token only a loopback ``host`` is allowed, unless ``insecure_no_token`` says that an open server
    on a public address is really meant. The options are checked before anything is loaded.
    With ``bank_path``, /next is enabled with ``encoder_name`` or else the encoder the served model was
    registered with. ``onednn`` defaults to off for float32 (fastest for one context per request, see
    ``create_app``) and on for bfloat16. ``torch_threads`` defaults to half the CPUs (at least 1): requests run side by side in
    the thread pool, and more intra-op threads than free cores makes small forward passes many times slower.
    """
    token = token or os.environ.get(TOKEN_ENV) or None
    check_serve_options(host, port, token, dtype=dtype, max_batch=max_batch, torch_threads=torch_threads,
                        log_level=log_level, insecure_no_token=insecure_no_token)
    logging.basicConfig(level=getattr(logging, log_level.upper()),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if token is None and not is_loopback(host):
        log.warning("--insecure-no-token: serving on %s WITHOUT a token: anyone who can reach this address can "
                    "call the model", host)
    try:  # a tampered aliases.json / version.json is an error now, not a server that never loads a model
        served = Registry(registry_root).show(alias)
    except UnknownAliasError:
        served = None  # the alias is not set yet: start, and serve it once it is
    encoder = None
    if bank_path is not None:
        from lvm.encoders import get_encoder

        origin = "--encoder"
        if encoder_name is None:
            encoder_name = served.get("encoder") if served else None
            origin = f"the encoder recorded with the model of alias {alias!r} (choose one with --encoder)"
            if encoder_name is None:
                origin = "the default encoder (the model records none; choose one with --encoder)"
        try:
            encoder = get_encoder(encoder_name)
        except Exception as exc:  # an unknown name, a model not available offline, a bad 'hash:<dim>'
            raise ValueError(f"cannot load encoder {encoder_name!r} ({origin}): {type(exc).__name__}: {exc}") \
                from None
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
    parser.add_argument("--token", default=None, help=f"bearer token (better: set {TOKEN_ENV})")
    parser.add_argument("--insecure-no-token", action="store_true",
                        help="allow a non-loopback --host without a token (anyone who can reach it can call it)")
    args = parser.parse_args(argv)
    from safetensors import SafetensorError

    try:
        serve(args.registry, args.host, args.port, args.token, args.bank, args.encoder, alias=args.alias,
              max_batch=args.max_batch, torch_threads=args.torch_threads, dtype=args.dtype,
              onednn=None if args.onednn is None else args.onednn == "on", log_level=args.log_level,
              insecure_no_token=args.insecure_no_token)
    except (RegistryError, SafetensorError, OSError, ValueError, TypeError, RuntimeError) as exc:
        if os.environ.get("LVM_DEBUG"):
            raise
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()

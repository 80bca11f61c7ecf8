"""The LVM server's app: serves the model that a registry alias (``production`` by default) points to.

Endpoints (JSON in, JSON out; errors are ``{"detail": "<message>"}`` with a 4xx status):

``GET /health``
    ``{"status", "version", "alias", "alias_version", "last_reload_error"}``; 503 while no model is loaded.
    ``status`` is ``ok`` when the served version is the one the alias points to, ``loading`` while a newly
    promoted version is being loaded, ``degraded`` when the alias points to a version that failed to load (the
    previous model keeps serving, with 200, and ``last_reload_error`` says why). ``alias_version`` is read from
    the registry on every call, so it never lags a poll. Never needs a token (load balancers, supervisors).
``GET /model``
    version, alias, arch, dim, context, article, metrics, encoder, encoder_dim, data_hash, created_at, loaded_at,
    max_batch, dtype, next_available.
``POST /predict`` ``{"contexts": [[[float] * D] * C] * B}`` (and, for a model that reads the article so far,
    ``GET /model``'s ``article``, optionally ``"article": [[float] * D] * B``: the mean of every earlier sentence of
    each context's article, context included; left out, the context mean, as if the article began with it)
    -> ``{"version": N, "vectors": [[float] * D] * B}``: the predicted next-sentence embeddings, unit-normalised.
    The context length must be exactly the model's ``C`` (models are trained on exactly C sentences; pad or
    trim on the client side), every vector must have the model's ``D`` values, every value must be finite and
    at most ``MAX_ABS_INPUT`` in magnitude (embeddings are near unit norm; values near float32's range overflow
    the model's arithmetic, and silently rescaling them would answer a different question).
``POST /next`` ``{"sentences": [str, ...], "k": 5, "exclude_context": true}``
    Encodes the last C sentences (all of them for a model that reads the article so far, their mean being that
    article) with the server's encoder, predicts the next embedding and returns the k
    sentences of the bank (a sentence table in Parquet) with the highest cosine to it:
    ``{"version", "method": "nearest-neighbour", "results": [{"text", "score", "article_id", "position"}]}``.
    This is nearest-neighbour decoding, not text generation: inverting an embedding into new text
    (vec2text) needs the GTR-T5 encoder and its trained inversion models on a GPU, which this server does not
    assume. With ``exclude_context`` (default) the sentences the model read (the context; for an article model all
    of them) are never returned. Each sentence encoded (the last C; all for an article model) may have at most
    ``MAX_SENTENCE_CHARS`` characters (encoders read a few hundred tokens at most; longer text only costs CPU).

Status codes: 400 malformed JSON or empty body; 401 missing/wrong bearer token (when a token is set);
408 body not received within ``body_timeout`` seconds (a slow or stalled client does not hold a connection);
413 body larger than ``max_body_bytes``, more than ``max_batch`` contexts, or a /next sentence longer than
``MAX_SENTENCE_CHARS``; 415 a body whose ``Content-Type`` is not ``application/json``; 422 well-formed JSON with
wrong content (missing field, wrong nesting or types, wrong dimension, wrong context length, NaN/Infinity,
values beyond ``MAX_ABS_INPUT`` - the parser accepts the non-standard ``NaN``/``Infinity`` literals only to
reject them with a clear message - or, as a last guard, a context for which the model's output is not finite);
503 no model loaded, or /next without a bank/encoder or with one of the wrong dimension. The limits live in
``lvm.server.requests``, hot reload in ``lvm.server.holder``.

Binding to anything but a loopback address needs a token (``--token`` or ``LVM_SERVER_TOKEN``): ``serve``
refuses to start without one unless ``insecure_no_token`` (``--insecure-no-token``) is given.

Responses are serialised by orjson straight from the numpy array. Inference runs in the thread pool under
``torch.inference_mode``; the other handlers are ``async`` so they cost no thread hop.
"""

from __future__ import annotations

import hmac
import logging
import os
from typing import Any, Protocol

import numpy as np
import orjson
import torch
from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from lvm.server.bank import SentenceBank, load_bank
from lvm.server.holder import DTYPES, LoadedModel, ModelHolder
from lvm.server.options import (
    DEFAULT_HOST,
    DEFAULT_MAX_BATCH,
    DEFAULT_PORT,
    TOKEN_ENV,
    check_serve_options,
    is_loopback,
)
from lvm.server.requests import (
    BODY_TIMEOUT_S,
    MAX_K,
    next_body_limit,
    parse_next,
    predict_body_limit,
    read_body,
    read_contexts,
)
from lvm.store.registry import Registry, RegistryError, UnknownAliasError

log = logging.getLogger("lvm.server")


class EncoderLike(Protocol):
    name: str
    dim: int

    def encode(self, texts: list[str]) -> np.ndarray: ...


def _json_response(data: Any, status_code: int = 200) -> Response:
    return Response(orjson.dumps(data, option=orjson.OPT_SERIALIZE_NUMPY), status_code=status_code,
                    media_type="application/json")


def _predict(state: LoadedModel, ctx: np.ndarray, article: np.ndarray | None = None) -> np.ndarray:
    """Unit predictions for contexts [B, C, D] through the one inference path the evaluation took
    (lvm.evaluation.predictors.predict): a model that reads the article so far gets `article` [B, D], or, when
    the client sent none, the context mean (the context is then the whole article so far). A non-finite or zero
    prediction is refused."""
    from lvm.evaluation.predictors import default_article, predict

    if state.article and article is None:
        article = default_article(ctx)
    out = predict(state.model, ctx, "bf16" if state.autocast else "fp32", article=article if state.article
                  else None, dtype=state.dtype)
    bad = ~np.isfinite(out).all(axis=-1) | ~(out != 0).any(axis=-1)
    if bool(bad.any()):
        first = int(np.flatnonzero(bad)[0])
        raise HTTPException(422, f"model v{state.version} gives no finite, non-zero prediction for "
                                 f"{int(bad.sum())} contexts, first contexts[{first}]: check that the values are "
                                 "embeddings of the model's encoder")
    return out


# ---------------------------------------------------------------------------------------------- the routes
PREDICT_SCHEMA = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": {
            "type": "object", "required": ["contexts"],
            "properties": {"contexts": {
                "type": "array", "description": "[batch][context][dim] embeddings",
                "items": {"type": "array", "items": {"type": "array", "items": {"type": "number"}}}},
                "article": {
                "type": "array", "description": "[batch][dim]: for a model with article=true (GET /model), the "
                "mean of every earlier sentence of each context's article, the context included; default: the "
                "context mean", "items": {"type": "array", "items": {"type": "number"}}}},
        }}},
    }
}

NEXT_SCHEMA = {
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


class _Routes:
    """The endpoints of one app, as methods over what ``create_app`` built (see the module docstring)."""

    def __init__(self, holder: ModelHolder, registry: Registry, alias: str, *, token: str | None,
                 bank: SentenceBank | None, encoder: EncoderLike | None, max_batch: int,
                 max_body_bytes: int | None, body_timeout: float, dtype: str):
        self.holder = holder
        self.registry = registry
        self.alias = alias
        if token is not None and not token.strip():
            raise ValueError("the token is blank: anyone could send it")
        self.token_bytes = token.strip().encode() if token is not None else None
        self.bank = bank
        self.encoder = encoder
        self.max_batch = max_batch
        self.max_body_bytes = max_body_bytes
        self.body_timeout = body_timeout
        self.dtype = dtype

    async def check_token(self, request: Request) -> None:  # async: a sync dependency costs a thread hop
        if self.token_bytes is None:
            return
        header = request.headers.get("authorization", "")
        scheme, _, credential = header.partition(" ")
        if scheme.lower() != "bearer" or not credential.strip():
            raise HTTPException(401, "missing bearer token: send 'Authorization: Bearer <token>'",
                                headers={"WWW-Authenticate": "Bearer"})
        if not hmac.compare_digest(credential.strip().encode(), self.token_bytes):
            raise HTTPException(401, "wrong bearer token", headers={"WWW-Authenticate": "Bearer"})

    async def health(self) -> Response:
        holder = self.holder
        holder.maybe_refresh()
        state = holder.state
        error = holder.last_error
        try:  # read the alias now: a status that waits for the next poll would lag behind a promotion
            target = self.registry.resolve(self.alias)
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
            "alias": self.alias,
            "version": state.version if state else None,
            "alias_version": target,
            "last_reload_error": error if status != "ok" else None,
        }
        return _json_response(body, 200 if state is not None else 503)

    async def model_info(self) -> Response:
        state = self.holder.current()
        info = state.info
        return _json_response({
            "version": state.version,
            "alias": self.alias,
            "arch": info.get("arch"),
            "dim": state.dim,
            "context": state.context,
            "article": state.article,
            "metrics": info.get("metrics") or {},
            "encoder": info.get("encoder"),
            "encoder_dim": info.get("encoder_dim"),
            "data_hash": info.get("data_hash"),
            "created_at": info.get("created_at"),
            "loaded_at": state.loaded_at,
            "max_batch": self.max_batch,
            "dtype": self.dtype,
            "next_available": self.bank is not None and self.encoder is not None,
        })

    async def predict(self, request: Request) -> Response:
        state = self.holder.current()
        limit = predict_body_limit(state, self.max_batch, self.max_body_bytes)
        ctx, article = await read_contexts(request, state, self.max_batch, limit, self.body_timeout)
        vectors = await run_in_threadpool(_predict, state, ctx, article)
        return _json_response({"version": state.version, "vectors": vectors})

    def _next(self, state: LoadedModel, sentences: list[str], k: int, exclude: bool) -> list[dict]:
        bank, encoder = self.bank, self.encoder
        assert bank is not None and encoder is not None
        used = sentences[-state.context:]
        vecs = np.asarray(encoder.encode(sentences if state.article else used), dtype=np.float32)
        vecs = vecs.reshape(len(sentences) if state.article else state.context, -1)
        if vecs.shape[1] != state.dim:
            raise HTTPException(503, f"encoder {encoder.name!r} produced {vecs.shape[1]}-D vectors but model "
                                     f"v{state.version} expects {state.dim}-D")
        ctx = vecs[None, -state.context:]
        article = vecs.mean(0, dtype=np.float64)[None].astype(np.float32) if state.article else None
        pred = _predict(state, ctx, article)[0]
        seen = sentences if state.article else used  # what the model read is never its answer
        return bank.nearest(pred, k, exclude_texts=seen if exclude else ())

    async def next_sentences(self, request: Request) -> Response:
        state = self.holder.current()
        bank, encoder = self.bank, self.encoder
        if bank is None or encoder is None:
            missing = " and ".join(n for n, v in (("sentence bank", bank), ("encoder", encoder)) if v is None)
            raise HTTPException(503, f"/next is not available: the server was started without a {missing} "
                                     "(start it with a bank Parquet file)")
        if bank.dim != state.dim:
            raise HTTPException(503, f"the sentence bank holds {bank.dim}-D vectors but model v{state.version} "
                                     f"expects {state.dim}-D")
        limit = next_body_limit(state, self.max_batch, self.max_body_bytes)
        body = await read_body(request, limit, self.body_timeout)
        sentences, k, exclude = parse_next(body, state)
        results = await run_in_threadpool(self._next, state, sentences, k, exclude)
        return _json_response({"version": state.version, "method": "nearest-neighbour",
                               "encoder": encoder.name, "results": results})


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
    ``max_body_bytes=None`` sizes the limit from the loaded model (``lvm.server.requests.predict_body_limit``).
    ``torch_threads`` sets torch's intra-op threads for this process (left alone when None).
    ``dtype="bfloat16"`` runs inference in bf16 (faster on CPUs with AVX-512 bf16; outputs differ from float32
    at the 1e-2 level); responses are float32 either way.
    ``onednn`` sets ``torch.backends.mkldnn.enabled`` for the whole process (left alone when None). With float32,
    oneDNN's LSTM is slower than torch's own kernel for one context and wins only at large batches (see
    BENCHMARKS.md); other architectures do not care. With bfloat16 oneDNN is what makes bf16 matmuls fast: keep
    it on.
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
    routes = _Routes(holder, registry, alias, token=token, bank=bank, encoder=encoder, max_batch=max_batch,
                     max_body_bytes=max_body_bytes, body_timeout=body_timeout, dtype=dtype)

    public = {} if token is None else {"docs_url": None, "redoc_url": None, "openapi_url": None}
    app = FastAPI(title="LVM server", version="1", **public,  # with a token, no API pages: the one open door
                  description="Predicts the embedding of the next sentence from the embeddings of the last few.")
    app.state.holder = holder
    app.state.registry = registry
    app.state.bank = bank
    app.state.encoder = encoder
    auth = [Depends(routes.check_token)]
    app.get("/health")(routes.health)
    app.get("/model", dependencies=auth)(routes.model_info)
    app.post("/predict", dependencies=auth, openapi_extra=PREDICT_SCHEMA)(routes.predict)
    app.post("/next", dependencies=auth, openapi_extra=NEXT_SCHEMA)(routes.next_sentences)
    return app


# ---------------------------------------------------------------------------------------------- running it
def run_server(app: FastAPI, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT, *, log_level: str = "info") -> None:
    """Run ``app`` with uvicorn (one process, asyncio, no access log: it slows small requests, see BENCHMARKS.md)."""
    import uvicorn

    uvicorn.run(app, host=host, port=port, log_level=log_level, access_log=False, workers=1, timeout_keep_alive=30)


def _encoder_for_bank(encoder_name: str | None, served: dict | None, alias: str) -> EncoderLike:
    """The /next encoder: ``encoder_name``, else the one recorded with the served model, else the default one."""
    from lvm.ingest.encoders import get_encoder

    origin = "--encoder"
    if encoder_name is None:
        encoder_name = served.get("encoder") if served else None
        origin = f"the encoder recorded with the model of alias {alias!r} (choose one with --encoder)"
        if encoder_name is None:
            origin = "the default encoder (the model records none; choose one with --encoder)"
    try:
        return get_encoder(encoder_name)
    except Exception as exc:  # an unknown name, a model not available offline, a bad 'hash:<dim>'
        raise ValueError(f"cannot load encoder {encoder_name!r} ({origin}): {type(exc).__name__}: {exc}") \
            from None


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
    ``create_app``) and on for bfloat16. ``torch_threads`` defaults to half the CPUs (at least 1): requests run
    side by side in the thread pool, and more intra-op threads than free cores makes small forward passes many
    times slower.
    """
    token = token if token is not None else (os.environ.get(TOKEN_ENV) or None)
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
    encoder = _encoder_for_bank(encoder_name, served, alias) if bank_path is not None else None
    if torch_threads is None:
        torch_threads = max(1, (os.cpu_count() or 2) // 2)
    if onednn is None:
        onednn = dtype != "float32"
    app = create_app(registry_root, alias=alias, token=token, encoder=encoder, bank_path=bank_path,
                     max_batch=max_batch, torch_threads=torch_threads, dtype=dtype,
                     onednn=onednn)
    run_server(app, host, port, log_level=log_level)

"""Reading and checking request bodies: size and time limits, JSON parsing, /predict contexts, /next fields.

The body is read by the endpoint itself rather than through a pydantic model, so that its size is capped while
it streams in, NaN/Infinity get a clear 422 and the messages can name the served model's C and D. Parsing is
orjson + numpy; bodies over ``INLINE_PARSE_BYTES`` are parsed in the thread pool so that a big batch does not hold
up the event loop.
"""

from __future__ import annotations

import asyncio
import json
from typing import TYPE_CHECKING, Any

import numpy as np
import orjson
from fastapi import HTTPException, Request
from starlette.concurrency import run_in_threadpool

if TYPE_CHECKING:
    from lvm.server.holder import LoadedModel

MAX_K = 100
MAX_SENTENCES = 10_000
INLINE_PARSE_BYTES = 256 << 10  # bodies up to this size are parsed on the event loop (fast enough not to block it)
BODY_TIMEOUT_S = 10.0  # the whole body must arrive within this (a stalled client gets 408)
MAX_ABS_INPUT = 1e6  # |value| limit of /predict inputs: far above any embedding, far below float32 overflow
MAX_SENTENCE_CHARS = 10_000  # per encoded /next sentence
NEXT_MAX_BODY_BYTES = 8 << 20  # /next bodies (text), unless max_body_bytes is set


# ---------------------------------------------------------------------------------------------- limits
def predict_body_limit(state: LoadedModel, max_batch: int, max_body_bytes: int | None) -> int:
    """``max_body_bytes``, or else 32 bytes per float of a full batch (``max_batch * C * D``, one more row per context
    for a model that reads the article so far) plus 64 KiB, which a client writing shortest-repr floats stays well
    under."""
    if max_body_bytes is not None:
        return int(max_body_bytes)
    return 32 * max_batch * (state.context + int(state.article)) * state.dim + (64 << 10)


def next_body_limit(state: LoadedModel, max_batch: int, max_body_bytes: int | None) -> int:
    """/next bodies carry text, not a batch: the /predict limit, capped at ``NEXT_MAX_BODY_BYTES``."""
    if max_body_bytes is not None:
        return int(max_body_bytes)
    return min(predict_body_limit(state, max_batch, None), NEXT_MAX_BODY_BYTES)


# ---------------------------------------------------------------------------------------------- the body
def _require_json_content(request: Request) -> None:
    content_type = request.headers.get("content-type", "")
    media = content_type.split(";", 1)[0].strip().lower()
    if media != "application/json":
        shown = repr(content_type) if content_type else "none"
        raise HTTPException(415, f"Content-Type must be application/json, got {shown}")


async def read_body(request: Request, limit: int, timeout: float = BODY_TIMEOUT_S) -> bytes:
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


def parse_json(body: bytes) -> Any:
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


# ---------------------------------------------------------------------------------------------- /predict
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
    return _finite_float32(arr)


def _finite_float32(arr: np.ndarray, field: str = "contexts") -> np.ndarray:
    """``arr`` as float32, refused unless every value is finite and within ``MAX_ABS_INPUT``."""
    with np.errstate(over="ignore", invalid="ignore"):
        arr = arr.astype(np.float32, copy=False)
    finite = np.isfinite(arr)
    if not finite.all():
        at = "".join(f"[{int(i)}]" for i in np.argwhere(~finite)[0])
        raise HTTPException(422, f"'{field}' has {int((~finite).sum())} non-finite values (NaN, Infinity or "
                                 f"beyond float32 range), first at {field}{at}")
    huge = np.abs(arr) > MAX_ABS_INPUT
    if huge.any():
        first = tuple(int(i) for i in np.argwhere(huge)[0])
        at = "".join(f"[{i}]" for i in first)
        raise HTTPException(422, f"'{field}' has {int(huge.sum())} values beyond +-{MAX_ABS_INPUT:g}, first at "
                                 f"{field}{at} = {float(arr[first]):g}: values this large overflow "
                                 "float32 arithmetic in the model (sentence embeddings are near unit norm)")
    return np.ascontiguousarray(arr)


def _article_array(raw: Any, state: LoadedModel, batch: int) -> np.ndarray | None:
    """The optional 'article' field: [batch][dim], the mean of every earlier sentence of each context's article
    (the context included), for a model that reads it; None when absent."""
    if raw is None:
        return None
    if not state.article:
        raise HTTPException(422, f"model v{state.version} does not read the article so far: leave out 'article'")
    shape_hint = f"[{batch}][{state.dim}]"
    try:
        arr = np.asarray(raw) if isinstance(raw, list) else None
    except (ValueError, TypeError):
        arr = None
    if arr is None or arr.dtype.kind not in "fiu" or arr.shape != (batch, state.dim):
        got = f"shape {list(arr.shape)}" if arr is not None and arr.dtype.kind in "fiu" else "something else"
        raise HTTPException(422, f"'article' must be a {shape_hint} array of numbers (one mean vector per "
                                 f"context), got {got}")
    return _finite_float32(arr, "article")


def parse_contexts(body: bytes, state: LoadedModel, max_batch: int) -> tuple[np.ndarray, np.ndarray | None]:
    """A /predict body as (float32 [B, C, D] contexts, float32 [B, D] article or None) for ``state``'s model, or
    an HTTPException saying what is wrong."""
    payload = _require_object(parse_json(body), '{"contexts": [[[...]]]}')
    if b"true" in body or b"false" in body:  # numpy reads a true among numbers as 1.0: find it (rare, so slow is fine)
        for field in ("contexts", "article"):
            at = _first_bool(payload.get(field))
            if at is not None:
                raise HTTPException(422, f"'{field}' must contain only numbers, found a boolean at {field}{at}")
    ctx = _contexts_array(payload.get("contexts"), state, max_batch)
    return ctx, _article_array(payload.get("article"), state, len(ctx))


def _first_bool(raw: Any, at: str = "") -> str | None:
    """The index path ("[0][2][7]") of the first true/false in nested lists, or None."""
    if isinstance(raw, bool):
        return at
    if isinstance(raw, list):
        for i, v in enumerate(raw):
            found = _first_bool(v, f"{at}[{i}]")
            if found is not None:
                return found
    return None


async def read_contexts(request: Request, state: LoadedModel, max_batch: int, limit: int,
                        timeout: float = BODY_TIMEOUT_S) -> tuple[np.ndarray, np.ndarray | None]:
    """Read and parse a /predict body; a big one is parsed in the thread pool, off the event loop."""
    body = await read_body(request, limit, timeout)
    if len(body) <= INLINE_PARSE_BYTES:
        return parse_contexts(body, state, max_batch)
    return await run_in_threadpool(parse_contexts, body, state, max_batch)


# ---------------------------------------------------------------------------------------------- /next
def parse_next(body: bytes, state: LoadedModel) -> tuple[list[str], int, bool]:
    """A /next body as ``(sentences, k, exclude_context)``, or an HTTPException saying what is wrong."""
    payload = _require_object(parse_json(body), '{"sentences": ["...", ...]}')
    sentences = payload.get("sentences")
    if not isinstance(sentences, list) or not all(isinstance(s, str) for s in sentences):
        raise HTTPException(422, "'sentences' must be a list of strings")
    if len(sentences) < state.context:
        raise HTTPException(422, f"need at least {state.context} sentences (the context length of model "
                                 f"v{state.version}), got {len(sentences)}")
    if len(sentences) > MAX_SENTENCES:
        tip = ("send the latest ones" if state.article else
               f"only the last {state.context} are used, send those")
        raise HTTPException(413, f"{len(sentences)} sentences exceed the limit of {MAX_SENTENCES}; {tip}")
    encoded = 0 if state.article else len(sentences) - state.context  # an article model encodes them all
    for i in range(encoded, len(sentences)):
        if len(sentences[i]) > MAX_SENTENCE_CHARS:
            which = "sentence" if state.article else f"of the last {state.context} sentences (the ones encoded)"
            raise HTTPException(413, f"sentences[{i}] has {len(sentences[i])} characters, more than the limit "
                                     f"of {MAX_SENTENCE_CHARS} for each {which}: send sentences, not documents")
    k = payload.get("k", 5)
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= MAX_K:
        raise HTTPException(422, f"'k' must be an integer from 1 to {MAX_K}, got {k!r}")
    exclude = payload.get("exclude_context", True)
    if not isinstance(exclude, bool):
        raise HTTPException(422, f"'exclude_context' must be true or false, got {exclude!r}")
    return sentences, k, exclude

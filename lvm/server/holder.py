"""The served model and its hot reload: a holder that follows a registry alias.

Every request does at most one ``os.stat`` of ``aliases.json`` per ``poll_interval``. When the file changed and the
alias now names another version, a background thread loads that version completely (weights, eval mode, one
warm-up forward pass) and then replaces a single reference. Requests never wait for a load and never hold a lock
during inference: each request takes the reference once and uses that model to the end, so requests in flight
during a swap finish on the old model and none is dropped. A version that fails to load leaves the current model
serving and is reported in ``/health``. The warm-up also checks that the weights and the outputs for random
unit-norm contexts are finite and non-zero, so a model with NaN weights never replaces a working one.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass, field

import torch
from fastapi import HTTPException

from lvm.server.options import DTYPE_NAMES
from lvm.store.registry import Registry, check_weights, read_version_info

log = logging.getLogger("lvm.server")

FORCED_CHECK_S = 5.0


@dataclass(frozen=True)
class LoadedModel:
    version: int
    model: torch.nn.Module
    config: dict
    info: dict  # version.json
    dim: int
    context: int
    article: bool = False  # the model also reads the article so far (lvm.models.base)
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
    article = bool(getattr(model, "article", False))
    args = (probe, probe.mean(dim=1)) if article else (probe,)
    with torch.inference_mode():  # warm-up: the first forward pass allocates and picks kernels
        try:
            out = model(*args)
        except RuntimeError:
            if dtype == torch.float32:
                raise
            autocast = True  # the model casts some activations back to float32: let autocast reconcile them
            with torch.autocast("cpu", dtype=dtype):
                out = model(*args)
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
                       article=article, dtype=dtype, autocast=autocast)


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

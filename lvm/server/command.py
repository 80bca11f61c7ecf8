"""`lvm serve` (and ``python -m lvm.server``): the options, checked before torch loads, then the server."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Literal, Optional

import typer

from lvm.server.options import DEFAULT_HOST, DEFAULT_MAX_BATCH, DEFAULT_PORT


def _on_off(value: Optional[str], option: str) -> Optional[bool]:
    if value is None:
        return None
    if value.lower() not in ("on", "off"):
        raise ValueError(f"{option} must be on or off, got {value!r}")
    return value.lower() == "on"


def serve(
    root: Optional[Path] = typer.Option(None, "--root", "--registry", help="Registry folder (default: data/registry)."),
    model: Optional[Path] = typer.Option(None, "--model", help="Serve this trained model folder instead (from `lvm "
                                                              "train`; no registry needed)."),
    host: str = typer.Option(DEFAULT_HOST, help="Bind address (a token is required for anything but loopback)."),
    port: int = typer.Option(DEFAULT_PORT),
    token: Optional[str] = typer.Option(None, help="Bearer token (or set LVM_SERVER_TOKEN)."),
    bank: Optional[Path] = typer.Option(None, help="Sentence table whose sentences /next can return."),
    encoder: Optional[str] = typer.Option(None, help="Encoder for /next (default: the model's own)."),
    alias: str = typer.Option("production", help="Alias to follow."),
    dtype: Literal["float32", "bfloat16"] = typer.Option("float32", help="bfloat16 is faster on CPUs with AVX-512 "
                                                                         "bf16."),
    max_batch: int = typer.Option(DEFAULT_MAX_BATCH, help="Most contexts in one /predict request."),
    torch_threads: Optional[int] = typer.Option(None, help="Torch intra-op threads.",
                                                show_default="half the CPUs"),
    onednn: Optional[str] = typer.Option(None, help="Torch oneDNN kernels: on or off.",
                                         show_default="off for float32, on for bfloat16"),
    log_level: str = typer.Option("info", help="debug, info, warning, error or critical."),
    insecure_no_token: bool = typer.Option(False, "--insecure-no-token",
                                           help="Allow a non-loopback --host without a token (anyone who can "
                                                "reach it can call the model)."),
):
    """Run the LVM server: /health, /model, /predict, /next (nearest-neighbour decoding); follows `production`."""
    from lvm.server.options import TOKEN_ENV, check_serve_options
    from lvm.util.paths import registry_dir

    # before `import lvm.server.app` (torch): a refused start-up takes well under a second
    check_serve_options(host, port, token if token is not None else (os.environ.get(TOKEN_ENV) or None),
                        dtype=dtype, max_batch=max_batch,
                        torch_threads=torch_threads, log_level=log_level, insecure_no_token=insecure_no_token)
    use_onednn = _on_off(onednn, "--onednn")
    if model is not None and root is not None:
        raise ValueError("--model serves one folder, --root a registry: give one of them")
    if model is not None and not (model / "config.json").is_file():
        raise FileNotFoundError(f"{model}: not a model folder (no config.json); train one with `lvm train`")
    from lvm.server.app import serve as run

    with _served_folder(model) as one:
        run(one or root or registry_dir(), host, port, token, bank, encoder, alias="production" if one else alias,
            max_batch=max_batch, torch_threads=torch_threads, dtype=dtype, onednn=use_onednn, log_level=log_level,
            insecure_no_token=insecure_no_token)


@contextlib.contextmanager
def _served_folder(model: Optional[Path]):
    """For --model: a throw-away registry holding that folder as `production` (the server's one way to load a
    model: the same checks, warm-up and /model answers), removed when the server stops."""
    if model is None:
        yield None
        return
    from lvm.store.by_hand import register_model_folder
    from lvm.store.registry import Registry

    tmp = Path(tempfile.mkdtemp(prefix="lvm-serve-"))
    try:
        register_model_folder(Registry(tmp), model, alias="production")
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

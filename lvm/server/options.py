"""The server's defaults and the checks of ``lvm serve``'s options, importable without torch so that a refused
start-up is quick.

``lvm serve`` (which ``python -m lvm.server`` runs) calls ``check_serve_options`` before anything is loaded: a bad
port or dtype, or a public address without a token, is a ValueError that names the flag.
"""

from __future__ import annotations

import ipaddress
import logging

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000
DEFAULT_MAX_BATCH = 1024
TOKEN_ENV = "LVM_SERVER_TOKEN"
DTYPE_NAMES = ("float32", "bfloat16")  # the keys of lvm.server.holder.DTYPES
LOOPBACK_NAMES = ("localhost",)


def is_loopback(host: str) -> bool:
    """True for addresses only this machine can reach (127.0.0.0/8, ::1, localhost)."""
    if host.strip().lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip().strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to a public address


def check_serve_options(host: str, port: int, token: str | None, *, dtype: str = "float32",
                        max_batch: int = DEFAULT_MAX_BATCH, torch_threads: int | None = None,
                        log_level: str = "info", insecure_no_token: bool = False) -> None:
    """Refuse bad ``serve`` options with a ValueError naming the flag, before any model or bank is loaded."""
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise ValueError(f"--port must be a TCP port from 0 to 65535, got {port!r}")
    if dtype not in DTYPE_NAMES:
        raise ValueError(f"--dtype must be one of {', '.join(DTYPE_NAMES)}, got {dtype!r}")
    if isinstance(max_batch, bool) or not isinstance(max_batch, int) or max_batch < 1:
        raise ValueError(f"--max-batch must be a positive integer, got {max_batch!r}")
    if torch_threads is not None and (not isinstance(torch_threads, int) or torch_threads < 1):
        raise ValueError(f"--torch-threads must be a positive integer, got {torch_threads!r}")
    if not isinstance(getattr(logging, str(log_level).upper(), None), int):
        raise ValueError(f"--log-level must be one of debug, info, warning, error, critical, got {log_level!r}")
    if not host or not isinstance(host, str):
        raise ValueError(f"--host must be an address, got {host!r}")
    if token is not None and not token.strip():
        raise ValueError("--token is blank (rule: a token has at least one non-space character): anyone could send "
                         f"it. Pass a real token (or set {TOKEN_ENV}), or leave it out on a loopback address")
    if token is None and not is_loopback(host) and not insecure_no_token:
        raise ValueError(f"refusing to serve on {host} without a token: anyone who can reach it could call the "
                         f"model. Pass --token (or set {TOKEN_ENV}), bind to 127.0.0.1, or pass "
                         "--insecure-no-token to serve without one anyway")

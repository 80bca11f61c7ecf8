"""``python -m lvm.server``: the same as ``lvm serve`` without the CLI package."""

from __future__ import annotations

import argparse
import os
import sys

from lvm.registry import RegistryError
from lvm.server.app import serve
from lvm.server.holder import DTYPES
from lvm.server.options import DEFAULT_HOST, DEFAULT_MAX_BATCH, DEFAULT_PORT, TOKEN_ENV


def main(argv: list[str] | None = None) -> None:
    """Parse the options and run the server."""
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

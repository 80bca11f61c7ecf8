"""Loaded by every Python process of the offline test (PYTHONPATH): any name resolution that is not the loopback
is recorded in $LVM_OFFLINE_LOG and refused, as on a machine with no network."""

import os
import socket

_real = socket.getaddrinfo
_LOOPBACK = {"localhost", "127.0.0.1", "::1", "0.0.0.0", "", None}


def _guarded(host, *args, **kwargs):
    name = host.decode() if isinstance(host, bytes) else host
    if name not in _LOOPBACK and not str(name).startswith("127."):
        with open(os.environ["LVM_OFFLINE_LOG"], "a") as f:
            f.write(f"{os.getpid()} {name}\n")
        raise socket.gaierror(socket.EAI_NONAME, f"offline test: no name resolution for {name!r}")
    return _real(host, *args, **kwargs)


socket.getaddrinfo = _guarded

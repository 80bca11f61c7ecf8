"""Load test of the LVM server: a real uvicorn process on 127.0.0.1, concurrent keep-alive clients, hot swaps.

It builds untrained seed-size models (weights are random: the server's cost does not depend on them), registers
three versions in a temporary registry, starts ``python -m lvm.server`` on a free port, and runs ``--clients``
threads that each POST one C x D context to /predict in a loop for ``--seconds``. Meanwhile another thread
promotes v2 and then v3 (at 1/3 and 2/3 of the run). Latency is measured per request on the client (send +
full response), after ``--warmup`` seconds that are not counted.

Prints a markdown table; exits 1 if any request failed or the last promotion was never served.

    .venv/bin/python bench/serve_load.py                       # lstm seed (D=768, C=5), 2 clients, 20 s
    .venv/bin/python bench/serve_load.py --arch transformer --clients 4 --seconds 30 --dtype bfloat16
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import orjson

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.machine import describe_machine  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def build_registry(root: Path, arch: str, dim: int, context: int, versions: int) -> None:
    import torch

    from lvm.models import build_model
    from lvm.models.io import save_model
    from lvm.store.registry import Registry

    reg = Registry(root / "registry")
    for seed in range(versions):
        torch.manual_seed(seed)
        model = build_model(arch, dim, context=context)
        folder = root / f"model{seed}"
        config = {"arch": arch, "dim": dim, "context": context, "residual": False,
                  "model": dict(getattr(model, "hparams", {})), "seed": seed}
        save_model(folder, model, config)
        (folder / "metrics.json").write_text(json.dumps({"note": "untrained, for load testing"}))
        reg.register(folder, data_hash=None, encoder="bench", encoder_dim=dim,
                     alias="production" if seed == 0 else None)


def percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    return sorted_values[min(len(sorted_values) - 1, int(round(q / 100 * (len(sorted_values) - 1))))]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--arch", default="lstm", help="seed architecture to serve (default lstm)")
    ap.add_argument("--dim", type=int, default=768)
    ap.add_argument("--context", type=int, default=5)
    ap.add_argument("--clients", type=int, default=2, help="concurrent client threads (keep-alive)")
    ap.add_argument("--seconds", type=float, default=20.0, help="measured duration")
    ap.add_argument("--warmup", type=float, default=2.0, help="unmeasured seconds before")
    ap.add_argument("--torch-threads", type=int, default=None, help="server's torch threads (server default)")
    ap.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"], help="server inference dtype")
    ap.add_argument("--promotions", type=int, default=2)
    ap.add_argument("--json", default=None, help="also write the results to this JSON file")
    args = ap.parse_args(argv)
    print(describe_machine(), flush=True)

    tmp = Path(tempfile.mkdtemp(prefix="lvm-serve-load-"))
    try:
        return run(args, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def run(args: argparse.Namespace, tmp: Path) -> int:
    t0 = time.perf_counter()
    build_registry(tmp, args.arch, args.dim, args.context, versions=1 + args.promotions)
    print(f"built {1 + args.promotions} {args.arch} versions in {time.perf_counter() - t0:.1f} s", file=sys.stderr)

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    cmd = [sys.executable, "-m", "lvm.server", "--registry", str(tmp / "registry"), "--port", str(port),
           "--log-level", "warning", "--dtype", args.dtype]
    if args.torch_threads is not None:
        cmd += ["--torch-threads", str(args.torch_threads)]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in [str(ROOT), os.environ.get("PYTHONPATH")] if p)}
    server = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 120
        while True:
            if server.poll() is not None:
                print(server.stdout.read(), file=sys.stderr)
                raise SystemExit("server exited before becoming healthy")
            try:
                if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit("server not healthy after 120 s")
            time.sleep(0.1)

        rng = np.random.default_rng(0)
        ctx = rng.normal(size=(1, args.context, args.dim)).astype(np.float32)
        ctx /= np.linalg.norm(ctx, axis=-1, keepdims=True)
        body = orjson.dumps({"contexts": ctx.tolist()})  # serialised once: measure the server, not the client
        headers = {"content-type": "application/json"}

        from lvm.store.registry import Registry

        reg = Registry(tmp / "registry")
        start = time.monotonic() + args.warmup
        end = start + args.seconds
        latencies: list[list[float]] = [[] for _ in range(args.clients)]
        failures: list[str] = []
        versions_seen: dict[int, int] = {}
        lock = threading.Lock()
        promoted: list[tuple[float, int]] = []

        def client(i: int) -> None:
            with httpx.Client(base_url=base, timeout=30) as c:
                while True:
                    now = time.monotonic()
                    if now >= end:
                        return
                    t = time.perf_counter()
                    try:
                        r = c.post("/predict", content=body, headers=headers)
                        content = r.content
                        dt = time.perf_counter() - t
                        ok = r.status_code == 200
                        if ok:
                            out = orjson.loads(content)
                            ok = len(out["vectors"]) == 1 and len(out["vectors"][0]) == args.dim
                    except Exception as exc:  # a dropped connection is a failure too
                        ok, dt, out, r = False, time.perf_counter() - t, None, exc
                    if now < start:
                        continue
                    if not ok:
                        with lock:
                            failures.append(repr(r)[:200])
                        continue
                    latencies[i].append(dt)
                    with lock:
                        versions_seen[out["version"]] = versions_seen.get(out["version"], 0) + 1

        def promoter() -> None:
            for n in range(args.promotions):
                when = start + args.seconds * (n + 1) / (args.promotions + 1)
                time.sleep(max(0.0, when - time.monotonic()))
                version = n + 2
                reg.promote(version)
                promoted.append((time.monotonic() - start, version))

        threads = [threading.Thread(target=client, args=(i,)) for i in range(args.clients)]
        threads.append(threading.Thread(target=promoter))
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        final = httpx.get(f"{base}/health", timeout=5).json()
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()

    lat = sorted(x * 1e3 for per in latencies for x in per)
    n_ok = len(lat)
    result = {
        "arch": args.arch, "dim": args.dim, "context": args.context, "clients": args.clients,
        "seconds": args.seconds, "dtype": args.dtype, "torch_threads": args.torch_threads,
        "requests": n_ok + len(failures), "failures": len(failures),
        "p50_ms": percentile(lat, 50), "p90_ms": percentile(lat, 90), "p99_ms": percentile(lat, 99),
        "max_ms": lat[-1] if lat else float("nan"), "throughput_rps": n_ok / args.seconds,
        "versions_seen": dict(sorted(versions_seen.items())), "promotions_at_s": promoted,
        "final_version": final.get("version"), "cpus": os.cpu_count(), "python": platform.python_version(),
    }
    print("\n| arch | D×C | clients | dtype | requests | failures | p50 ms | p90 ms | p99 ms | max ms | req/s |"
          " versions served (requests) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    seen = ", ".join(f"v{v}: {n}" for v, n in result["versions_seen"].items())
    print(f"| {args.arch} | {args.dim}×{args.context} | {args.clients} | {args.dtype} | {result['requests']} | "
          f"{result['failures']} | {result['p50_ms']:.2f} | {result['p90_ms']:.2f} | {result['p99_ms']:.2f} | "
          f"{result['max_ms']:.1f} | {result['throughput_rps']:.0f} | {seen} |")
    print(f"\npromotions (s after start, version): {promoted}; final served version: v{result['final_version']}")
    if failures:
        print("first failures:", *failures[:5], sep="\n  ")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    expected_final = 1 + args.promotions
    if failures or result["final_version"] != expected_final or expected_final not in versions_seen:
        print(f"FAIL: {len(failures)} failed requests; final version v{result['final_version']} "
              f"(expected v{expected_final})", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Memory of a 1M-sentence × 768-D table: sharded on disk, vectors memory-mapped for training.

    .venv/bin/python bench/memory_1m.py [--rows 1000000] [--dim 768] [--batches 300] [--dir /tmp]

1. generates random unit vectors with article structure (20-200 sentences per article) and streams them into
   Parquet shards with lvm.data.shards.ShardWriter (one shard's rows in memory at a time, never the whole table);
2. validates the shards (streamed, lvm.data.shards.validate_shards);
3. materialises the memory-mapped vector matrix (lvm.data.shards.materialize_vectors: shard by shard into one .npy);
4. opens the table (lvm.data.shards.open_sharded: ids/positions/texts in memory, vectors mapped);
5. trains the seed-size lstm for --batches batches of 256 with lvm.train.trainer.fit, which gathers every batch from the
   mapping (`V[t[:, None] + arange(-C, 0)]` on a tensor that shares the mapping's memory).

A sampler thread reads /proc/self/status every 20 ms (RssAnon: memory the process owns; RssFile: pages of mapped
files that are resident, i.e. page cache shared with the kernel, clean and reclaimable under pressure), and
each phase also reports ru_maxrss / VmHWM (peak RSS of both kinds together). The shards and the .npy are written
under a temporary folder in --dir and deleted at the end.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.machine import describe_machine  # noqa: E402

GB = 1e9


def status() -> dict[str, int]:
    """Current memory counters of this process in bytes (from /proc/self/status)."""
    out = {}
    with open("/proc/self/status") as f:
        for line in f:
            key, _, val = line.partition(":")
            if key in ("VmRSS", "VmHWM", "RssAnon", "RssFile", "RssShmem"):
                out[key] = int(val.split()[0]) * 1024
    return out


def smaps_rollup() -> dict[str, int]:
    out = {}
    with open("/proc/self/smaps_rollup") as f:
        for line in f:
            parts = line.split()
            if len(parts) == 3 and parts[2] == "kB":
                out[parts[0].rstrip(":")] = int(parts[1]) * 1024
    return out


class Sampler:
    """Peak RssAnon / RssFile / VmRSS per phase, sampled in a background thread."""

    def __init__(self, interval: float = 0.02):
        self.interval, self.peak, self.phase, self.rows = interval, {}, None, []
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()

    def _run(self):
        while not self._stop.is_set():
            self._sample()
            time.sleep(self.interval)

    def _sample(self):
        s = status()
        for k in ("RssAnon", "RssFile", "VmRSS"):
            self.peak[k] = max(self.peak.get(k, 0), s[k])

    def start(self, name: str):
        self._sample()
        self.phase, self.peak, self.t0 = name, {}, time.perf_counter()
        self._sample()

    def end(self):
        self._sample()
        roll = smaps_rollup()
        self.rows.append({"phase": self.phase, "seconds": time.perf_counter() - self.t0, **self.peak,
                          "VmHWM": status()["VmHWM"],
                          "ru_maxrss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
                          "anon_end": roll.get("Anonymous", 0), "rss_end": roll.get("Rss", 0)})

    def stop(self):
        self._stop.set()
        self._t.join()


def generate(path: Path, rows: int, dim: int, seed: int = 0, chunk: int = 16384) -> None:
    """Stream `rows` random unit vectors in articles of 20-200 sentences into shards."""
    from lvm.data.shards import ShardWriter

    rng = np.random.default_rng(seed)
    meta = {"encoder": f"random-unit:{dim}", "source": "bench/memory_1m.py"}
    art, pos_in_art, art_len = 0, 0, int(rng.integers(20, 201))
    with ShardWriter(path, meta, rows_per_shard=65536) as w:
        for start in range(0, rows, chunk):
            n = min(chunk, rows - start)
            aid = np.empty(n, dtype=object)
            pos = np.empty(n, dtype=np.int64)
            for i in range(n):  # article structure: ids and positions (cheap next to the vectors)
                if pos_in_art == art_len:
                    art, pos_in_art, art_len = art + 1, 0, int(rng.integers(20, 201))
                aid[i], pos[i] = f"a{art:07d}", pos_in_art
                pos_in_art += 1
            v = rng.standard_normal((n, dim), dtype=np.float32)
            v /= np.linalg.norm(v, axis=1, keepdims=True)
            text = np.array([f"sentence {p} of {a}" for a, p in zip(aid, pos)], dtype=object)
            w.write(aid, pos, text, v)
            del v, text


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--rows", type=int, default=1_000_000)
    p.add_argument("--dim", type=int, default=768)
    p.add_argument("--batches", type=int, default=300)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    p.add_argument("--dir", default=None, help="where the temporary folder goes (default: the system's temp)")
    args = p.parse_args(argv)
    print(describe_machine(), flush=True)

    import torch

    from lvm.data.shards import materialize_vectors, open_sharded, validate_shards
    from lvm.data.table import window_targets
    from lvm.train.config import TrainConfig
    from lvm.train.trainer import fit

    torch.set_num_threads(args.threads)
    tmp = Path(tempfile.mkdtemp(prefix="lvm-mem1m-", dir=args.dir))
    folder = tmp / "table"
    sampler = Sampler()
    t_all = time.perf_counter()
    try:
        sampler.start("baseline: python + torch + pyarrow + pandas imported")
        sampler.end()
        sampler.start("generate + write shards (streamed)")
        generate(folder, args.rows, args.dim)
        sampler.end()
        shard_bytes = sum(f.stat().st_size for f in folder.glob("part-*.parquet"))
        n_shards = len(list(folder.glob("part-*.parquet")))

        sampler.start("validate shards (streamed)")
        validate_shards(folder)
        sampler.end()

        sampler.start("materialize vectors .npy (streamed)")
        materialize_vectors(folder)
        sampler.end()

        sampler.start("open_sharded (ids/pos/text + mmap)")
        table = open_sharded(folder, validate=False)
        sampler.end()
        assert isinstance(table.vectors, np.memmap) and table.vectors.shape == (args.rows, args.dim)

        sampler.start(f"train lstm seed, {args.batches} batches x {args.batch_size}")
        C = 5
        targets = window_targets(table.article_id, table.position, C)
        rng = np.random.default_rng(0)
        val_t = np.sort(rng.choice(targets, 4096, replace=False))
        pool = np.setdiff1d(targets, val_t, assume_unique=True)
        train_t = np.sort(rng.choice(pool, args.batches * args.batch_size, replace=False))
        cfg = TrainConfig(arch="lstm", epochs=1, batch_size=args.batch_size, patience=None, threads=args.threads,
                          warmup_frac=0.05)
        summary = fit(cfg, table.vectors, train_t, val_t, tmp / "model", position=table.position)
        sampler.end()
    finally:
        sampler.stop()
        shutil.rmtree(tmp, ignore_errors=True)

    n, d = args.rows, args.dim
    full = n * d * 4
    print(f"\n{n:,} sentences x {d}-D float32 = {n:,} x {d} x 4 B = {full / GB:.3f} GB of vectors "
          f"(the whole table in RAM, as read_table of one Parquet file would hold it, plus decoding copies)")
    print(f"on disk: {n_shards} shards {shard_bytes / GB:.3f} GB (zstd, byte-stream-split; random floats barely "
          f"compress) + _vectors.npy {full / GB:.3f} GB")
    print(f"training: {summary['train_windows']:,} windows in {summary['seconds']:.1f} s "
          f"({summary['train_windows'] / summary['seconds']:.0f} samples/s, {summary['precision']}, "
          f"{summary['parameters']:,} parameters, {args.threads} threads); total {time.perf_counter() - t_all:.0f} s\n")
    hdr = "| phase | s | peak RssAnon GB | peak RssFile GB | peak VmRSS GB | VmHWM so far GB | ru_maxrss so far GB |"
    print(hdr + "\n|---|---:|---:|---:|---:|---:|---:|")
    for r in sampler.rows:
        print(f"| {r['phase']} | {r['seconds']:.1f} | {r['RssAnon'] / GB:.3f} | {r['RssFile'] / GB:.3f} | "
              f"{r['VmRSS'] / GB:.3f} | {r['VmHWM'] / GB:.3f} | {r['ru_maxrss'] / GB:.3f} |")
    peak_anon = max(r["RssAnon"] for r in sampler.rows)
    print(f"\npeak anonymous memory {peak_anon / GB:.3f} GB = {peak_anon / full:.0%} of the {full / GB:.2f} GB of "
          f"vectors; ids/positions/texts of {n:,} rows are part of it. RssFile is the mapped .npy's resident pages: "
          f"page cache, shared and reclaimable, not memory the process owns (it grows to the file's size because "
          f"lvm.train's data fingerprint reads every page once).")


if __name__ == "__main__":
    main()

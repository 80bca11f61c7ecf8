"""Dataset build throughput: today's path against the new default, on the same sentences, in one run.

    .venv/bin/python bench/embed_throughput.py                          # wikitext2 + sotu + gutenberg
    .venv/bin/python bench/embed_throughput.py --rounds 2 --extra onnx-int8,torch-batched
    .venv/bin/python bench/embed_throughput.py --corpus ../shared/corpus/gutenberg/pg11.txt --extra ""  # quick
    .venv/bin/python bench/embed_throughput.py --wait-quiet 1.2        # each timed step waits for a quiet machine

(A) "today": `build_dataset` as it was: the torch (sentence-transformers) encoder called once per document.
(B) "new":   `build_dataset` with its defaults: lvm.ingest.embedding's default backend, batches across documents.
Both are whole builds with nothing cached (read + split + embed + write the Parquet table), run ABAB
for --rounds rounds; each side reports its fastest round (a neighbour's burst on a shared machine counts less).
The encoders are loaded (and the ONNX graph exported) before timing: that is a once-per-process / once-per-
machine cost, printed separately.
--extra: more encoders timed on the embedding step alone (same sentences, same split): `torch-batched` (torch
across documents), `onnx`, `onnx-int8`; each one's vectors are compared with today's too.
Fidelity: per-sentence cosine to today's vectors over every sentence: mean, minimum, 0.1 % quantile.
fp32 ceiling: the machine's fp32 matmul rate (torch, all cores) over MiniLM-L6's matmul FLOPs per sentence at
this corpus's mean token count: the most an fp32 encoder that does nothing but its matmuls could do here.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.machine import describe_machine  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CORPORA = [ROOT.parent / "shared" / "corpus" / p for p in ("wikitext2/wiki.valid.raw", "sotu", "gutenberg")]


def matmul_gflops(n: int = 1024, seconds: float = 2.0) -> float:
    """Best-of fp32 torch.mm rate (GFLOP/s) with torch's default threads."""
    import torch

    a, b = torch.randn(n, n), torch.randn(n, n)
    for _ in range(3):
        a @ b
    best, end = 0.0, time.perf_counter() + seconds
    while time.perf_counter() < end:
        t = time.perf_counter()
        for _ in range(4):
            a @ b
        best = max(best, 4 * 2 * n ** 3 / (time.perf_counter() - t) / 1e9)
    return best


def minilm_gflop_per_sentence(tokens: float, d: int = 384, ffn: int = 1536, layers: int = 6) -> float:
    """Matmul FLOPs of one sentence of `tokens` tokens: Q, K, V, output projections, the FFN, and attention."""
    per_token = 2 * (4 * d * d + 2 * d * ffn) + 2 * 2 * tokens * d
    return layers * tokens * per_token / 1e9


def fidelity(v: np.ndarray, ref: np.ndarray) -> dict:
    cos = (v.astype(np.float64) * ref).sum(1)
    return {"mean": float(cos.mean()), "min": float(cos.min()), "q0.001": float(np.quantile(cos, 0.001))}


def whole_build(corpora, backend, group, tmp, log) -> tuple[float, np.ndarray, dict]:
    """One `build_dataset` with nothing cached; (seconds, vectors, summary)."""
    from lvm.data.dataset import read_table
    from lvm.ingest.build import build_dataset

    out = Path(tmp) / f"{backend}-{group}.parquet"
    t = time.perf_counter()
    summary = build_dataset(corpora, out, backend=backend, group_sentences=group, cache_dir=None, log=log)
    dt = time.perf_counter() - t
    return dt, read_table(out, validate=False).vectors, summary


def wait_quiet(limit: float, max_wait: float = 1800.0) -> str:
    """Sleep until the 1-minute load average is below `limit` (0: don't wait); the load it starts at, as text."""
    end = time.time() + max_wait
    while limit and os.getloadavg()[0] >= limit and time.time() < end:
        time.sleep(10)
    return f"{os.getloadavg()[0]:.2f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", action="append", help="repeatable; default wikitext2 + sotu + gutenberg")
    ap.add_argument("--rounds", type=int, default=1, help="ABAB rounds of whole builds")
    ap.add_argument("--extra", default="torch-batched,onnx-int8", help="comma list of embed-only encoders")
    ap.add_argument("--wait-quiet", type=float, default=0.0, help="wait for a 1-min load below this before each step")
    ap.add_argument("--json", type=Path, help="also write the results here")
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import torch

    from lvm.ingest.backends import DEFAULT_BACKEND, load_encoder
    from lvm.ingest.build import read_corpora
    from lvm.ingest.embedding import DEFAULT_GROUP, embed_documents

    corpora = [str(c) for c in (args.corpus or DEFAULT_CORPORA)]
    print(describe_machine(), flush=True)
    print(f"torch threads {torch.get_num_threads()}; corpora {', '.join(corpora)}", flush=True)
    quiet = lambda m: None  # noqa: E731

    t = time.perf_counter()
    load_encoder(None, "torch")
    load_torch = time.perf_counter() - t
    t = time.perf_counter()
    new = load_encoder(None, DEFAULT_BACKEND)
    load_new = time.perf_counter() - t
    print(f"encoder load: torch {load_torch:.1f} s, {DEFAULT_BACKEND} {load_new:.1f} s (includes a first export)",
          flush=True)

    t = time.perf_counter()
    wait_quiet(args.wait_quiet)
    docs = read_corpora(corpora)
    split_s = time.perf_counter() - t
    sentences = [s for d in docs for s in d.sentences]
    tokens = np.mean([len(x) for x in new.tokenizer(sentences, truncation=True, max_length=256)["input_ids"]]) \
        if hasattr(new, "tokenizer") else 33.0
    wait_quiet(args.wait_quiet)
    gflops = matmul_gflops()
    per_sentence = minilm_gflop_per_sentence(float(tokens))
    ceiling = gflops / per_sentence
    print(f"{len(docs)} documents, {len(sentences)} sentences, mean {tokens:.1f} tokens; read + split "
          f"{split_s:.1f} s ({len(sentences) / split_s:.0f} sentences/s)", flush=True)
    print(f"fp32 matmul {gflops:.0f} GFLOP/s; MiniLM-L6 {per_sentence:.3f} GFLOP/sentence -> fp32 ceiling "
          f"{ceiling:.0f} sentences/s", flush=True)

    times = {"today": [], "new": []}
    vecs = {}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            for side, backend, group in (("today", "torch", 0), ("new", None, None)):
                print(f"load average {wait_quiet(args.wait_quiet)} before {side} round {r + 1}", flush=True)
                dt, v, summary = whole_build(corpora, backend, group, tmp, quiet)
                times[side].append(dt)
                vecs[side] = v
                print(f"  {side:<6} ({summary['backend']}, group {DEFAULT_GROUP if group is None else group}): "
                      f"{dt:.1f} s, {summary['sentences'] / dt:.1f} sentences/s", flush=True)
    n = len(vecs["today"])
    best = {k: min(v) for k, v in times.items()}
    result = {"machine": describe_machine(), "sentences": n, "documents": len(docs), "mean_tokens": float(tokens),
              "split_seconds": split_s, "fp32_gflops": gflops, "fp32_ceiling_sentences_per_s": ceiling,
              "today_seconds": best["today"], "new_seconds": best["new"], "new_backend": DEFAULT_BACKEND,
              "ratio": best["today"] / best["new"], "fidelity": {DEFAULT_BACKEND: fidelity(vecs["new"], vecs["today"])},
              "embed_only": {}}
    print(f"\nwhole build, best of {args.rounds}: today {n / best['today']:.1f} sentences/s, new ({DEFAULT_BACKEND}, "
          f"batched) {n / best['new']:.1f} sentences/s: ratio {result['ratio']:.2f}x", flush=True)

    for name in [e for e in args.extra.split(",") if e]:
        backend, group = ("torch", DEFAULT_GROUP) if name == "torch-batched" else (name, DEFAULT_GROUP)
        enc = load_encoder(None, backend)
        print(f"load average {wait_quiet(args.wait_quiet)} before embed-only {name}", flush=True)
        t = time.perf_counter()
        v, _ = embed_documents(docs, enc, None, group)
        dt = time.perf_counter() - t
        v = np.concatenate(v)
        result["embed_only"][name] = {"seconds": dt, "sentences_per_s": n / dt}
        result["fidelity"][name] = fidelity(v, vecs["today"])
        print(f"  embed only {name:<14} {dt:.1f} s, {n / dt:.1f} sentences/s", flush=True)

    print("\nfidelity to today's vectors (cosine per sentence, all sentences):")
    for name, f in result["fidelity"].items():
        print(f"  {name:<14} mean {f['mean']:.7f}  min {f['min']:.7f}  0.1% quantile {f['q0.001']:.7f}")
    result["load_after"] = os.getloadavg()[0]
    print(f"load average after {result['load_after']:.2f}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()

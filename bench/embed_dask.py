"""Embedding a corpus on a Dask LocalCluster of 1 worker vs 2 workers, through the dataset flow's Dask path.

    .venv/bin/python bench/embed_dask.py [--corpus wikitext2|all] [--workers 1,2] [--encoder NAME]

Runs `flows.build_dataset.build_dataset_flow(runner="dask", workers=n)` once per worker count, in one process,
on the same documents with the bundled MiniLM encoder by default. Each worker is one process with one thread (the
nanny sets OMP_NUM_THREADS=1), loads the encoder once and embeds whole documents (one Prefect task each, biggest
first). Nothing is cached between the runs: each gets a fresh LVM_DATA_DIR (embedding cache) and
PREFECT_TASKS_REFRESH_CACHE=true (Prefect's cache records), so every document is encoded every time.

Reported per run: the flow's wall time (reading the corpus, starting the cluster, workers importing torch and
loading the encoder, embedding, writing the table) and the embedding phase alone (first embed task start to last
embed task end, from the task runs recorded by the Prefect server), plus the sum of the embed tasks' run times.
--corpus wikitext2 (default) is WikiText-2 valid, 60 articles; `all` adds the 77 SOTU speeches and 4 books
(~36k sentences: several minutes per run on one core).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT.parent / "shared" / "corpus"
CORPORA = {"wikitext2": [CORPUS / "wikitext2" / "wiki.valid.raw"],
           "all": [CORPUS / "wikitext2" / "wiki.valid.raw", CORPUS / "sotu", CORPUS / "gutenberg"]}


def embed_phase(flow_run_id) -> tuple[float, float, int]:
    """(first embed start → last embed end, sum of embed task run times, number of embed tasks) in seconds."""
    from prefect import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    runs = []
    with get_client(sync_client=True) as c:
        while True:  # the server answers at most 200 at a time
            page = c.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])),
                                    limit=200, offset=len(runs))
            runs += page
            if len(page) < 200:
                break
    emb = [r for r in runs if r.name.startswith("embed-")]
    assert all(r.state.name == "Completed" for r in emb), {r.state.name for r in emb}
    span = (max(r.end_time for r in emb) - min(r.start_time for r in emb)).total_seconds()
    return span, sum(r.total_run_time.total_seconds() for r in emb), len(emb)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--corpus", choices=sorted(CORPORA), default="wikitext2")
    p.add_argument("--workers", default="1,2")
    p.add_argument("--encoder", default=None, help="default: the bundled all-MiniLM-L6-v2")
    args = p.parse_args(argv)

    tmp = Path(tempfile.mkdtemp(prefix="lvm-embed-dask-"))
    os.environ.update(PREFECT_HOME=str(tmp / "prefect"), PREFECT_SERVER_ANALYTICS_ENABLED="false",
                      PREFECT_TASKS_REFRESH_CACHE="true", HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false",
                      PREFECT_LOGGING_LEVEL="WARNING", LVM_DATA_DIR=str(tmp / "data-warmup"))
    os.environ.pop("PREFECT_API_URL", None)
    sys.path.insert(0, str(ROOT))
    import numpy as np

    from bench.machine import describe_machine

    print(describe_machine(), flush=True)

    from flows.build_dataset import build_dataset_flow
    from lvm.data.dataset import read_table

    corpus = [str(c) for c in CORPORA[args.corpus]]
    results = {}
    try:
        for n in (int(w) for w in args.workers.split(",")):
            os.environ["LVM_DATA_DIR"] = str(tmp / f"data-{n}")  # an empty embedding cache for these workers
            t0 = time.perf_counter()
            state = build_dataset_flow(corpus=corpus if len(corpus) > 1 else corpus[0], encoder=args.encoder,
                                       runner="dask", workers=n, out=str(tmp / f"table-{n}.parquet"),
                                       return_state=True)
            wall = time.perf_counter() - t0
            span, busy, n_docs = embed_phase(state.state_details.flow_run_id)
            table = read_table(state.result())
            results[n] = {"wall": wall, "span": span, "busy": busy, "docs": n_docs, "sentences": len(table),
                          "vectors": np.asarray(table.vectors), "encoder": table.meta.get("encoder")}
            print(f"{n} worker(s): flow {wall:.1f} s, embedding {span:.1f} s "
                  f"({len(table) / span:.0f} sentences/s), embed tasks busy {busy:.1f} s", flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    first = results[min(results)]
    print(f"\ncorpus: {args.corpus} ({', '.join(Path(c).name for c in corpus)}): {first['docs']} documents, "
          f"{first['sentences']:,} sentences; encoder {first['encoder']}; {os.cpu_count()} cores on this machine\n")
    print("| workers | flow wall s | embedding phase s | sentences/s | sum of embed task times s |")
    print("|---:|---:|---:|---:|---:|")
    for n, r in results.items():
        print(f"| {n} | {r['wall']:.1f} | {r['span']:.1f} | {r['sentences'] / r['span']:.0f} | {r['busy']:.1f} |")
    if len(results) >= 2:
        a, b = sorted(results)[:2]
        ra, rb = results[a], results[b]
        print(f"\n{a} → {b} workers: embedding phase {ra['span'] / rb['span']:.2f}x faster, "
              f"whole flow {ra['wall'] / rb['wall']:.2f}x; same vectors: "
              f"max |diff| = {float(np.abs(ra['vectors'] - rb['vectors']).max()):.2g}")


if __name__ == "__main__":
    main()

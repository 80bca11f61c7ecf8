"""The evaluation stage, today's code against the new layer, side by side on the same models and windows.

    PYTHONPATH=$PWD .venv/bin/python bench/eval_speed.py --run data/runs/<run> [--part test] [--whole TABLE]
                                                         [--before fbd3139]

Both sides score every model of the run (the ensemble included) and the six baselines fitted on the run's
training split, metrics and forward suite, on the same windows: the run's `--part` of its table, and with
`--whole` every article of another table of the same encoder (a bigger set). "today" is the evaluation code of git
revision `--before` (checked out into a temporary worktree and run in a subprocess of this Python, its own
imports only); "new" is this checkout's (lvm.evaluation.suite through compare.score_all). Timed: the scoring call
alone (models loaded, baselines fitted beforehand on both sides). Printed: windows, seconds and windows/s of each
side, the ratio, and every flat metric whose values differ by more than 5e-5, with the largest difference. Writes
$LVM_DATA_DIR/bench/eval_speed.json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SIDE = r'''
import json, sys, time
import numpy as np
args = json.loads(sys.argv[1])
old = args["side"] == "today"
if old:
    sys.meta_path = [f for f in sys.meta_path if "__editable__" not in getattr(f, "__module__", "")]
    from lvm.dataset import read_table, load_split, file_hash
    from lvm.table import window_targets
else:
    from lvm.data.dataset import read_table, load_split, file_hash
    from lvm.data.table import window_targets
from lvm.evaluation.baselines import cached_baselines
from lvm.evaluation.compare import score_all
from lvm.evaluation.metrics import article_starts, on_context
from lvm.evaluation.predictors import model_predictor

run_table = read_table(args["table"], validate=False)
split = load_split(args["split"])
C = args["context"]
train_t = window_targets(run_table.article_id, run_table.position, C, split.train)
fitted = cached_baselines(run_table.vectors, train_t, C, file_hash(args["table"]), split.record(),
                          article_starts(run_table.position))
fns = {k: on_context(model_predictor(d)) for k, d in args["models"].items()}
if args["whole"]:
    table = read_table(args["whole"], validate=False)
    rows = np.arange(len(table))
else:
    table, rows = run_table, split.part(args["part"])
eval_t = window_targets(table.article_id, table.position, C, rows)
starts = article_starts(table.position)
groups = np.unique(np.asarray(table.article_id).astype(str), return_inverse=True)[1]
t0 = time.perf_counter()
if old:
    metrics, _ = score_all({**fns, **fitted}, table.vectors, eval_t, rows, C, starts, groups)
else:
    from lvm.evaluation.heldout import HeldOutSet
    metrics, _ = score_all({**fns, **fitted}, HeldOutSet(table.vectors, eval_t, rows, starts, groups, C))
seconds = time.perf_counter() - t0
flat = {k: {c: v for c, v in m.items() if not isinstance(v, dict)} for k, m in metrics.items()}
json.dump({"seconds": seconds, "n": int(len(eval_t)), "metrics": flat}, open(args["out"], "w"))
'''


def side(name: str, args: dict, tree: Path | None) -> dict:
    out = Path(tempfile.mkstemp(suffix=".json")[1])
    env = dict(os.environ)
    if tree is not None:
        env["PYTHONPATH"] = str(tree)
    subprocess.run([sys.executable, "-c", SIDE, json.dumps({**args, "side": name, "out": str(out)})], env=env,
                   cwd=str(tree or ROOT), check=True)
    res = json.loads(out.read_text())
    out.unlink()
    print(f"  {name}: {res['n']:,} windows in {res['seconds']:.1f} s, {res['n'] / res['seconds']:.1f} windows/s",
          flush=True)
    return res


def differences(a: dict, b: dict, tol: float = 5e-5) -> dict:
    out = {}
    for name in a:
        for col, v in a[name].items():
            w = b.get(name, {}).get(col)
            if isinstance(v, (int, float)) and isinstance(w, (int, float)) and abs(v - w) > tol:
                out[f"{name}.{col}"] = [v, w]
    return out


def main() -> None:
    from bench.machine import describe_machine

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", required=True, type=Path, help="a flow run folder (run.json)")
    ap.add_argument("--part", default="test")
    ap.add_argument("--whole", help="score every article of this table (same encoder) instead of the run's part")
    ap.add_argument("--before", default="fbd3139", help="the git revision of today's evaluation code")
    args = ap.parse_args()
    run = json.loads((args.run / "run.json").read_text())
    models = dict(run["models"])
    ensemble = sorted((Path(next(iter(models.values()))).parent).glob("ensemble-*"))
    for e in ensemble:  # the run's ensemble: the one whose members are this run's models
        cfg = json.loads((e / "config.json").read_text())
        if sorted(map(str, cfg.get("members_from", {}).values())) == sorted(map(str, models.values())):
            models["ensemble"] = str(e)
    common = {"table": run["data_path"], "split": run["split_path"], "context": int(run["context"]),
              "models": models, "part": args.part, "whole": args.whole}
    print(describe_machine(), flush=True)
    print(f"models: {', '.join(models)}; windows: {args.whole or args.part}", flush=True)
    tmp = Path(tempfile.mkdtemp(prefix="lvm-before-"))
    subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(tmp / "tree"), args.before],
                   check=True, capture_output=True)
    try:
        today = side("today", common, tmp / "tree")
        new = side("new", common, None)
    finally:
        subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(tmp / "tree")],
                       capture_output=True)
    diff = differences(today["metrics"], new["metrics"])
    ratio = today["seconds"] / new["seconds"]
    print(f"\nratio {ratio:.1f}x ({today['seconds']:.1f} s -> {new['seconds']:.1f} s on {new['n']:,} windows); "
          f"{len(diff)} values differ by more than 5e-5" + (":" if diff else ""))
    for k, (a, b) in sorted(diff.items(), key=lambda kv: -abs(kv[1][0] - kv[1][1]))[:30]:
        print(f"  {k}: {a:.6f} -> {b:.6f}")
    out = Path(os.environ.get("LVM_DATA_DIR", ROOT / "data")) / "bench" / "eval_speed.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    rec = {"machine": describe_machine(), "set": args.whole or args.part, "n": new["n"],
           "today_seconds": today["seconds"], "new_seconds": new["seconds"], "ratio": ratio, "differences": diff}
    prev = json.loads(out.read_text()) if out.is_file() else []
    out.write_text(json.dumps((prev if isinstance(prev, list) else []) + [rec], indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()

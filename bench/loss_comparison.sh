#!/usr/bin/env bash
# Loss presets compared on real text: the lstm seed model, 20 epochs with early stopping, held-out test cosine.
#   bench/loss_comparison.sh data/shared.all-MiniLM-L6-v2.parquet
set -euo pipefail
data=${1:-data/shared.all-MiniLM-L6-v2.parquet}
.venv/bin/python -c "import sys; sys.path.insert(0, '.'); from bench.machine import describe_machine; print(describe_machine())"
echo "| loss preset | test cosine | test MRR | best val cosine | best epoch | best baseline |"
echo "|---|---:|---:|---:|---:|---|"
for loss in mse cosine cosine_infonce retrieval infonce composite_seed; do
  out=$(mktemp -d)
  if ! .venv/bin/lvm train --arch lstm --data "$data" --loss "$loss" --out "$out/m" 2>"$out/log" > "$out/summary.json"; then
    echo "| $loss | failed: $(tail -1 "$out/log") | | | | |"; rm -rf "$out"; continue
  fi
  .venv/bin/python - "$loss" "$out" <<'PY'
import json, sys
loss, out = sys.argv[1], sys.argv[2]
s = json.load(open(f"{out}/summary.json"))
m = json.load(open(f"{out}/m/metrics.json"))
b = m["best_baseline"]
print(f"| {loss} | {m['cosine']:.4f} | {m['mrr']:.4f} | {s['best_val_cosine']:.4f} | {s['best_epoch']} | {b['name']} {b['cosine']:.4f} |")
PY
  rm -rf "$out"
done

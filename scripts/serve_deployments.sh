#!/usr/bin/env bash
# Start a local Prefect server (UI on http://127.0.0.1:4200), register the deployments of prefect.yaml on a
# process work pool and run a worker for them. Ctrl-C stops the worker and the server.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin
PORT=${PREFECT_PORT:-4200}
export PREFECT_HOME=${PREFECT_HOME:-$PWD/data/prefect-home}  # the Makefile's: make run's runs are in this UI
export PREFECT_SERVER_ANALYTICS_ENABLED=false
export PREFECT_API_URL=http://127.0.0.1:$PORT/api
export LVM_PROJECT_DIR=$PWD
mkdir -p "$PREFECT_HOME" data
# data/corpus: your text, read by the deployments; on first use it is empty, so a sample goes there (said below)
n=$($BIN/python -c "from lvm.ingest.corpus import write_sample_corpus; print(write_sample_corpus('data/corpus'))")
[ "$n" = 0 ] || echo "data/corpus was empty: wrote the built-in corpus there as a sample ($n .txt files; replace them with your text)"
log=data/prefect-server.log

$BIN/prefect server start --host 127.0.0.1 --port "$PORT" >"$log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null; wait $server 2>/dev/null' EXIT
for _ in $(seq 1 120); do
  curl -fs "$PREFECT_API_URL/health" >/dev/null 2>&1 && break
  kill -0 $server 2>/dev/null || { echo "prefect server failed to start, see $log"; exit 1; }
  sleep 0.5
done
curl -fs "$PREFECT_API_URL/health" >/dev/null || { echo "prefect server did not answer, see $log"; exit 1; }
echo "Prefect UI: http://127.0.0.1:$PORT"

$BIN/prefect work-pool inspect lvm-local >/dev/null 2>&1 || $BIN/prefect work-pool create lvm-local --type process
$BIN/prefect --no-prompt deploy --all --prefect-file prefect.yaml
echo "Deployments registered. Start a run now with:"
echo "  PREFECT_API_URL=$PREFECT_API_URL $BIN/prefect deployment run lvm-train/lvm-train"
if [ "${LVM_NO_WORKER:-}" = 1 ]; then
  wait $server
else
  $BIN/prefect worker start --pool lvm-local
fi

#!/usr/bin/env bash
# The whole CPU benchmark of BENCHMARKS.md, in one command (~25 min on 2 cores):
#   bash bench/run_all.sh [OUT]          (default bench/results/<date-time>)
# 1. the like-for-like model (bench/make_model.sh) and the TorchServe peer (bench/prepare_peer.sh);
# 2. item 1: in-process ceilings, generator and discriminator, batch 1/8/64/256, ORT threads
#    default and 1 (bench/inproc.py);
# 3. items 2-5: ours, TorchServe (2 workers, 5 ms, 1 thread), ours without batching and the
#    in-process ceiling, interleaved per load point, 2 rounds; /score; the n and c sweeps
#    (bench/run.py), then tables and the plot docs/bench-scaling.png (bench/report.py);
# 4. where the time goes (bench/where_time_goes.py);
# 5. the bundled default model models/mnist-dcgan, if present: the target points again.
# Knobs: QUICK=1 (a 3-minute smoke run of the same steps), SKIP_PROFILE=1, SKIP_DEFAULT=1,
# NICE=-10 (the benchmark's priority; 0 leaves it; negative needs root).
# Everything runs on 127.0.0.1 and stops by itself; servers are stopped on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
OUT=${1:-bench/results/$(date +%Y%m%d-%H%M%S)}
MODELS=${BENCH_MODELS:-/tmp/bench/models}
mkdir -p "$OUT"
command -v wrk >/dev/null || { echo "wrk missing: apt-get update && apt-get install -y wrk" >&2; exit 1; }
log() { echo "[run_all $(date +%H:%M:%S)] $*  (load $(cut -d' ' -f1-3 /proc/loadavg))" >&2; }
Q=(); [ -n "${QUICK:-}" ] && Q=(--quick)
SECS=1.0; [ -n "${QUICK:-}" ] && SECS=0.3
# All benchmark processes (servers, wrk, ceilings) at the same raised priority: on a shared box,
# CFS shares CPU per runnable thread, which otherwise favours whichever system has more threads.
NICE=${NICE:--10}

log "model and peer"
bash bench/make_model.sh "$MODELS"
bash bench/prepare_peer.sh

log "item 1: in-process ceilings"
"$PY" bench/inproc.py "$MODELS/bench-dcgan" --threads 0,1 --secs "$SECS" --nice "$NICE" \
  --json-out "$OUT/inproc.json" 2>&1 | tee "$OUT/inproc.txt"

log "items 2-5: load, interleaved"
"$PY" bench/run.py --models-dir "$MODELS" --model bench-dcgan --out "$OUT/load" --nice "$NICE" "${Q[@]}" \
  2>&1 | tee "$OUT/load.log"
"$PY" bench/report.py "$OUT/load" --plot docs/bench-scaling.png | tee "$OUT/load-summary.md"

if [ -z "${SKIP_PROFILE:-}" ]; then
  log "where the time goes"
  "$PY" bench/where_time_goes.py --models-dir "$MODELS" --out "$OUT/profile" --nice "$NICE" "${Q[@]}" \
    2> "$OUT/profile.log" | tee "$OUT/profile.md"
fi

if [ -z "${SKIP_DEFAULT:-}" ] && [ -f models/mnist-dcgan/model.json ]; then
  log "the bundled default model models/mnist-dcgan"
  "$PY" bench/run.py --models-dir models --model mnist-dcgan --out "$OUT/default-model" --nice "$NICE" \
    --loads "1:1 64:1 8:16 64:16" --score "" --sweep-n "" --sweep-c "" "${Q[@]}" \
    2>&1 | tee "$OUT/default-model.log"
  "$PY" bench/report.py "$OUT/default-model" | tee "$OUT/default-model-summary.md"
fi
log "done: $OUT"

#!/usr/bin/env bash
# Build the TorchServe peer once (venv /tmp/ts-peer/venv, model, gan.mar) with the peer's own
# run.sh, read-only from ../shared/peers/torchserve: one tiny config and load point, no in-process
# bench. bench/run.py then starts TorchServe itself from that archive, configured as run.sh does.
# Needs python3.11, Java >= 11 and PyPI the first time (~3-5 min); later runs only re-check.
set -euo pipefail
PEER=${TS_PEER_SRC:-$(cd "$(dirname "$0")/.." && pwd)/../shared/peers/torchserve}
BASE=${TS_PEER_DIR:-/tmp/ts-peer}
[ -f "$PEER/run.sh" ] || { echo "peer not found at $PEER (set TS_PEER_SRC)" >&2; exit 1; }
command -v java >/dev/null || { echo "java (>= 11) is required: apt-get install -y openjdk-17-jre-headless" >&2; exit 1; }
if [ -x "$BASE/venv/bin/torchserve" ] && [ -f "$BASE/store/gan.mar" ] && [ -z "${FORCE:-}" ]; then
  echo "TorchServe peer ready: $BASE (FORCE=1 to rebuild)"; exit 0
fi
CONFIGS="2:5:1" LOADS="1:1" DUR=2 WARMUP=1 INPROC=none PORT_BASE=${PORT_BASE:-8180} \
  TS_PEER_DIR="$BASE" bash "$PEER/run.sh" | tail -3
[ -f "$BASE/store/gan.mar" ] || { echo "peer build failed" >&2; exit 1; }
echo "TorchServe peer ready: $BASE"

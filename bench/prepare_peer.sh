#!/usr/bin/env bash
# Build the peers bench/run.py compares against, once each, with the peers' own run.sh, read-only
# from ../shared/peers:  bash bench/prepare_peer.sh [torchserve] [pytriton]   (default: both)
#   torchserve  venv /tmp/ts-peer/venv, model, gan.mar: one tiny config and load point, no
#               in-process bench; bench/run.py then starts TorchServe itself from that archive,
#               configured as run.sh does. Needs python3.11, Java >= 11 and PyPI (~3-5 min).
#   pytriton    venv /tmp/pytriton-peer/venv (nvidia-pytriton 0.7.0, ~467 MB from PyPI), then
#               `run.sh check`: start the best config, the peer's correctness check, stop. It
#               serves the TorchServe peer's ONNX export (/tmp/ts-peer/model/generator.onnx: the
#               same network as TorchServe; the peers feed z only, so not our conditional model),
#               so torchserve is prepared first. bench/run.py starts and stops it through
#               `run.sh start` / `run.sh stop SID`.
# Idempotent: a peer already built is only re-checked (FORCE=1 rebuilds).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PEERS=${PEERS_SRC:-$ROOT/../shared/peers}

prepare_torchserve() {
  local peer=${TS_PEER_SRC:-$PEERS/torchserve} base=${TS_PEER_DIR:-/tmp/ts-peer}
  [ -f "$peer/run.sh" ] || { echo "peer not found at $peer (set TS_PEER_SRC)" >&2; return 1; }
  command -v java >/dev/null || { echo "java (>= 11) is required: apt-get install -y openjdk-17-jre-headless" >&2; return 1; }
  if [ -x "$base/venv/bin/torchserve" ] && [ -f "$base/store/gan.mar" ] && [ -z "${FORCE:-}" ]; then
    echo "TorchServe peer ready: $base (FORCE=1 to rebuild)"; return 0
  fi
  CONFIGS="2:5:1" LOADS="1:1" DUR=2 WARMUP=1 INPROC=none PORT_BASE=${PORT_BASE:-8180} \
    TS_PEER_DIR="$base" bash "$peer/run.sh" | tail -3
  [ -f "$base/store/gan.mar" ] || { echo "TorchServe peer build failed" >&2; return 1; }
  echo "TorchServe peer ready: $base"
}

# The same import line as the peer's run.sh (IMPORTS): the venv is built iff it fails.
PT_IMPORTS="import pytriton.triton, onnxruntime, numpy, PIL"

prepare_pytriton() {
  local peer=${PT_PEER_SRC:-$PEERS/pytriton} base=${PYTRITON_PEER_DIR:-/tmp/pytriton-peer}
  local onnx=${GAN_ONNX:-${TS_PEER_DIR:-/tmp/ts-peer}/model/generator.onnx}
  [ -f "$peer/run.sh" ] || { echo "peer not found at $peer (set PT_PEER_SRC)" >&2; return 1; }
  if [ -n "${FORCE:-}" ] && [ -d "$base/venv" ]; then rm -rf "$base/venv" "$base/.checked"; fi
  if [ -f "$base/.checked" ] && "$base/venv/bin/python" -c "$PT_IMPORTS" 2>/dev/null; then
    echo "PyTriton peer ready: $base (FORCE=1 to rebuild)"; return 0
  fi
  [ -f "$onnx" ] || { echo "no generator for PyTriton at $onnx: bash bench/prepare_peer.sh torchserve first (or set GAN_ONNX)" >&2; return 1; }
  # run.sh builds the venv if its imports fail, then starts Triton on PORT..PORT+2, checks the
  # answers against in-process ORT and stops it.
  mkdir -p "$base"  # tee opens its log before run.sh makes the folder
  GAN_ONNX=$onnx PYTRITON_PEER_DIR="$base" \
    PORT=${PT_PORT:-8400} bash "$peer/run.sh" check 2>&1 | tail -5 | tee "$base/check.log" || true
  grep -q "CHECK OK" "$base/check.log" || { echo "PyTriton peer check failed ($base/check.log)" >&2; return 1; }
  touch "$base/.checked"
  echo "PyTriton peer ready: $base"
}

for peer in "${@:-torchserve pytriton}"; do
  for p in $peer; do
    case $p in
      torchserve) prepare_torchserve ;;
      pytriton) prepare_pytriton ;;
      *) echo "unknown peer $p (torchserve, pytriton)" >&2; exit 2 ;;
    esac
  done
done

#!/usr/bin/env bash
# The benchmark's like-for-like model: our dcgan28 at --width 64 is exactly the TorchServe peer's
# generator (Linear 100->128*7*7 + BN + ReLU, ConvT 128->64 + BN + ReLU, ConvT 64->1 + Tanh).
# One training step is enough: throughput does not depend on the weights.
#
# usage: bash bench/make_model.sh [MODELS_DIR]   (default /tmp/bench/models; writes MODELS_DIR/$NAME)
# Needs the train extra (torch); takes ~1-2 min on 2 cores. Skips the work if the folder exists.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
MODELS=${1:-/tmp/bench/models}
NAME=${NAME:-bench-dcgan}
WIDTH=${WIDTH:-64}   # WIDTH=32 NAME=bench-dcgan32: the default model's size (models/mnist-dcgan)
RUN=${RUN_DIR:-$(dirname "$MODELS")/run-$NAME}
if [ -f "$MODELS/$NAME/model.json" ] && [ -z "${FORCE:-}" ]; then
  echo "model exists: $MODELS/$NAME (FORCE=1 to rebuild)"; exit 0
fi
mkdir -p "$MODELS"
"$PY" -m training.train --dataset mnist --arch dcgan28 --width "$WIDTH" --steps 1 --out "$RUN" \
  --no-progress --force
"$PY" -m training.export "$RUN" --name "$NAME" --out "$MODELS/$NAME" --no-eval >/dev/null
echo "model ready: $MODELS/$NAME"

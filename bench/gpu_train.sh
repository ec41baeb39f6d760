#!/usr/bin/env bash
# Train, export and judge the bundled class-conditional models on a GPU machine, in one call
# (issue 13; docs/training.md, "Training the bundled conditional models on a GPU").
#
#   bash bench/gpu_train.sh --prepare   # HERE, once: copy the MNIST + Fashion-MNIST files into
#                                       # .gpu-data/ (ignored by git) and check what will travel
#   bash bench/gpu_train.sh             # THERE (the device machine): the sweep, ~9 min wall
#
# The device machine has no network and its own Python (3.12, torch 2.11 + CUDA 13, onnx,
# onnxscript, onnxruntime, numpy, scipy, Pillow: /work/.library/device/KINDS.md), which is used
# as it is: a torch 2.13 CUDA wheel is ~900 MB, far over the 64 MiB that travels with a call.
# ../shared/data does not travel either, hence .gpu-data/ (42.5 MB of IDX files) in `carry`.
#
# What it does there: checks the GPU and the Python packages; runs training.cond_sweep over both
# datasets at once (8 candidates each, 16 processes on the one GPU, 1 CPU thread each; all train
# for TRAIN_S seconds); then writes into $OUT (at most 8 files come back, 16 MiB each):
#   summary.md, summary.json   every candidate's step, step rate and target ratios; the winners
#   models.tgz.NN              the winners as models/mnist-dcgan and models/fashion-dcgan, in
#                              15 MiB pieces: cat models.tgz.* | tar xz
#   logs.tgz                   every log, each run's config.json / metrics.jsonl / summary.json
#                              and last samples, the environment it ran in
# Knobs (environment): TRAIN_S PROBE_S EVAL_N FINAL_N SWEEP_LIMIT PARALLEL THREADS EVAL_THREADS
# DEVICE DATASETS ONLY STEPS OVERRIDE PY GPU_DATA OUT WORK. A CPU smoke run of the whole path:
#   DEVICE=cpu STEPS=3 ONLY=w64,w96 OVERRIDE='--width 4 --batch-size 16' EVAL_N=40 FINAL_N=40 \
#     GPU_DATA=/tmp/fake-data OUT=/tmp/gt PY=.venv/bin/python bash bench/gpu_train.sh
set -uo pipefail
cd "$(dirname "$0")/.." || exit 2
GPU_DATA=${GPU_DATA:-.gpu-data}
LIMIT_MIB=64

if [ "${1:-}" = "--prepare" ]; then
  SRC=${SHARED_DATA:-../shared/data}
  case "$GPU_DATA" in /* | ..* | . | "") echo "GPU_DATA must be a folder inside the repository" >&2; exit 2 ;; esac
  mkdir -p "$GPU_DATA"
  rm -rf "$GPU_DATA"
  for ds in mnist fashion-mnist; do
    mkdir -p "$GPU_DATA/$ds"
    for f in "$SRC/$ds"/*-ubyte.gz; do
      # XZ=1: 6 MB less to carry (xz -9 of the raw IDX bytes, ~3 min here), for a tree that grew.
      if [ "${XZ:-0}" = 1 ]; then zcat "$f" | xz -9 -T0 >"$GPU_DATA/$ds/$(basename "$f" .gz).xz"
      else cp -p "$f" "$GPU_DATA/$ds/"; fi
    done
  done
  grep -E ' (mnist|fashion-mnist)/' "$SRC/SHA256SUMS" >"$GPU_DATA/SHA256SUMS"
  [ "${XZ:-0}" = 1 ] || (cd "$GPU_DATA" && sha256sum -c --quiet SHA256SUMS) || { echo "checksums differ" >&2; exit 1; }
  git check-ignore -q "$GPU_DATA" || { echo "$GPU_DATA is not ignored by git" >&2; exit 1; }
  # What travels: tracked + untracked-not-ignored files (and shared/ if present), plus the carry.
  tree=$(git ls-files -co --exclude-standard -z | xargs -0 stat -c %s 2>/dev/null | awk '{s+=$1} END {print s+0}')
  data=$(du -sb "$GPU_DATA" | cut -f1)
  total=$((tree + data))
  awk -v t="$tree" -v d="$data" -v n="$GPU_DATA" -v l="$LIMIT_MIB" 'BEGIN {
    printf "working tree %.1f MiB + %s %.1f MiB = %.1f MiB (limit %d MiB)\n", t/2^20, n, d/2^20, (t+d)/2^20, l }'
  [ "$total" -lt $((LIMIT_MIB * 1048576)) ] || { echo "over the limit: see docs/training.md" >&2; exit 1; }
  exit 0
fi

OUT=${OUT:-/tmp/gpu-train-out}
PY=${PY:-python3}
DEVICE=${DEVICE:-cuda}
TRAIN_S=${TRAIN_S:-300}
PROBE_S=${PROBE_S:-40}
EVAL_N=${EVAL_N:-2000}
# The sweep is stopped here at the latest, so that packing the results fits the 600 s call.
SWEEP_LIMIT=${SWEEP_LIMIT:-530}
FINAL_N=${FINAL_N:-10000}
PARALLEL=${PARALLEL:-16}
THREADS=${THREADS:-1}
EVAL_THREADS=${EVAL_THREADS:-8}
DATASETS=${DATASETS:-mnist,fashion-mnist}
WORK=${WORK:-/tmp/gpu-sweep}
mkdir -p "$OUT" "$WORK"
log() { echo "[gpu_train $(date +%H:%M:%S)] $*"; }
T0=$(date +%s)

{
  uname -a
  if [ "$DEVICE" = cuda ]; then nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader; fi
  nproc
  "$PY" - <<'PY'
import importlib, sys
print("python", sys.version.split()[0], sys.executable)
for name in ("torch", "onnx", "onnxscript", "onnxruntime", "numpy", "scipy", "PIL", "matplotlib"):
    try:
        print(name, importlib.import_module(name).__version__)
    except Exception as e:  # the sweep needs them all: say which is missing, then stop below
        print(name, "MISSING", repr(e))
PY
} >"$WORK/env.txt" 2>&1
cat "$WORK/env.txt"
"$PY" -c 'import torch, onnx, onnxscript, onnxruntime, scipy, PIL' || { log "a package is missing (above)"; exit 3; }
if [ "$DEVICE" = cuda ]; then
  "$PY" -c 'import torch, sys; sys.exit(not torch.cuda.is_available())' || { log "torch sees no GPU"; exit 3; }
fi
if compgen -G "$GPU_DATA/*/*.xz" >/dev/null; then
  # XZ=1 at --prepare: back to the .gz files the loaders read (xz checks its own CRC64; the
  # .gz files it makes are not byte-identical to the official ones, so SHA256SUMS is skipped).
  log "unpacking the .xz data"
  "$PY" - "$GPU_DATA" /tmp/gpu-data <<'PY' || { log "unpacking failed"; exit 3; }
import gzip, lzma, pathlib, sys
src, dst = map(pathlib.Path, sys.argv[1:])
for f in sorted(src.glob("*/*.xz")):
    out = dst / f.parent.name / (f.stem + ".gz")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(gzip.compress(lzma.decompress(f.read_bytes()), compresslevel=1))
PY
  GPU_DATA=/tmp/gpu-data
elif [ -f "$GPU_DATA/SHA256SUMS" ]; then
  (cd "$GPU_DATA" && sha256sum -c --quiet SHA256SUMS) || { log "data checksums differ"; exit 3; }
fi

log "sweep: $DATASETS, ${TRAIN_S}s of training each (probe ${PROBE_S}s), judged at n=$EVAL_N, winner at n=$FINAL_N"
sweep=(--out "$WORK" --dataset "$DATASETS" --device "$DEVICE" --parallel "$PARALLEL"
  --threads "$THREADS" --eval-threads "$EVAL_THREADS" --train-seconds "$TRAIN_S"
  --probe-seconds "$PROBE_S" --eval-n "$EVAL_N" --final-n "$FINAL_N" --data-root "$GPU_DATA")
[ -n "${ONLY:-}" ] && sweep+=(--only "$ONLY")
[ -n "${STEPS:-}" ] && sweep+=(--steps "$STEPS")
[ -n "${OVERRIDE:-}" ] && sweep+=("--override=$OVERRIDE")
PYTHONUNBUFFERED=1 timeout -k 15 "$SWEEP_LIMIT" "$PY" -m training.cond_sweep "${sweep[@]}" >"$WORK/sweep.log" 2>&1
rc=$?
grep -v '^|' "$WORK/sweep.log" | grep -v '^$' | tail -n 40
[ $rc = 124 ] && log "the sweep ran past SWEEP_LIMIT=${SWEEP_LIMIT}s and was stopped: summary.md is the last one it wrote"
log "sweep rc $rc after $(( $(date +%s) - T0 )) s"

# Back to this side: the winners in pieces under 16 MiB, everything else small.
[ -f "$WORK/sweep.md" ] && cp "$WORK/sweep.md" "$OUT/summary.md"
[ -f "$WORK/sweep.json" ] && cp "$WORK/sweep.json" "$OUT/summary.json"
if compgen -G "$WORK/best/*/model.json" >/dev/null; then
  mkdir -p "$WORK/ship/models"
  cp -r "$WORK"/best/* "$WORK/ship/models/"
  tar -C "$WORK/ship" -czf - models | split -b 15M -d - "$OUT/models.tgz."
fi
(cd "$WORK" && find runs -maxdepth 3 \( -name config.json -o -name metrics.jsonl -o -name summary.json \
   -o -name command.txt \) -print0; find runs -path '*/samples/*' -name 'step_*.png' -print0 | sort -z | tail -z -n 32;
 printf '%s\0' env.txt sweep.log; find logs -type f -print0) |
  tar -C "$WORK" --null -T - -czf "$OUT/logs.tgz"
ls -l "$OUT"
[ -f "$OUT/summary.md" ] && cat "$OUT/summary.md"
exit $rc

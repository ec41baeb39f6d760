#!/usr/bin/env bash
# GPU benchmark: items 1-3 of BENCHMARKS.md on a machine with an NVIDIA GPU, in one go (~4 min).
#
#   bash bench/gpu.sh [MODELS_DIR]      # default: the bench model (bench/make_model.sh) if present,
#                                       # else models/; results in $OUT (default /tmp/bench-gpu)
#
# 1. installs the gpu extra's runtime (onnxruntime-gpu) into the Python in use: from wheels in
#    $WHEELS (a folder of .whl files, for machines without network) or else from PyPI;
#    the CUDA / cuDNN libraries come from the nvidia-* pip packages when present (preloaded with
#    onnxruntime.preload_dlls(), and their lib folders put on LD_LIBRARY_PATH);
# 2. checks that the CUDA execution provider is really active (a session's get_providers()[0],
#    and the service's own GET /models "provider"), else stops with the reason;
# 3. item 1: in-process ceilings (bench/inproc.py --provider cuda), generator and discriminator,
#    batch 1/8/64/256, with and without PNG;
# 4. items 2-3: the service with GAN_PROVIDER=cuda, batching on and off, wrk at c=1/8/64/256 with
#    n=1 and n=16, /score, and the ceiling interleaved at c=8 n=16 (bench/run.py, no TorchServe).
# Only 127.0.0.1 is contacted; every step is bounded; servers are stopped at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}
OUT=${OUT:-/tmp/bench-gpu}
mkdir -p "$OUT"
MODELS=${1:-}
if [ -z "$MODELS" ]; then
  if [ -f /tmp/bench/models/bench-dcgan/model.json ]; then MODELS=/tmp/bench/models; else MODELS=models; fi
fi
log() { echo "[gpu.sh $(date +%H:%M:%S)] $*" >&2; }

command -v nvidia-smi >/dev/null || { echo "no nvidia-smi: not an NVIDIA GPU machine" >&2; exit 2; }
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/gpu.txt"

# -- 1. onnxruntime-gpu ------------------------------------------------------------------------
if ! "$PY" -c 'import onnxruntime as o, sys; sys.exit("CUDAExecutionProvider" not in o.get_available_providers())' 2>/dev/null; then
  log "installing onnxruntime-gpu"
  "$PY" -m pip uninstall -q -y onnxruntime >/dev/null 2>&1 || true   # same package folder
  if [ -n "${WHEELS:-}" ]; then
    "$PY" -m pip install -q --no-index --no-deps --find-links "$WHEELS" onnxruntime-gpu
  else
    "$PY" -m pip install -q 'onnxruntime-gpu>=1.20'
  fi
fi
NV_LIBS=$("$PY" - <<'PY'
import glob, os, site
dirs = []
for base in site.getsitepackages() + [site.getusersitepackages()]:
    dirs += sorted(glob.glob(os.path.join(base, "nvidia", "*", "lib")))
print(":".join(dict.fromkeys(dirs)))
PY
)
export LD_LIBRARY_PATH="${NV_LIBS}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"

# -- 2. is CUDA really used? -------------------------------------------------------------------
"$PY" - "$MODELS" <<'PY' | tee "$OUT/provider.txt"
import glob, json, sys
import onnxruntime as ort
if hasattr(ort, "preload_dlls"):
    try:
        ort.preload_dlls()
    except Exception as exc:  # the libs may come from LD_LIBRARY_PATH instead
        print(f"preload_dlls: {exc}", file=sys.stderr)
onnx = sorted(glob.glob(f"{sys.argv[1]}/*/generator.onnx"))[0]
s = ort.InferenceSession(onnx, providers=["CUDAExecutionProvider", "CPUExecutionProvider"])
active = s.get_providers()[0]
print(json.dumps({"onnxruntime": ort.__version__, "available": ort.get_available_providers(), "active": active, "model": onnx}))
sys.exit(0 if active == "CUDAExecutionProvider" else "CUDA provider did not initialise (see the ORT warnings above)")
PY

# -- 3. item 1: in-process ceilings on the GPU --------------------------------------------------
MODEL_DIR=$(dirname "$(ls "$MODELS"/*/generator.onnx | head -1)")
log "in-process ceilings on CUDA: $MODEL_DIR"
timeout 240 "$PY" bench/inproc.py "$MODEL_DIR" --provider cuda --secs 1.0 --json-out "$OUT/inproc-gpu.json" 2>&1 | tee "$OUT/inproc-gpu.txt"

# -- 4. items 2-3: the service under wrk -------------------------------------------------------
if ! command -v wrk >/dev/null; then
  if [ -d "${WRK_DEBS:-.wrk}" ]; then   # carried .deb files of wrk and libluajit (no network)
    mkdir -p /tmp/wrkroot && for f in "${WRK_DEBS:-.wrk}"/*.deb; do dpkg -x "$f" /tmp/wrkroot; done
    export PATH=/tmp/wrkroot/usr/bin:$PATH LD_LIBRARY_PATH=/tmp/wrkroot/usr/lib/x86_64-linux-gnu:$LD_LIBRARY_PATH
  else
    (apt-get update -qq && apt-get install -y -qq wrk) >/dev/null 2>&1 || true
  fi
fi
command -v wrk >/dev/null || { echo "wrk missing: apt-get install -y wrk (items 2-3 skipped)" >&2; exit 3; }
log "service under load on CUDA"
timeout 420 "$PY" bench/run.py --models-dir "$MODELS" --out "$OUT/load" --provider cuda \
  --systems ours,nobatch,ceiling --rounds 1 --duration 5 --warmup 1 \
  --loads "${LOADS:-1:1 8:1 64:1 256:1 1:16 8:16 64:16 256:16}" --score "8:1 8:16" \
  --sweep-n "" --sweep-c "" 2>&1 | tail -40
"$PY" bench/report.py "$OUT/load" > "$OUT/summary.md"
cat "$OUT/summary.md"
log "done: $OUT"

#!/usr/bin/env bash
# Start the built image, wait for /readyz, run deploy/scripts/smoke-check.py INSIDE the container
# (so /generate is answered in there), stop it. Models: the ones baked into the image, or a host
# folder of model folders mounted read-only at /models.
#
#   deploy/scripts/smoke-image.sh [MODELS_DIR|-] [IMAGE]     # "-": bundled; IMAGE gan-service:latest
#
# docker when a daemon answers; else buildah (`buildah run`, chroot isolation: it shares the host's
# network, so the server listens on PORT, default 39300, to avoid clashing with a dev server).
set -euo pipefail
cd "$(dirname "$0")/../.."

MODELS=${1:--}
IMAGE=${2:-gan-service:latest}
PORT=${PORT:-39300}
CHECK=$PWD/deploy/scripts/smoke-check.py
NAME=gan-smoke-$$
mount_models=()
if [ "$MODELS" != - ]; then
    mount_models=(-v "$(realpath "$MODELS"):/models:ro" -e GAN_MODELS_DIR=/models)
fi

if command -v docker >/dev/null && docker info >/dev/null 2>&1; then
    docker run -d --name "$NAME" --read-only --tmpfs /tmp "${mount_models[@]}" \
        -v "$CHECK:/smoke-check.py:ro" "$IMAGE" >/dev/null
    trap 'docker rm -f "$NAME" >/dev/null' EXIT
    run_inside() { docker exec "$NAME" "$@"; }
else
    B=(buildah --storage-driver "${BUILDAH_STORAGE_DRIVER:-vfs}")
    "${B[@]}" from --name "$NAME" "$IMAGE" >/dev/null
    "${B[@]}" run --isolation chroot "${mount_models[@]}" -v "$CHECK:/smoke-check.py:ro" \
        --env BENTOML_PORT="$PORT" "$NAME" -- bentoml serve service.service:GanService &
    server=$!
    stop() {
        # TERM `bentoml serve` itself (buildah-run -> chroot-runtime -> chroot-exec -> bentoml):
        # killing `buildah run` would kill the arbiter hard and orphan its worker.
        local pid=$server
        while [ -n "$pid" ] && ! tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q '^/opt/venv/bin/python3 /opt/venv/bin/bentoml serve'; do
            pid=$(ps -o pid= --ppid "$pid" | head -1 | tr -d ' ')
        done
        if [ -n "$pid" ]; then kill -TERM "$pid"; else kill -TERM "$server"; fi
        wait "$server" 2>/dev/null || true
        "${B[@]}" rm "$NAME" >/dev/null
    }
    trap stop EXIT
    run_inside() {
        "${B[@]}" run --isolation chroot -v "$CHECK:/smoke-check.py:ro" --env BENTOML_PORT="$PORT" \
            "$NAME" -- "$@"
    }
fi

start=$(date +%s)
until run_inside python3 -c "import os, urllib.request as u; u.urlopen('http://127.0.0.1:%s/readyz' % os.environ.get('BENTOML_PORT', '3000'), timeout=2)" 2>/dev/null; do
    if [ $(($(date +%s) - start)) -gt 120 ]; then echo "error: not ready after 120 s" >&2; exit 1; fi
    sleep 2
done
echo "ready after $(($(date +%s) - start)) s"
run_inside sh -c 'id; python3 -c "import torch" 2>&1 | tail -1; python3 /smoke-check.py'

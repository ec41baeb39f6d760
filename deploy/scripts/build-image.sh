#!/usr/bin/env bash
# Build the serving image from the top-level Dockerfile (what `make image` runs).
#
#   deploy/scripts/build-image.sh            # CPU image gan-service:latest
#   VARIANT=gpu IMAGE=gan-service:gpu deploy/scripts/build-image.sh
#
# Engine: docker when a daemon answers (`docker info`), else buildah
# (`buildah bud --isolation chroot --storage-driver vfs`: no daemon, works as root in a plain VM
# or a container). With buildah and no BASE_IMAGE given, it tries to pull the official
# python:3.11-slim-bookworm; when no registry can be reached it builds (once) and uses a local
# Debian bookworm base, localhost/gan-base:bookworm (deploy/scripts/build-base-image.sh).
#
# Env knobs: IMAGE (gan-service:latest), VARIANT (cpu|gpu), BASE_IMAGE, CUDA_IMAGE,
#   PIP_CA (CA bundle for pip in the build; default $PIP_CERT or pip's global.cert),
#   ENGINE (auto|docker|buildah), LOCAL_BASE_IMAGE (localhost/gan-base:bookworm),
#   BUILDAH_STORAGE_DRIVER (vfs), BUILDAH_ISOLATION (chroot), PULL_TIMEOUT (seconds, 60).
set -euo pipefail
cd "$(dirname "$0")/../.."

IMAGE=${IMAGE:-gan-service:latest}
VARIANT=${VARIANT:-cpu}
ENGINE=${ENGINE:-auto}
OFFICIAL_BASE=python:3.11-slim-bookworm
LOCAL_BASE_IMAGE=${LOCAL_BASE_IMAGE:-localhost/gan-base:bookworm}
DRIVER=${BUILDAH_STORAGE_DRIVER:-vfs}
ISOLATION=${BUILDAH_ISOLATION:-chroot}
PULL_TIMEOUT=${PULL_TIMEOUT:-60}

case "$VARIANT" in cpu | gpu) ;; *) echo "error: VARIANT must be cpu or gpu, not '$VARIANT'" >&2; exit 2 ;; esac

if [ "$ENGINE" = auto ]; then
    if command -v docker >/dev/null && docker info >/dev/null 2>&1; then
        ENGINE=docker
    elif command -v buildah >/dev/null; then
        ENGINE=buildah
    else
        echo "error: no docker daemon answers and buildah is not installed" >&2
        echo "       (Debian/Ubuntu: apt-get install buildah debootstrap)" >&2
        exit 1
    fi
fi

# The image bundles models/; an image without one still serves a mounted GAN_MODELS_DIR.
mkdir -p models
if ! compgen -G 'models/*/model.json' >/dev/null; then
    echo "warning: models/ has no model folder: the image bundles none (mount one, see docs/deploy.md)" >&2
fi

args=(--build-arg "VARIANT=$VARIANT" -t "$IMAGE" -f Dockerfile)
[ -n "${CUDA_IMAGE:-}" ] && args+=(--build-arg "CUDA_IMAGE=$CUDA_IMAGE")
# pip inside the build trusts only its own CA list: behind a TLS-intercepting proxy, hand it the
# host's bundle (PIP_CERT, as pip reads it here) as a build secret, which the image does not keep.
PIP_CA=${PIP_CA:-${PIP_CERT:-$(pip config get global.cert 2>/dev/null || true)}}
[ -n "$PIP_CA" ] && [ -s "$PIP_CA" ] && args+=(--secret "id=pip_cert,src=$PIP_CA")

start=$(date +%s)
case "$ENGINE" in
docker)
    [ -n "${BASE_IMAGE:-}" ] && args+=(--build-arg "BASE_IMAGE=$BASE_IMAGE")
    echo "+ docker build ${args[*]} ."
    docker build "${args[@]}" .
    end=$(date +%s)
    size="$(($(docker image inspect --format '{{.Size}}' "$IMAGE") / 1000000)) MB"
    ;;
buildah)
    B=(buildah --storage-driver "$DRIVER")
    if [ "$VARIANT" = cpu ] && [ -z "${BASE_IMAGE:-}" ]; then
        if "${B[@]}" inspect --type image "$OFFICIAL_BASE" >/dev/null 2>&1 \
            || timeout "$PULL_TIMEOUT" "${B[@]}" pull --quiet "docker.io/library/$OFFICIAL_BASE" >/dev/null 2>&1; then
            BASE_IMAGE=$OFFICIAL_BASE
        else
            echo "note: cannot pull $OFFICIAL_BASE (no registry?): using local base $LOCAL_BASE_IMAGE"
            if ! "${B[@]}" inspect --type image "$LOCAL_BASE_IMAGE" >/dev/null 2>&1; then
                deploy/scripts/build-base-image.sh "$LOCAL_BASE_IMAGE"
            fi
            BASE_IMAGE=$LOCAL_BASE_IMAGE
        fi
    fi
    [ -n "${BASE_IMAGE:-}" ] && args+=(--build-arg "BASE_IMAGE=$BASE_IMAGE")
    # --format docker: the OCI format has no HEALTHCHECK, and buildah would drop it.
    echo "+ ${B[*]} bud --isolation $ISOLATION --format docker --layers --force-rm ${args[*]} ."
    "${B[@]}" bud --isolation "$ISOLATION" --format docker --layers --force-rm "${args[@]}" .
    end=$(date +%s)
    size=$("${B[@]}" images --format '{{.Size}}' "$IMAGE" | head -1)
    ;;
*)
    echo "error: ENGINE must be auto, docker or buildah, not '$ENGINE'" >&2
    exit 2
    ;;
esac
echo "built $IMAGE ($VARIANT) with $ENGINE in $((end - start)) s; size $size"

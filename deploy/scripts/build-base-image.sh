#!/usr/bin/env bash
# Build a local Debian bookworm + Python 3.11 base image for the Dockerfile's BASE_IMAGE, for a
# machine that reaches Debian's mirror and PyPI but no container registry (so no
# python:3.11-slim-bookworm). Debian bookworm's python3 is 3.11, the version the project pins.
#
#   deploy/scripts/build-base-image.sh [IMAGE]        # default localhost/gan-base:bookworm
#
# Needs root, debootstrap and buildah (apt-get install debootstrap buildah). Env knobs:
#   DEBIAN_MIRROR (default http://deb.debian.org/debian), BUILDAH_STORAGE_DRIVER (default vfs).
# The image has python3 + venv + pip wheels + ca-certificates; no compilers, no apt lists, no docs.
set -euo pipefail

IMAGE=${1:-localhost/gan-base:bookworm}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
DRIVER=${BUILDAH_STORAGE_DRIVER:-vfs}
BUILDAH=(buildah --storage-driver "$DRIVER")

for tool in debootstrap buildah; do
    command -v "$tool" >/dev/null || { echo "error: $tool not found (apt-get install $tool)" >&2; exit 1; }
done
[ "$(id -u)" = 0 ] || { echo "error: debootstrap needs root" >&2; exit 1; }

work=$(mktemp -d /tmp/gan-base.XXXXXX)
trap 'rm -rf "$work"' EXIT
rootfs=$work/rootfs

echo "== debootstrap bookworm (minbase + python3) from $MIRROR"
debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
    bookworm "$rootfs" "$MIRROR" >"$work/debootstrap.log" 2>&1 \
    || { tail -30 "$work/debootstrap.log" >&2; exit 1; }

# Same sources as the official images, so `apt-get install` works in derived stages.
cat >"$rootfs/etc/apt/sources.list" <<EOF
deb $MIRROR bookworm main
deb $MIRROR bookworm-updates main
deb http://deb.debian.org/debian-security bookworm-security main
EOF

# Slim it down the way python:3.11-slim does: no apt lists/caches, docs, man pages, locales.
rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin "$rootfs"/var/cache/apt/archives/*.deb \
    "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/* \
    "$rootfs"/var/log/*.log "$rootfs"/var/log/apt/* "$rootfs"/tmp/*
find "$rootfs/usr/share/locale" -mindepth 1 -maxdepth 1 ! -name 'locale.alias' -exec rm -rf {} +
find "$rootfs/usr/lib/python3.11" -name '__pycache__' -type d -prune -exec rm -rf {} +
# debootstrap leaves the build host's name and resolver in; the runtime supplies its own.
: >"$rootfs/etc/hostname"
rm -f "$rootfs/etc/resolv.conf"

echo "== import rootfs as $IMAGE"
tar -C "$rootfs" --numeric-owner -cf "$work/rootfs.tar" .
ctr=$("${BUILDAH[@]}" from scratch)
"${BUILDAH[@]}" add "$ctr" "$work/rootfs.tar" / >/dev/null
"${BUILDAH[@]}" config \
    --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    --env LANG=C.UTF-8 \
    --cmd python3 \
    --label org.opencontainers.image.description="Debian bookworm minbase + python3 (3.11), local stand-in for python:3.11-slim-bookworm" \
    "$ctr"
"${BUILDAH[@]}" commit --rm "$ctr" "$IMAGE" >/dev/null
"${BUILDAH[@]}" images "$IMAGE"

#!/bin/sh
# The base image both Dockerfiles build FROM (their PYTHON_IMAGE), made from Debian's packages:
# no image registry is needed. A minimal bookworm (python3 is 3.11 there) with the venv module,
# the CA certificates and LightGBM's OpenMP runtime, imported as one layer. Skipped when the
# image exists already (`docker image rm` it to rebuild). Usage: deploy/base-image.sh [NAME]
set -eu
name="${1:-ltr-python:3.11-bookworm}"
mirror="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
if docker image inspect "$name" >/dev/null 2>&1; then
    echo "base image $name exists"
    exit 0
fi
root="$(mktemp -d /tmp/ltr-rootfs.XXXXXX)"
trap 'rm -rf "$root"' EXIT
debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates,libgomp1 \
    bookworm "$root" "$mirror"
rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
tar -C "$root" -c . | docker import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' \
    --change 'CMD ["python3"]' \
    - "$name"
echo "base image $name built"

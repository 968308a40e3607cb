#!/usr/bin/env bash
# Builds the Docker image meow-isaac:latest and converts it to an Apptainer image.
#
#   bash docker/cluster/build_apptainer.sh [OUT.sif]                   # docker + apptainer here
#   bash docker/cluster/build_apptainer.sh --archive meow-isaac.tar     # docker only: image -> tar
#   bash docker/cluster/build_apptainer.sh --from-archive meow-isaac.tar [OUT.sif]  # apptainer only
#
# OUT.sif defaults to meow-isaac.sif in the repository root (where train.slurm looks for it).
# Environment:
#   MEOW_TARGET=isaaclab|pypi   Dockerfile target (default isaaclab)
#   ISAACLAB_IMAGE=IMAGE        base image of the isaaclab target (default: the Dockerfile's)
#   SKIP_DOCKER_BUILD=1         use the meow-isaac:latest already in the Docker daemon
#   MEOW_BUILD_FLAGS=...        extra `apptainer build` flags, e.g. --fakeroot
#   FORCE=1                     overwrite an existing OUT.sif
# The conversion unpacks the whole image: point APPTAINER_TMPDIR at a disk with tens of GB free.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
image=meow-isaac:latest # Apptainer.def bootstraps from this tag

die() {
    echo "error: $*" >&2
    exit 1
}

mode=local
archive=""
case "${1:-}" in
--archive | --from-archive)
    [ "$#" -ge 2 ] || die "$1 needs a file name, e.g. $1 meow-isaac.tar"
    if [ "$1" = --archive ]; then mode=save; else mode=from-archive; fi
    archive=$2
    shift 2
    ;;
-h | --help)
    sed -n '2,15s/^# \{0,1\}//p' "${BASH_SOURCE[0]}"
    exit 0
    ;;
-*) die "unknown option $1 (see --help)" ;;
esac
[ "$mode" = save ] && [ "$#" -gt 0 ] && die "--archive takes no output .sif"
[ "$#" -le 1 ] || die "too many arguments (see --help)"
out=${1:-$repo/meow-isaac.sif}

need_docker() {
    command -v docker >/dev/null 2>&1 ||
        die "docker not found. Build the Docker image on a machine with Docker (--archive FILE.tar there), copy the tar here and run: $0 --from-archive FILE.tar"
    docker info >/dev/null 2>&1 ||
        die "cannot reach the Docker daemon (is it running, and may this user use it, e.g. via the docker group?)"
}

apptainer_bin() {
    if command -v apptainer >/dev/null 2>&1; then
        command -v apptainer
    elif command -v singularity >/dev/null 2>&1; then
        command -v singularity
    else
        die "apptainer not found (on clusters often: module load apptainer). To build the Docker image only: $0 --archive FILE.tar"
    fi
}

docker_build() {
    if [ "${SKIP_DOCKER_BUILD:-0}" = 1 ]; then
        docker image inspect "$image" >/dev/null 2>&1 || die "SKIP_DOCKER_BUILD=1 but there is no $image in the Docker daemon"
        return
    fi
    local args=(-f "$repo/docker/Dockerfile" --target "${MEOW_TARGET:-isaaclab}" -t "$image")
    if [ -n "${ISAACLAB_IMAGE:-}" ]; then
        args+=(--build-arg "ISAACLAB_IMAGE=$ISAACLAB_IMAGE")
    fi
    echo "[build] docker build ${args[*]} $repo"
    DOCKER_BUILDKIT=1 docker build "${args[@]}" "$repo"
}

apptainer_build() { # $1: definition file
    local apptainer flags=()
    apptainer=$(apptainer_bin)
    if [ -e "$out" ]; then
        [ "${FORCE:-0}" = 1 ] || die "$out exists; remove it or set FORCE=1"
        flags+=(--force)
    fi
    if [ -n "${MEOW_BUILD_FLAGS:-}" ]; then
        read -r -a extra <<<"$MEOW_BUILD_FLAGS"
        flags+=("${extra[@]}")
    fi
    echo "[build] $apptainer build ${flags[*]:-} $out $1"
    "$apptainer" build ${flags[@]+"${flags[@]}"} "$out" "$1" || die "apptainer build failed. As a non-root user without
  user namespaces, try MEOW_BUILD_FLAGS=--fakeroot; for 'no space left', set APPTAINER_TMPDIR."
    echo "[build] wrote $out"
}

case "$mode" in
local)
    apptainer_bin >/dev/null # fail before the long Docker build
    need_docker
    docker_build
    apptainer_build "$here/Apptainer.def"
    ;;
save)
    need_docker
    docker_build
    echo "[build] docker save $image -o $archive"
    docker save "$image" -o "$archive"
    echo "[build] wrote $archive; on the cluster: $0 --from-archive $archive"
    ;;
from-archive)
    [ -f "$archive" ] || die "no such file: $archive"
    archive=$(cd "$(dirname "$archive")" && pwd)/$(basename "$archive")
    apptainer_bin >/dev/null
    def=$(mktemp "${TMPDIR:-/tmp}/meow-isaac.XXXXXX.def")
    trap 'rm -f "$def"' EXIT
    sed -e 's|^Bootstrap:.*|Bootstrap: docker-archive|' -e "s|^From:.*|From: $archive|" \
        "$here/Apptainer.def" >"$def"
    apptainer_build "$def"
    ;;
esac

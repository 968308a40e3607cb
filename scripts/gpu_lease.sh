#!/usr/bin/env bash
# The steps of one lease of an offline GPU machine (docs/GPU.md, "The next GPU session"), each
# run from the checkout there, in calls made back to back while the machine stays warm:
#
#   bash scripts/gpu_lease.sh core    # carry .wheelhouse/part-01: install the core group and the
#                                     # checkout, run scripts/gpu_check.py without Isaac Lab
#   bash scripts/gpu_lease.sh keep    # carry .wheelhouse/part-NN: keep it outside the checkout
#   bash scripts/gpu_lease.sh isaac   # no carry: install the isaaclab group, then
#                                     # scripts/benchmark_isaac.py against rsl_rl PPO
#
# Settings (environment): PYTHON (python3), DEVICE (cuda:0), NUM_ENVS (4096), OUT (the reports'
# folder; the device tool sets it), WHEELHOUSE_IN (/root/in: the kept folders), WHEELHOUSE_WHEELS
# (/root/wheels), GPU_CHECK_ARGS and ISAAC_ARGS (more arguments, e.g. --rehearse for a CPU try).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
IN=${WHEELHOUSE_IN:-/root/in}
WHEELS=${WHEELHOUSE_WHEELS:-/root/wheels}
OUT=${OUT:-.}
step=${1:-}

keep() {
    mkdir -p "$IN"
    local found=0
    for dir in .wheelhouse/part-*; do
        [ -d "$dir" ] || continue
        cp -r "$dir" "$IN/"
        found=1
    done
    if [ "$found" = 0 ]; then
        echo "error: no .wheelhouse/part-NN folder in the checkout; valid: carry one (docs/GPU.md)" >&2
        exit 2
    fi
    echo "[lease] kept in $IN: $(cd "$IN" && ls -d part-* | tr '\n' ' ')($(du -sh "$IN" | cut -f1))"
}

install_kept() {  # install_kept [FOLDERS...]: assemble the given kept folders (all by default) and install
    local script="$IN/part-01/wheelhouse.py"
    [ -f "$script" ] || { echo "error: $IN/part-01 is missing; valid: run 'core' first" >&2; exit 2; }
    if [ $# -eq 0 ]; then set -- "$IN"/part-*; fi
    "$PY" "$script" assemble "$@" --out "$WHEELS"
    "$PY" "$script" install "$WHEELS"
    # the checkout's own packages, offline: their entry points register the Isaac task files
    "$PY" -m pip install -q --no-index --no-deps --no-build-isolation -e . -e exts/meow_isaac
}

case "$step" in
    core)
        keep
        install_kept "$IN/part-01"
        # shellcheck disable=SC2086
        "$PY" scripts/gpu_check.py --skip_isaac --out "$OUT/gpu_check.json" ${GPU_CHECK_ARGS:-}
        ;;
    keep)
        keep
        ;;
    isaac)
        install_kept
        # shellcheck disable=SC2086
        "$PY" scripts/benchmark_isaac.py --task Isaac-Ant --num_envs "${NUM_ENVS:-4096}" \
            --device "${DEVICE:-cuda:0}" --out "$OUT/isaac.json" ${ISAAC_ARGS:-}
        ;;
    *)
        echo "error: step '$step' is invalid; valid: core, keep, isaac" >&2
        exit 2
        ;;
esac

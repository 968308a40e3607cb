#!/usr/bin/env bash
# Runs a Python script with the Python that holds Isaac Lab, as Isaac Lab's own launcher does:
#   ./isaaclab.sh -p scripts/train.py --task Isaac-Ant-v0 --algo meow --headless
# Looks, in order, for: the launcher of an Isaac Lab install or container ($ISAACLAB_PATH/isaaclab.sh),
# the active virtualenv or conda Python, python3/python on PATH, and this repository's .venv.
set -euo pipefail

usage() {
    echo "usage: ./isaaclab.sh -p SCRIPT.py [ARGS...]   (runs SCRIPT with the Python that has Isaac Lab)" >&2
}
if [ "$#" -lt 2 ] || { [ "$1" != "-p" ] && [ "$1" != "--python" ]; }; then
    usage
    exit 2
fi
shift
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

if [ -n "${ISAACLAB_PATH:-}" ] && [ -x "$ISAACLAB_PATH/isaaclab.sh" ] &&
    [ "$(realpath "$ISAACLAB_PATH/isaaclab.sh")" != "$(realpath "${BASH_SOURCE[0]}")" ]; then
    exec "$ISAACLAB_PATH/isaaclab.sh" -p "$@"
fi

tried=()
for py in "${VIRTUAL_ENV:+$VIRTUAL_ENV/bin/python}" "${CONDA_PREFIX:+$CONDA_PREFIX/bin/python}" \
    python3 python "$HERE/.venv/bin/python"; do
    [ -n "$py" ] || continue
    command -v "$py" >/dev/null 2>&1 || continue
    tried+=("$py")
    if "$py" -c "import isaaclab" >/dev/null 2>&1; then
        exec "$py" "$@"
    fi
done
echo "error: no Python with Isaac Lab found (tried: ${tried[*]:-none}; ISAACLAB_PATH=${ISAACLAB_PATH:-unset})." \
    "Run 'bash scripts/setup.sh' (Isaac Lab 3.0 into .venv), activate an environment with isaaclab," \
    "or set ISAACLAB_PATH to an Isaac Lab install that has isaaclab.sh" >&2
exit 1

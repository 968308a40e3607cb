#!/usr/bin/env bash
# Runs a command so that a stop request reaches the Python process doing the work, exactly once.
#
#   docker/run_forwarding.sh CMD [ARG...]                               # the image's entrypoint
#   source docker/run_forwarding.sh; meow_run_forwarding CMD [ARG...]   # from another bash script
#
# Why: training runs behind launchers (./isaaclab.sh, Isaac Lab's launcher, apptainer). A shell that
# runs a child in the foreground does not pass signals on, and as a container's PID 1 it ignores
# them. train.py writes a checkpoint when it gets SIGTERM or SIGINT, so the signal has to reach
# the Python process, and only once: a second one would interrupt the checkpoint being written.
#
# How: the command runs in its own session (setsid), so Ctrl-C on a terminal and signals sent to
# this process group reach only this wrapper. The first SIGTERM or SIGINT the wrapper gets is sent
# as SIGTERM to the topmost Python processes below the command (found through /proc), or to the
# command itself when there is none; later ones are ignored (use SIGKILL to force). The wrapper
# waits for the command and exits with its status; after `source`, the function returns it and
# MEOW_FORWARDED_SIGNAL names the signal that was passed on (empty when none was).
#
# Run as a program with an interactive shell as the command (bash, sh), the shell is exec'd
# directly, so `docker run -it IMAGE bash` behaves as usual.
#
# MEOW_FORWARD_TO_WORKERS=1 (for torchrun, see docker/cluster/train_multinode.slurm): the signal goes
# one level further down, to the Python children of those processes when they have any, i.e. to
# torchrun's workers rather than to torchrun. The workers stop together and rank 0 writes the
# checkpoint; a signalled torchrun would instead kill its workers 30 s later, written or not.

MEOW_FORWARDED_SIGNAL=""
_meow_child=""

# PIDs of the topmost python* processes below PID $1 (children of a Python process are not listed);
# with $2 = workers, each is replaced by its own python* children when it has any.
_meow_python_pids() {
    local -A kids=()
    local dir key value pid kid comm
    for dir in /proc/[0-9]*; do
        while read -r key value _; do
            if [ "$key" = "PPid:" ]; then
                kids[$value]+="${dir#/proc/} "
                break
            fi
        done 2>/dev/null <"$dir/status" || true
    done
    local queue=("$1") found=()
    while [ "${#queue[@]}" -gt 0 ]; do
        pid=${queue[0]}
        queue=("${queue[@]:1}")
        for kid in ${kids[$pid]:-}; do
            comm=$(cat "/proc/$kid/comm" 2>/dev/null || true)
            if [[ $comm == python* ]]; then
                found+=("$kid")
            else
                queue+=("$kid")
            fi
        done
    done
    if [ "${2:-}" = workers ]; then
        local workers=() grandkid
        for pid in ${found[@]+"${found[@]}"}; do
            local below=()
            for grandkid in ${kids[$pid]:-}; do
                comm=$(cat "/proc/$grandkid/comm" 2>/dev/null || true)
                if [[ $comm == python* ]]; then below+=("$grandkid"); fi
            done
            if [ "${#below[@]}" -gt 0 ]; then workers+=("${below[@]}"); else workers+=("$pid"); fi
        done
        found=(${workers[@]+"${workers[@]}"})
    fi
    echo "${found[*]:-}"
}

_meow_forward() {
    local sig=$1 targets
    if [ -n "$MEOW_FORWARDED_SIGNAL" ]; then
        echo "[run_forwarding] SIG$sig ignored: a stop request was already passed on; waiting for the command to exit" >&2
        return 0
    fi
    MEOW_FORWARDED_SIGNAL=$sig
    [ -n "$_meow_child" ] || return 0 # not started yet: meow_run_forwarding passes it on at start
    local depth=""
    if [ "${MEOW_FORWARD_TO_WORKERS:-0}" = 1 ]; then depth=workers; fi
    targets=$(_meow_python_pids "$_meow_child" "$depth")
    if [ -n "$targets" ]; then
        echo "[run_forwarding] SIG$sig received: sending SIGTERM to python pid(s) $targets" >&2
        # shellcheck disable=SC2086  # one word per pid
        kill -s TERM $targets 2>/dev/null || true
    else
        echo "[run_forwarding] SIG$sig received: sending SIGTERM to pid $_meow_child" >&2
        kill -s TERM "$_meow_child" 2>/dev/null || true
    fi
}

meow_run_forwarding() {
    local status=0
    MEOW_FORWARDED_SIGNAL=""
    _meow_child=""
    trap '_meow_forward TERM' TERM
    trap '_meow_forward INT' INT
    if command -v setsid >/dev/null 2>&1; then
        setsid "$@" &
    else
        "$@" &
    fi
    _meow_child=$!
    if [ -n "$MEOW_FORWARDED_SIGNAL" ]; then
        kill -s TERM "$_meow_child" 2>/dev/null || true
    fi
    # A trapped signal interrupts `wait`; keep waiting until the command is gone, then collect its
    # status (bash keeps the status of a finished background command for a later `wait`).
    while kill -0 "$_meow_child" 2>/dev/null; do
        wait "$_meow_child" || true
    done
    wait "$_meow_child" || status=$?
    trap - TERM INT
    _meow_child=""
    return "$status"
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
    set -euo pipefail
    if [ "$#" -eq 0 ]; then
        echo "usage: $0 CMD [ARG...]" >&2
        exit 2
    fi
    case "$(basename -- "$1")" in
    bash | sh | dash | zsh) exec "$@" ;;
    esac
    status=0
    meow_run_forwarding "$@" || status=$?
    exit "$status"
fi

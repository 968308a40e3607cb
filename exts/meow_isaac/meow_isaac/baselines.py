"""The Isaac baselines of ``scripts/train.py --algo sac|ppo`` on Isaac tasks.

- ``--algo sac``: rl-games' SAC through Isaac Lab's own ``isaaclab train --rl_library rl_games``
  with ``meow_isaac/agents/rl_games_sac.yaml``.
- ``--algo ppo``: rsl-rl-lib's PPO through Isaac Lab's own ``isaaclab train --rl_library rsl_rl``
  with the task's rsl_rl settings.

:data:`BASELINES` offers them to :mod:`meow_baselines.registry` through its entry point group
(``meow.baselines``, entry ``isaaclab``: this package's env kind). They write their libraries'
own log layout (``logs/rsl_rl/...``, ``logs/rl_games/...``) live; ``scripts/compare.py`` reads
the return and throughput they log under MEow's names (:func:`meow_compare.curves.library_layout`),
so every run reads alike, a stopped one included.
"""

from __future__ import annotations

import contextlib
import functools
import math
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from meow_baselines import BaselineError


def isaaclab_cli() -> str:
    """Path of Isaac Lab's ``isaaclab`` command beside this Python (or on PATH)."""
    search = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    cli = shutil.which("isaaclab", path=search)
    if cli is None:
        raise BaselineError("Isaac Lab's 'isaaclab' command is not installed beside this Python")
    return cli


def _newest_run(root: Path, before: set[Path]) -> Path:
    runs = [p for p in root.glob("*/*") if p.is_dir() and p not in before]
    if not runs:
        raise BaselineError(f"the library wrote no run under {root}")
    return max(runs, key=lambda p: p.stat().st_mtime)


def train_isaaclab_baseline(
    algo: str, cfg, max_iterations: int | None, cwd: Path, deadline: float | None = None
) -> Path:
    """rsl_rl PPO (``ppo``) or rl-games SAC (``sac``) through Isaac Lab's CLI; returns the run dir.

    With ``deadline`` the run is stopped then (:func:`run_within`), its curve kept. Offline, the
    library's process gets the local asset root as MEow's own runs do (:mod:`meow_isaac.offline`).
    """
    from meow_isaac.env import offline_first_env_cfg

    task, n = cfg.env.id, cfg.env.num_envs
    # first: the library's process inherits the asset root chosen here, and a missing file is a
    # one-line error here rather than a traceback there
    offline_first_env_cfg(task, n, cfg.device, cfg.env.sim_overrides, cfg.seed)
    from isaaclab_tasks.utils.parse_cfg import load_cfg_from_registry

    import meow_isaac.tasks  # noqa: F401  (the 2.x ids and the SAC agent entry point)

    library = {"ppo": "rsl_rl", "sac": "rl_games"}[algo]
    cmd = [isaaclab_cli(), "train", "--rl_library", library, "--task", task, "--num_envs", str(n)]
    cmd += ["--device", cfg.device, "--seed", str(cfg.seed), *cfg.env.sim_overrides]
    if algo == "ppo":
        steps_per_iteration = load_cfg_from_registry(task, "rsl_rl_cfg_entry_point").num_steps_per_env * n
        cmd += [f"agent.device={cfg.device}"]
    else:
        steps_per_iteration = n  # rl_games_sac.yaml: one vectorized step per epoch
        cmd += ["--agent", "rl_games_sac_cfg_entry_point", f"agent.params.config.name={task}"]
        cmd += [f"agent.params.config.device={cfg.device}", f"agent.params.config.num_actors={n}"]
    iterations = max_iterations or max(1, math.ceil(cfg.runner.total_steps / steps_per_iteration))
    cmd += ["--max_iterations", str(iterations)]
    root = cwd / "logs" / library
    cwd.mkdir(parents=True, exist_ok=True)  # a runner.log_dir whose folders do not exist yet
    before = set(root.glob("*/*"))
    print(f"[meow] baseline: {' '.join(cmd[1:])}", flush=True)
    status, spent = run_within(cmd, cwd, deadline, env=library_env(cfg.torch_threads))
    if spent:
        minutes = cfg.runner.max_minutes
        print(f"[meow] wall-clock budget spent (runner.max_minutes={minutes:g}): {library} stopped")
    elif status != 0:
        raise BaselineError(f"isaaclab train --rl_library {library} failed with exit status {status}")
    run = _newest_run(root, before)
    return run


def library_env(torch_threads: int) -> dict[str, str]:
    """The environment of the library's process: ``torch_threads`` (> 0) as its thread count.

    The library's process sets no threads of its own, so torch and OpenMP take one per core; two
    such runs side by side then spin against each other (rsl_rl's learning phase went from 0.3 s
    to 10 s per iteration on 2 cores). ``0`` keeps the inherited environment."""
    env = dict(os.environ)
    if torch_threads > 0:
        env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = str(torch_threads)
    return env


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def run_within(
    cmd: list[str], cwd: Path, deadline: float | None, grace_s: float = 60.0, env: dict | None = None
) -> tuple[int, bool]:
    """Runs ``cmd`` until it exits or until ``deadline`` (``time.monotonic()``); returns its exit
    status and whether the deadline stopped it.

    At the deadline the command's whole process group gets SIGINT, the Ctrl-C that the libraries'
    training loops end on (their TensorBoard files are written as they go, so the curve up to
    there stays); after ``grace_s`` more seconds it is killed. A signal to this process (Ctrl-C, a
    scheduler's SIGTERM) is passed on to the group the same way, then re-raised here. ``env``:
    the command's environment (None: this process's).
    """
    # Ctrl-C's default action in the library's process even when this one was started with SIGINT
    # ignored (as a shell's background job is): Python then raises KeyboardInterrupt there
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, start_new_session=True, preexec_fn=_default_sigint)

    def interrupt(signum, frame) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    # signal handlers belong to the main thread; elsewhere SIGTERM keeps its handler
    main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, interrupt) if main else None

    def stop_group() -> None:
        """SIGINT to the group; SIGKILL if it is still there ``grace_s`` later."""
        for signum, wait_s in ((signal.SIGINT, grace_s), (signal.SIGKILL, None)):
            with contextlib.suppress(ProcessLookupError):  # the group is gone already
                os.killpg(proc.pid, signum)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=wait_s)
                return

    try:
        proc.wait(timeout=None if deadline is None else max(0.0, deadline - time.monotonic()))
        return proc.returncode, False
    except subprocess.TimeoutExpired:
        stop_group()
        return proc.returncode, True
    except BaseException:
        # interrupted here (Ctrl-C, SIGTERM as KeyboardInterrupt): the library's own run must stop too
        stop_group()
        raise
    finally:
        if main and previous is not None:  # None: a handler not set from Python, left as it is
            signal.signal(signal.SIGTERM, previous)


def run_isaaclab_baseline(
    algo: str, cfg, max_iterations: int | None = None, deadline: float | None = None
) -> Path:
    """Trains ``algo`` on the Isaac task of ``cfg``; returns the library's run directory.

    ``deadline``: ``time.monotonic()`` at which the library's run is stopped (:func:`run_within`)."""
    # Isaac Lab's CLI writes into <cwd>/logs/<library>/...
    log_dir = Path(cfg.runner.log_dir).resolve()
    if log_dir.name != "logs":
        print(f"[meow] note: Isaac Lab writes baseline runs to {log_dir.parent / 'logs'}, not {log_dir}")
    return train_isaaclab_baseline(algo, cfg, max_iterations, log_dir.parent, deadline=deadline)


BASELINES = {algo: functools.partial(run_isaaclab_baseline, algo) for algo in ("sac", "ppo")}
"""``--algo`` values on Isaac tasks and their trainers (:data:`meow_baselines.registry.Trainer`)."""

"""The Isaac baselines of ``scripts/train.py --algo sac|ppo`` on Isaac tasks.

- ``--algo sac``: rl-games' SAC through Isaac Lab's own ``isaaclab train --rl_library rl_games``
  with ``meow_isaac/agents/rl_games_sac.yaml``.
- ``--algo ppo``: rsl-rl-lib's PPO through Isaac Lab's own ``isaaclab train --rl_library rsl_rl``
  with the task's rsl_rl settings.

They write their libraries' own log layout (``logs/rsl_rl/...``, ``logs/rl_games/...``) live;
``scripts/compare.py`` reads the return and throughput they log under MEow's names
(:func:`meow.baselines.library_layout`), so every run reads alike, a stopped one included.
"""

from __future__ import annotations

import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

from meow.baselines import BaselineError


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


def train_isaaclab_baseline(algo: str, cfg, max_iterations: int | None, cwd: Path) -> Path:
    """rsl_rl PPO (``ppo``) or rl-games SAC (``sac``) through Isaac Lab's CLI; returns the run dir."""
    from isaaclab_tasks.utils.parse_cfg import load_cfg_from_registry

    import meow_isaac.tasks  # noqa: F401  (the 2.x ids and the SAC agent entry point)

    task, n = cfg.env.id, cfg.env.num_envs
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
    before = set(root.glob("*/*"))
    print(f"[meow] baseline: {' '.join(cmd[1:])}", flush=True)
    status = subprocess.run(cmd, cwd=cwd).returncode
    if status != 0:
        raise BaselineError(f"isaaclab train --rl_library {library} failed with exit status {status}")
    run = _newest_run(root, before)
    return run


def run_isaaclab_baseline(algo: str, cfg, max_iterations: int | None = None) -> Path:
    """Trains ``algo`` on the Isaac task of ``cfg``; returns the library's run directory."""
    # Isaac Lab's CLI writes into <cwd>/logs/<library>/...
    log_dir = Path(cfg.runner.log_dir).resolve()
    if log_dir.name != "logs":
        print(f"[meow] note: Isaac Lab writes baseline runs to {log_dir.parent / 'logs'}, not {log_dir}")
    return train_isaaclab_baseline(algo, cfg, max_iterations, log_dir.parent)

"""``env.kind: isaaclab``: MEow's env-kind registry entry for Isaac Lab (entry point group ``meow.envs``).

Everything an Isaac run needs beyond the core lives here: the task files this package ships,
the split of command-line overrides between MEow and Isaac Lab's config system, the default
physics preset and Isaac Lab's ``params/`` dump beside a run (the Isaac baselines are
:mod:`meow_isaac.baselines`, found through the ``meow.baselines`` entry points). Importing this
module does not import Isaac Lab; each hook imports what it uses.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from meow.envs.registry import EnvKind
from meow_isaac.task_configs import TASK_DIR

ISAACLAB_KEYS = ("physics", "presets")
"""Top-level override keys that belong to Isaac Lab's config resolution, not to MEow's."""


class IsaacLabKind(EnvKind):
    """Isaac Lab 3 tasks, one simulation per process, on the kit-less Newton engine unless told otherwise."""

    name = "isaaclab"
    eval_envs_allowed = False
    aliases_are_ids = False
    takes_sim_overrides = True
    training_video = True

    def make_env(
        self, env_id, num_envs, device, kwargs, render_mode=None, *, seed=None, sim_overrides=(), video=None
    ):
        from meow_isaac.env import make_isaaclab_env
        from meow_isaac.version_check import require_isaaclab

        require_isaaclab()
        return make_isaaclab_env(
            env_id,
            num_envs,
            device,
            overrides=list(sim_overrides),
            seed=seed,
            render_mode=render_mode,
            video=video,
            **kwargs,
        )

    def task_dirs(self) -> list[Path]:
        return [TASK_DIR]

    def split_overrides(self, overrides: Sequence[str]) -> tuple[list[str], list[str]]:
        """``agent.<key>`` is MEow's ``<key>``; ``physics``, ``presets`` and ``env.<key>`` where
        ``<key>`` is not one of MEow's env settings go to Isaac Lab."""
        from meow.config import EnvConfig

        ours, isaac = [], []
        env_keys = set(EnvConfig.__dataclass_fields__)
        for item in overrides:
            key = item.split("=", 1)[0].strip()
            if key.startswith("agent."):
                ours.append(item[len("agent.") :])
            elif key in ISAACLAB_KEYS or (
                key.startswith("env.") and "=" in item and key.split(".")[1] not in env_keys
            ):
                isaac.append(item)
            else:
                ours.append(item)
        return ours, isaac

    def configure(self, cfg) -> None:
        from meow_isaac.env import with_default_physics

        cfg.env.sim_overrides = with_default_physics(cfg.env.sim_overrides)

    def write_run_files(self, run_dir: Path, cfg, env) -> None:
        """Isaac Lab's layout: ``params/env.yaml`` (the env config) and ``params/agent.yaml`` (MEow's)."""
        from isaaclab.utils.io import dump_yaml
        from omegaconf import OmegaConf

        (run_dir / "params").mkdir(parents=True, exist_ok=True)
        dump_yaml(str(run_dir / "params" / "env.yaml"), env.env_cfg)
        OmegaConf.save(cfg, run_dir / "params" / "agent.yaml", resolve=True)

    def rl_games_observer(self):
        from rl_games.common.algo_observer import IsaacAlgoObserver  # the observer Isaac Lab uses

        return IsaacAlgoObserver()

"""Registers MEow on Isaac Lab's tasks; loaded by Isaac Lab through the ``isaaclab.tasks`` entry point.

For every task file this package ships (``meow_isaac/task_configs/*.yaml``, ``env.kind: isaaclab``):

- the Isaac Lab task gets a ``meow_cfg_entry_point`` (the task file) and an
  ``rl_games_meow_cfg_entry_point`` (an rl-games agent config with ``algo.name: meow``), beside
  its ``rsl_rl_cfg_entry_point`` and ``rl_games_cfg_entry_point``;
- the task file's aliases, the Isaac Lab 2.x ids users type (``Isaac-Ant-v0``), become gym ids
  of the same environment, so ``gym.make`` and Isaac Lab's own config resolution accept them.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import gymnasium as gym
from omegaconf import OmegaConf

from meow_isaac.task_configs import TASK_DIR
from meow_isaac.version_check import require_isaaclab

ENTRY_POINT = "meow_cfg_entry_point"
"""The gym-spec kwarg holding the path of a task's MEow settings."""
RL_GAMES_ENTRY_POINT = "rl_games_meow_cfg_entry_point"
"""The gym-spec kwarg holding the rl-games agent config that trains MEow on the task."""
SAC_ENTRY_POINT = "rl_games_sac_cfg_entry_point"
"""rl-games' own SAC (the ``--algo sac`` baseline) on the task."""

require_isaaclab()
import isaaclab_tasks  # noqa: E402, F401  (registers Isaac Lab's own tasks first)

from meow_isaac.robots.anymal_c import use_available_actuator_everywhere  # noqa: E402


def isaac_task_files(task_dir: Path = TASK_DIR) -> dict[str, tuple[str, list[str]]]:
    """``{task file path: (Isaac Lab id, [aliases])}`` for every ``env.kind: isaaclab`` task file."""
    found = {}
    for path in sorted(task_dir.glob("*.yaml")):
        env = OmegaConf.load(path).get("env", {})
        if env.get("kind") == "isaaclab":
            found[str(path)] = (env.id, list(env.get("aliases", [])))
    return found


def register() -> list[str]:
    """Adds the entry point and the alias ids; returns every id MEow is registered on."""
    ids = []
    for path, (task_id, aliases) in isaac_task_files().items():
        if task_id not in gym.registry:
            raise RuntimeError(
                f"{path} names Isaac Lab task '{task_id}', which this Isaac Lab does not register"
            )
        spec = gym.registry[task_id]
        spec.kwargs[ENTRY_POINT] = path
        stem = Path(path).stem.removeprefix("isaac_")
        spec.kwargs[RL_GAMES_ENTRY_POINT] = f"meow_isaac.agents:rl_games_meow_{stem}.yaml"
        spec.kwargs[SAC_ENTRY_POINT] = "meow_isaac.agents:rl_games_sac.yaml"
        ids.append(task_id)
        for alias in aliases:
            # gym.register refuses 'Name-v0' beside an unversioned 'Name'; a copied spec under
            # the alias is the same environment for gym.make and Isaac Lab's config loaders.
            # Unversioned, so that gym.make('Name') does not switch to the alias with a warning.
            alias_spec = dataclasses.replace(spec, id=alias, kwargs=dict(spec.kwargs))
            alias_spec.name, alias_spec.version = alias, None
            gym.registry[alias] = alias_spec
            ids.append(alias)
    return ids


def register_rl_games_algorithm() -> None:
    """Makes every rl-games ``Runner`` created from now on know the ``meow`` algorithm.

    Isaac Lab's ``isaaclab train --rl_library rl_games`` imports this module (entry point group
    ``isaaclab.tasks``) before it creates its ``Runner``; rl-games has no other registry that a
    package can add an algorithm to, so the Runner's constructor is extended here.
    """
    try:
        from rl_games.torch_runner import Runner
    except ImportError:
        return
    if getattr(Runner, "_meow_registered", False):
        return
    from meow.integrations.rl_games import register_algorithm

    original = Runner.__init__

    def __init__(self, *args, **kwargs):
        original(self, *args, **kwargs)
        register_algorithm(self)

    Runner.__init__ = __init__
    Runner._meow_registered = True


REGISTERED = register()
register_rl_games_algorithm()
use_available_actuator_everywhere()
"""Task ids (Isaac Lab 3.0 ids and 2.x aliases) that carry a MEow config entry point."""

"""Registers MEow on Isaac Lab's tasks; loaded by Isaac Lab through the ``isaaclab.tasks`` entry point.

For every Isaac task file in ``tasks/`` (``env.kind: isaaclab``):

- the Isaac Lab task gets a ``meow_cfg_entry_point`` (the task file), beside its
  ``rsl_rl_cfg_entry_point`` and ``rl_games_cfg_entry_point``;
- the task file's aliases, the Isaac Lab 2.x ids users type (``Isaac-Ant-v0``), become gym ids
  of the same environment, so ``gym.make`` and Isaac Lab's own config resolution accept them.
"""

from __future__ import annotations

import dataclasses

import gymnasium as gym
from omegaconf import OmegaConf

from meow.config import ROOT
from meow_isaac.env import require_isaaclab

ENTRY_POINT = "meow_cfg_entry_point"
"""The gym-spec kwarg holding the path of a task's MEow settings."""

require_isaaclab()
import isaaclab_tasks  # noqa: E402, F401  (registers Isaac Lab's own tasks first)


def isaac_task_files(root=ROOT) -> dict[str, tuple[str, list[str]]]:
    """``{task file path: (Isaac Lab id, [aliases])}`` for every ``env.kind: isaaclab`` task file."""
    found = {}
    for path in sorted((root / "tasks").glob("*.yaml")):
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


REGISTERED = register()
"""Task ids (Isaac Lab 3.0 ids and 2.x aliases) that carry a MEow config entry point."""

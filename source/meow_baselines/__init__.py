"""Baselines from the real libraries, started by ``scripts/train.py --algo sac|ppo``.

A sibling of the core package: it imports the core (``meow``), the core never imports it, so
training MEow loads none of it (nor Stable-Baselines3). ``scripts/train.py`` imports it only for
``--algo sac|ppo`` and to tell an SB3 SAC checkpoint given to ``--resume``.

- :mod:`meow_baselines.registry`: the baselines by env kind, the core's and those packages add
  through the ``meow.baselines`` entry points (:data:`~meow_baselines.registry.ENTRY_POINT_GROUP`;
  the Isaac Lab extension runs rl-games' SAC and rsl_rl's PPO, ``meow_isaac.baselines``), and
  :func:`~meow_baselines.registry.run_baseline`.
- :mod:`meow_baselines.sac`: ``--algo sac`` on Gymnasium tasks, Stable-Baselines3's SAC (its
  defaults: [256, 256] networks, lr 3e-4, buffer 1e6, learned temperature), logging MEow's
  metric names live, with checkpoints ``--resume`` continues.

Baselines are kept apart from the env kinds (:mod:`meow.envs`): a kind only makes environments,
and the registry needs nothing of the env registry. The return curves of the runs, the libraries'
own log layouts included, are read by :mod:`meow_compare.curves`.

This module holds the two exceptions only, so that every module of the package can import them
without importing another.
"""

from __future__ import annotations

from pathlib import Path


class BaselineError(ValueError):
    """A baseline that does not exist for this task, or a library run that failed."""


class BaselineInterrupted(Exception):
    """SIGINT/SIGTERM stopped a baseline run after it saved a checkpoint (``path``, ``step``)."""

    def __init__(self, path: Path, step: int) -> None:
        super().__init__(f"interrupted at env step {step:,}; saved {path}")
        self.path, self.step = path, step

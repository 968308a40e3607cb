"""The baselines of ``scripts/train.py --algo sac|ppo``, by env kind: the core's (SB3 SAC on
Gymnasium tasks, :mod:`meow_baselines.sac`) and those installed packages add through the
``meow.baselines`` entry points (:data:`ENTRY_POINT_GROUP`); the Isaac Lab extension runs rl-games'
SAC and rsl_rl's PPO (``meow_isaac.baselines``).

The registry needs nothing of the env registry (:mod:`meow.envs`): a kind only makes environments.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

from meow_baselines import BaselineError
from meow_baselines.sac import train_gymnasium_sac

ENTRY_POINT_GROUP = "meow.baselines"
"""Python entry point group of the baselines packages add: the entry's name is an ``env.kind``,
its object a mapping ``{--algo value: trainer}`` (:data:`Trainer`), e.g.::

    [project.entry-points."meow.baselines"]
    mysim = "mysim_meow.baselines:BASELINES"
"""

Trainer = Callable[[Any, int | None, float | None], Path]
"""``trainer(cfg, max_iterations, deadline)``: trains on the task of ``cfg`` and returns the run
directory. ``max_iterations``: ``--max_iterations`` as given (None: ``runner.total_steps`` decides),
for libraries that count iterations of their own; ``deadline``: ``time.monotonic()`` at which
training ends as if it had reached its steps (``runner.max_minutes``)."""


_CORE_BASELINES: dict[str, dict[str, Trainer]] = {"gymnasium": {"sac": train_gymnasium_sac}}
"""The baselines of the core's env kinds, by env kind (this package's own)."""


def baselines_of(kind: str) -> Mapping[str, Trainer]:
    """``{algo: trainer}`` for tasks of ``env.kind`` ``kind``: the core's, or an installed package's."""
    if kind in _CORE_BASELINES:
        return _CORE_BASELINES[kind]
    found = [ep for ep in entry_points(group=ENTRY_POINT_GROUP) if ep.name == kind]
    if not found:
        return {}
    try:
        return found[0].load()
    except ImportError as err:
        raise BaselineError(
            f"the baselines of env.kind={kind} ({found[0].value}) cannot be imported: {err}"
        ) from None


def offered_baselines() -> list[str]:
    """``"<algo> (<kind> tasks)"`` for every baseline this process can run (a package that fails
    to import adds none)."""
    kinds = sorted({*_CORE_BASELINES, *(ep.name for ep in entry_points(group=ENTRY_POINT_GROUP))})
    offered = []
    for kind in kinds:
        try:
            offered += [f"{algo} ({kind} tasks)" for algo in baselines_of(kind)]
        except BaselineError:
            continue
    return offered


def run_baseline(
    algo: str,
    cfg,
    max_iterations: int | None = None,
    run_dir: Path | None = None,
    resume: dict | None = None,
    deadline: float | None = None,
) -> Path:
    """Trains baseline ``algo`` on the task of ``cfg``; returns its run directory.

    ``cfg.runner.total_steps`` is used as it is (``scripts/train.py`` sets it, from
    ``--max_iterations`` too); ``max_iterations`` is passed on to the trainer (:data:`Trainer`).
    ``run_dir`` (instead of ``<log_dir>/sac/<task>/<timestamp>``) and ``resume`` (a checkpoint
    from :func:`read_sac_checkpoint`) are for SB3 SAC on Gymnasium tasks, the baseline that
    writes checkpoints. ``deadline``: ``time.monotonic()`` at which training ends as if it had
    reached its steps (the wall-clock budget ``runner.max_minutes``).
    """
    trainer = baselines_of(cfg.env.kind).get(algo)
    if trainer is None:
        raise BaselineError(
            f"--algo {algo} is not available for {cfg.env.id} ({cfg.env.kind} task); "
            f"valid: {', '.join(offered_baselines()) or 'none installed'}"
        )
    if trainer is train_gymnasium_sac:
        return train_gymnasium_sac(cfg, max_iterations, deadline, run_dir=run_dir, resume=resume)
    if run_dir is not None or resume is not None:
        raise BaselineError(
            f"--run_dir and --resume are not available for --algo {algo} on {cfg.env.id}; "
            "valid: MEow, or --algo sac on Gymnasium tasks"
        )
    return trainer(cfg, max_iterations, deadline)

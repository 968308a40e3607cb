"""Environment kinds: the core's own and those that installed packages add.

A kind (``env.kind`` in a task file) knows how to create its environments and everything a run
of it needs beyond the core: task files it ships, overrides meant for its own config system,
files written beside a run. (Baselines are not part of it: :mod:`meow_baselines.registry`,
outside the core, finds them through entry points of their own.) The core knows only
:class:`EnvKind`; a package adds a simulator by subclassing it and naming the class in its
metadata::

    [project.entry-points."meow.envs"]
    mysim = "mysim_meow.kind:MySimKind"

after which ``env.kind: mysim`` in a task file works without any change to the core.
"""

from __future__ import annotations

from collections.abc import Sequence
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import torch

from meow.envs.protocol import VecEnv

ENTRY_POINT_GROUP = "meow.envs"
"""Python entry point group whose members are :class:`EnvKind` subclasses (or instances)."""


class EnvKindError(ValueError):
    """An ``env.kind`` that no installed package provides, or a request a kind cannot serve."""


class EnvKind:
    """How the core creates and drives one kind of environment.

    Subclasses set :attr:`name` and implement :meth:`make_env`; every other hook has a default
    that suits a kind needing nothing beyond its environments.
    """

    name: str = ""
    """The ``env.kind`` value that selects this kind."""
    eval_envs_allowed: bool = True
    """False when a second (evaluation) environment cannot live in the same process."""
    aliases_are_ids: bool = True
    """True when a task file's aliases are environment ids of their own (Gymnasium's -v4 beside
    -v5); False when they name the same environment as ``env.id``."""
    takes_sim_overrides: bool = False
    """True when the kind reads ``env.sim_overrides`` (see :meth:`split_overrides`)."""
    training_video: bool = False
    """True when :meth:`make_env` can record training clips (its ``video`` argument)."""

    def make_env(
        self,
        env_id: str,
        num_envs: int,
        device: str | torch.device,
        kwargs: dict[str, Any],
        render_mode: str | None = None,
        *,
        seed: int | None = None,
        sim_overrides: Sequence[str] = (),
        video: dict[str, Any] | None = None,
    ) -> VecEnv:
        """Creates ``num_envs`` parallel environments of ``env_id`` returning tensors on ``device``.

        Args:
            env_id: the task's environment id.
            num_envs: parallel copies.
            device: where observations, rewards and flags are returned.
            kwargs: ``env.kwargs`` of the task.
            render_mode: ``rgb_array`` to render frames.
            seed: the run's seed (for kinds that seed at creation).
            sim_overrides: ``env.sim_overrides``, for the kind's own config system.
            video: ``{"dir", "subdir", "interval", "length"}`` for kinds with :attr:`training_video`.
        """
        raise NotImplementedError

    def task_dirs(self) -> list[Path]:
        """Directories of task files (``*.yaml``) this kind ships."""
        return []

    def split_overrides(self, overrides: Sequence[str]) -> tuple[list[str], list[str]]:
        """Splits command-line ``key=value`` items into MEow's and the kind's own (default: all MEow's)."""
        return list(overrides), []

    def configure(self, cfg: Any) -> None:
        """Completes a loaded config before validation (e.g. default ``env.sim_overrides``)."""

    def write_run_files(self, run_dir: Path, cfg: Any, env: VecEnv) -> None:
        """Writes files a run of this kind keeps beside MEow's (e.g. the simulator's config)."""

    def rl_games_observer(self) -> Any:
        """The rl-games algorithm observer for runs of this kind (None: rl-games' default)."""
        return None


class GymnasiumKind(EnvKind):
    """Any registered Gymnasium id, stepped as a synchronous vector env on the CPU."""

    name = "gymnasium"

    def make_env(
        self, env_id, num_envs, device, kwargs, render_mode=None, *, seed=None, sim_overrides=(), video=None
    ):
        _no_extras(self.name, sim_overrides, video)
        from meow.envs.gymnasium_env import GymnasiumVecEnv

        return _construct(GymnasiumVecEnv, env_id, kwargs, env_id, num_envs, device, render_mode=render_mode)


class MultiGoalKind(EnvKind):
    """The paper's 2-D multi-goal task, batched in torch."""

    name = "multigoal"

    def make_env(
        self, env_id, num_envs, device, kwargs, render_mode=None, *, seed=None, sim_overrides=(), video=None
    ):
        _no_extras(self.name, sim_overrides, video)
        from meow.envs.multigoal import MultiGoalEnv

        return _construct(MultiGoalEnv, env_id, kwargs, num_envs, device)


def _construct(cls: type, env_id: str, kwargs: dict[str, Any], *args: Any, **named: Any) -> VecEnv:
    """``cls(*args, **named, **kwargs)``; a keyword the environment does not take is a one-line error."""
    try:
        return cls(*args, **named, **kwargs)
    except TypeError as err:
        if "keyword argument" not in str(err):
            raise
        raise EnvKindError(
            f"env.kwargs={kwargs} is invalid for {env_id}: {err}; valid: arguments its constructor takes"
        ) from None


def _no_extras(kind: str, sim_overrides: Sequence[str], video: dict | None) -> None:
    if sim_overrides:
        raise EnvKindError(
            f"env.sim_overrides={list(sim_overrides)} is invalid for env.kind={kind}; valid: []"
        )
    if video is not None:
        raise EnvKindError(
            f"training videos are not recorded for env.kind={kind}; use scripts/play.py --video"
        )


_BUILTIN: dict[str, EnvKind] = {k.name: k for k in (GymnasiumKind(), MultiGoalKind())}
_loaded: dict[str, EnvKind] = {}
_registered: dict[str, EnvKind] = {}


def _installed() -> dict[str, Any]:
    """``{name: entry point}`` of the ``meow.envs`` group (modules are not imported here)."""
    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


def register_kind(kind: EnvKind) -> None:
    """Adds a kind in this process (programs that embed MEow, and tests); it wins over entry points."""
    if not kind.name:
        raise EnvKindError(f"{type(kind).__name__} has no name")
    _registered[kind.name] = kind


def unregister_kind(name: str) -> None:
    """Removes a kind added by :func:`register_kind`."""
    _registered.pop(name, None)


def kind_names() -> list[str]:
    """Every kind this process can create: the core's, registered ones and installed ones."""
    return sorted({*_BUILTIN, *_registered, *_installed()})


def get_kind(name: str) -> EnvKind:
    """The kind called ``name``, loading the installed package that provides it on first use."""
    if name in _registered:
        return _registered[name]
    if name in _BUILTIN:
        return _BUILTIN[name]
    if name not in _loaded:
        ep = _installed().get(name)
        if ep is None:
            raise EnvKindError(
                f"env.kind={name} is invalid; valid: {' | '.join(kind_names())} (no installed package "
                f"provides '{name}' in the '{ENTRY_POINT_GROUP}' entry points; install the one for it)"
            )
        try:
            obj = ep.load()
        except ImportError as err:
            raise EnvKindError(
                f"env.kind={name}: its package ({ep.value}) cannot be imported: {err}"
            ) from None
        kind = obj() if isinstance(obj, type) else obj
        if not isinstance(kind, EnvKind):
            raise EnvKindError(f"entry point {name} = {ep.value} is not an EnvKind")
        kind.name = name
        _loaded[name] = kind
    return _loaded[name]


def all_task_dirs() -> list[Path]:
    """Task-file directories of every kind that can be loaded (kinds that fail to import add none)."""
    dirs: list[Path] = []
    for name in kind_names():
        try:
            dirs += get_kind(name).task_dirs()
        except EnvKindError:
            continue
    return dirs

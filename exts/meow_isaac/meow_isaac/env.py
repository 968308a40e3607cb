"""Isaac Lab environments behind MEow's batched-tensor protocol (:class:`meow.envs.VecEnv`).

Everything stays on the simulation device: observations of one observation group, rewards,
terminated, truncated (time-outs) and the true final observation of every env that finished
in the step, which Isaac Lab exposes as ``extras["final_obs"]`` when ``compute_final_obs`` is on.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from meow.envs.protocol import StepResult

DEFAULT_KITLESS_PHYSICS = "newton_mjwarp"
"""The physics preset chosen when the command line names none and Isaac Sim is not installed."""


class IsaacLabVecEnv:
    """Wraps a created Isaac Lab ``ManagerBasedRLEnv`` or ``DirectRLEnv`` (or a gym wrapper of one).

    Actions in ``[-1, 1]`` are clipped, then mapped onto the action space when it is bounded,
    else multiplied by ``action_scale`` (Isaac Lab's locomotion and hand tasks take unbounded
    actions and scale them in their action terms; 1.0 hands them ``[-1, 1]``, as the
    rl-games configs of those tasks clip to).

    Args:
        env: the environment returned by ``gym.make`` (its ``cfg.compute_final_obs`` must be True).
        obs_group: the observation group the policy sees.
        action_scale: factor for unbounded action spaces.
        on_close: called after the environment is closed (e.g. to shut the simulation app down).
    """

    def __init__(
        self,
        env: Any,
        obs_group: str = "policy",
        action_scale: float = 1.0,
        on_close: Any = None,
    ) -> None:
        self.env = env
        self.unwrapped = env.unwrapped
        cfg = self.unwrapped.cfg
        if not getattr(cfg, "compute_final_obs", False):
            raise ValueError(
                "the Isaac Lab env was created with cfg.compute_final_obs=False; MEow needs the true "
                "final observation of finished episodes (set env_cfg.compute_final_obs=True before gym.make)"
            )
        obs_space = self.unwrapped.single_observation_space
        if obs_group not in obs_space.spaces:
            raise ValueError(
                f"observation group '{obs_group}' not in this env; valid: {', '.join(obs_space.spaces)}"
            )
        obs_shape, act_shape = obs_space[obs_group].shape, self.unwrapped.single_action_space.shape
        if len(obs_shape) != 1 or len(act_shape) != 1:
            raise ValueError(
                f"MEow needs flat observations and actions; this env has {obs_shape} and {act_shape}"
            )
        self.obs_group = obs_group
        self.num_envs = int(self.unwrapped.num_envs)
        self.device = torch.device(self.unwrapped.device)
        self.obs_dim = int(obs_shape[0])
        self.action_dim = int(act_shape[0])
        space = self.unwrapped.single_action_space
        low = torch.as_tensor(space.low, dtype=torch.float32, device=self.device)
        high = torch.as_tensor(space.high, dtype=torch.float32, device=self.device)
        if torch.isfinite(low).all() and torch.isfinite(high).all():
            self._offset, self._scale = (high + low) / 2, (high - low) / 2
        else:
            self._offset, self._scale = torch.zeros_like(low), torch.full_like(low, float(action_scale))
        self._on_close = on_close
        self.episode_log: dict[str, float] = {}
        """The latest per-episode statistics Isaac Lab reported in ``extras["log"]``."""
        self.last_infos: dict = {}
        """Isaac Lab's ``extras`` of the latest step (for rl-games observers)."""

    def reset(self, seed: int | None = None) -> Tensor:
        obs, _ = self.env.reset(seed=seed)
        return obs[self.obs_group].clone()

    def step(self, actions: Tensor) -> StepResult:
        scaled = self._offset + self._scale * actions.to(self.device).clamp(-1.0, 1.0)
        obs, rewards, terminated, truncated, extras = self.env.step(scaled)
        # Isaac Lab reuses its buffers between steps: copy what the caller keeps.
        obs = obs[self.obs_group].clone()
        terminated = terminated.to(torch.bool).clone()
        truncated = truncated.to(torch.bool) & ~terminated
        final = extras.get("final_obs")
        if final is None:
            # No env has finished since creation (compute_final_obs is on), so nothing is done.
            next_obs = obs
        else:
            # final_obs holds every env and is stale for envs that did not finish this step.
            done = (terminated | truncated).unsqueeze(-1)
            next_obs = torch.where(done, final[self.obs_group], obs)
        self.last_infos = extras
        log = extras.get("log")
        if log:
            self.episode_log = log
        return StepResult(
            obs=obs,
            rewards=rewards.to(torch.float32).clone(),
            terminated=terminated,
            truncated=truncated,
            next_obs=next_obs,
        )

    def render(self) -> Any:
        return self.env.render()

    def close(self) -> None:
        try:
            self.env.close()
        finally:
            if self._on_close is not None:
                self._on_close()


def default_physics() -> str | None:
    """``newton_mjwarp`` when Isaac Sim is not installed (kit-less), else Isaac Lab's own default."""
    return None if importlib.util.find_spec("isaacsim") is not None else DEFAULT_KITLESS_PHYSICS


def with_default_physics(overrides: Sequence[str]) -> list[str]:
    """``overrides`` plus ``physics=<default>`` when they choose no physics preset themselves."""
    overrides = list(overrides)
    if any(o.split("=", 1)[0] in ("physics", "presets") for o in overrides):
        return overrides
    physics = default_physics()
    return [*overrides, f"physics={physics}"] if physics else overrides


def offline_first_env_cfg(
    task: str, num_envs: int, device: str, overrides: Sequence[str] = (), seed: int | None = None
):
    """:func:`resolve_env_cfg` (default physics added) after the asset root is chosen: without
    ``ISAACSIM_ASSET_ROOT`` and with Isaac Lab's server out of reach, the local root is set (also
    for the processes this one starts) and given the files the task needs
    (:mod:`meow_isaac.offline`). Must run before Isaac Lab's task configs are first imported.
    ANYmal's actuator network, when its file is absent, becomes Isaac Lab's DC-motor model
    (:func:`meow_isaac.robots.anymal_c.actuator_note`), said in one line.

    Raises:
        meow_isaac.assets.AssetError: a USD file the task needs does not exist (one line).
    """
    from meow_isaac.assets import check_assets
    from meow_isaac.offline import choose_asset_root
    from meow_isaac.robots.anymal_c import actuator_note

    offline = choose_asset_root()
    env_cfg = resolve_env_cfg(task, num_envs, device, with_default_physics(overrides), seed)
    if offline is not None:
        offline.provide(env_cfg, task)
    check_assets(env_cfg, task)
    if note := actuator_note(env_cfg):
        print(note, flush=True)
    return env_cfg


def resolve_env_cfg(
    task: str, num_envs: int, device: str, overrides: Sequence[str] = (), seed: int | None = None
):
    """Isaac Lab's env config for ``task`` through its own resolution (presets, Hydra overrides)."""
    from isaaclab_tasks.utils import resolve_task_config

    import meow_isaac.tasks  # noqa: F401  (registers the Isaac Lab tasks and the 2.x ids)

    env_cfg, _ = resolve_task_config(task, None, overrides=[*overrides, f"env.scene.num_envs={num_envs}"])
    env_cfg.sim.device = str(device)
    env_cfg.compute_final_obs = True
    if seed is not None:
        env_cfg.seed = seed
    return env_cfg


def make_isaaclab_env(
    task: str,
    num_envs: int,
    device: str | torch.device = "cpu",
    overrides: Sequence[str] = (),
    obs_group: str = "policy",
    action_scale: float = 1.0,
    seed: int | None = None,
    headless: bool = True,
    render_mode: str | None = None,
    video: dict[str, Any] | None = None,
) -> IsaacLabVecEnv:
    """Creates an Isaac Lab task and wraps it in :class:`IsaacLabVecEnv`.

    Starts the simulation runtime the config needs (nothing for kit-less Newton, Isaac Sim for
    PhysX) and shuts it down on :meth:`IsaacLabVecEnv.close`. Without ``ISAACSIM_ASSET_ROOT`` and
    with Isaac Lab's asset server out of reach, a local asset root is used
    (:mod:`meow_isaac.offline`).

    Args:
        task: an Isaac Lab task id (3.0 ids and the 2.x ids registered by :mod:`meow_isaac.tasks`).
        num_envs: parallel environments.
        device: simulation device, where every returned tensor lives.
        overrides: Isaac Lab Hydra overrides, e.g. ``physics=newton_mjwarp``, ``env.episode_length_s=5``.
        obs_group: the observation group the policy sees.
        action_scale: see :class:`IsaacLabVecEnv`.
        seed: the env config's seed.
        headless: passed to the simulation launcher.
        render_mode: ``rgb_array`` to render frames.
        video: ``{"dir": run dir, "subdir": "train" | "play", "interval": steps, "length": steps}``
            records clips to ``<dir>/videos/<subdir>`` with Isaac Lab's own video recorders,
            which capture a visualizer (Kit, or Newton's OpenGL viewer).

    Raises:
        meow_isaac.assets.AssetError: a local USD file the task needs does not exist.
        ValueError: unknown task, or an env MEow cannot drive.
    """
    import gymnasium as gym

    device = str(torch.device(device))
    env_cfg = offline_first_env_cfg(task, num_envs, device, overrides, seed)
    from isaaclab.app import launch_simulation

    video_args = None
    if video is not None:
        from isaaclab_rl.entrypoints.common import pre_launch_video_config

        # Kit's viewport where Isaac Sim is installed, else Newton's OpenGL viewer.
        video_args = argparse.Namespace(
            video=True,
            video_length=video["length"],
            video_interval=video["interval"],
            headless=headless,
            visualizer=None if importlib.util.find_spec("isaacsim") else ["newton"],
        )
        pre_launch_video_config(env_cfg, video_args)
    stack = contextlib.ExitStack()
    launcher = {"headless": headless, "device": device}
    if video_args is not None:
        launcher["visualizer"] = video_args.visualizer
    if render_mode is not None or video is not None:
        launcher["enable_cameras"] = True
    try:
        stack.enter_context(launch_simulation(env_cfg, launcher))
        if video is not None:
            from isaaclab_rl.entrypoints.common import apply_video_recording

            apply_video_recording(env_cfg, str(video["dir"]), video_args, subdir=video["subdir"])
        env = gym.make(task, cfg=env_cfg, render_mode=render_mode)
        wrapped = IsaacLabVecEnv(env, obs_group=obs_group, action_scale=action_scale, on_close=stack.close)
    except BaseException as err:
        stack.close()
        if video is not None and isinstance(err, Exception):
            first = (str(err).strip().splitlines() or [type(err).__name__])[0]
            raise RuntimeError(
                f"video recording could not start: {first}. Isaac Lab records from a visualizer "
                "(Isaac Sim's Kit, or Newton's OpenGL viewer, which needs a GL/EGL driver); "
                "train without --video on machines that have neither"
            ) from err
        raise
    wrapped.env_cfg = env_cfg
    return wrapped

"""MEow as an rl-games algorithm: an agent and a player on rl-games' ``Runner``.

Both are thin: the agent runs the core :class:`~meow.runners.OffPolicyRunner` (same learner,
replay buffer, normalizer and checkpoint format) on the environment rl-games creates, and
writes rl-games' layout (``<train_dir>/<experiment>/nn/`` checkpoints, ``summaries/`` events).

    from rl_games.torch_runner import Runner
    from meow.integrations.rl_games import register_algorithm

    runner = Runner(IsaacAlgoObserver())
    register_algorithm(runner)
    runner.load(yaml_params)          # params.algo.name: meow
    runner.run({"train": True})

The rl-games agent config (``params.config``) takes rl-games' own SAC key names where the
meaning is MEow's too, and ``meow_task`` names the MEow task file that supplies the rest:

==================  ====================================================
rl-games key        MEow setting
==================  ====================================================
num_actors          env.num_envs
device              device
gamma               algo.gamma
critic_tau          algo.tau
init_alpha          algo.alpha (fixed: ``learnable_temperature`` must be false)
learning_rate       algo.lr (one optimizer for the whole flow)
grad_norm           algo.grad_clip
batch_size          algo.batch_size
replay_buffer_size  buffer.capacity
num_warmup_frames   runner.warmup_steps
max_frames          runner.total_steps
max_epochs          runner.total_steps = max_epochs x env.num_envs (epoch = vectorized step)
normalize_input     algo.normalize_obs
save_frequency      runner.checkpoint_interval, in epochs (vectorized steps)
meow_overrides      any other MEow ``key=value``
==================  ====================================================

Environments: an env registered with :func:`register_env` is a MEow ``VecEnv`` and is used
as it is. Any other rl-games env (Isaac Lab's ``RlGamesVecEnvWrapper`` through
``register_rl_games_env``) goes through :class:`RlGamesEnvBridge`, which takes time-outs
from ``infos["time_outs"]`` and true final observations from ``infos["final_obs"]`` (turn
on the Isaac Lab env cfg's ``compute_final_obs``).
"""

from __future__ import annotations

import os
import shutil
import signal
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from meow.envs.protocol import StepResult, VecEnv

ALGO_NAME = "meow"
VECENV_TYPE = "MEOW_VECENV"

# rl-games SAC key -> MEow key (same meaning)
KEY_MAP = {
    "num_actors": "env.num_envs",
    "device": "device",
    "gamma": "algo.gamma",
    "critic_tau": "algo.tau",
    "init_alpha": "algo.alpha",
    "learning_rate": "algo.lr",
    "grad_norm": "algo.grad_clip",
    "batch_size": "algo.batch_size",
    "replay_buffer_size": "buffer.capacity",
    "num_warmup_frames": "runner.warmup_steps",
    "max_frames": "runner.total_steps",
    "normalize_input": "algo.normalize_obs",
}


def _gym_box(low: float, high: float, dim: int):
    import gym
    import numpy as np

    return gym.spaces.Box(low, high, (dim,), dtype=np.float32)


class RlGamesEnv:
    """A MEow ``VecEnv`` seen by rl-games (its ``IVecEnv`` methods), with no conversion."""

    def __init__(self, env: VecEnv) -> None:
        self.env = env

    def step(self, actions: Tensor):
        result = self.env.step(actions)
        infos = dict(getattr(self.env, "last_infos", None) or {})
        infos.update(time_outs=result.truncated, final_obs=result.next_obs, meow_step=result)
        return result.obs, result.rewards, result.terminated | result.truncated, infos

    def reset(self) -> Tensor:
        return self.env.reset()

    def has_action_masks(self) -> bool:
        return False

    def get_number_of_agents(self) -> int:
        return 1

    def get_env_info(self) -> dict[str, Any]:
        return {
            "observation_space": _gym_box(-float("inf"), float("inf"), self.env.obs_dim),
            "action_space": _gym_box(-1.0, 1.0, self.env.action_dim),
            "agents": 1,
            "value_size": 1,
        }

    def seed(self, seed: int) -> None:
        pass

    def set_train_info(self, env_frames, *args, **kwargs) -> None:
        pass

    def get_env_state(self):
        return None

    def set_env_state(self, env_state) -> None:
        pass

    def close(self) -> None:
        self.env.close()


def register_env(name: str, creator: Callable[..., VecEnv]) -> None:
    """Registers ``creator`` (returns a MEow ``VecEnv``) as rl-games env ``name``."""
    from rl_games.common import env_configurations, vecenv

    vecenv.register(
        VECENV_TYPE,
        lambda config_name, num_actors, **kwargs: RlGamesEnv(
            env_configurations.configurations[config_name]["env_creator"](**kwargs)
        ),
    )
    env_configurations.register(name, {"vecenv_type": VECENV_TYPE, "env_creator": creator})


def _obs_tensor(obs: Any) -> Tensor:
    if isinstance(obs, dict):
        obs = obs["obs"]
    if isinstance(obs, dict):
        raise ValueError(f"MEow needs one flat observation tensor; the env gives groups {list(obs)}")
    return obs


class RlGamesEnvBridge:
    """Any rl-games ``IVecEnv`` as a MEow ``VecEnv`` (observations and actions as torch tensors)."""

    def __init__(self, vec_env: Any, env_info: dict[str, Any], device: torch.device) -> None:
        self.vec_env = vec_env
        obs_space, act_space = env_info["observation_space"], env_info["action_space"]
        if len(getattr(obs_space, "shape", ()) or ()) != 1 or len(act_space.shape) != 1:
            raise ValueError(f"MEow needs flat Box spaces; the env has {obs_space} and {act_space}")
        self.num_envs = None
        self.obs_dim, self.action_dim = int(obs_space.shape[0]), int(act_space.shape[0])
        self.device = device
        low = torch.as_tensor(act_space.low, dtype=torch.float32, device=device)
        high = torch.as_tensor(act_space.high, dtype=torch.float32, device=device)
        self._offset, self._scale = (high + low) / 2, (high - low) / 2
        self.last_infos: dict = {}
        self._warned = False

    def reset(self, seed: int | None = None) -> Tensor:
        obs = _obs_tensor(self.vec_env.reset()).to(self.device)
        self.num_envs = obs.shape[0]
        return obs

    def _final_obs(self, infos: dict) -> Tensor | None:
        final = infos.get("final_obs")
        if isinstance(final, dict):
            final = final.get("policy", final.get("obs"))
        return final

    def step(self, actions: Tensor) -> StepResult:
        obs, rewards, dones, infos = self.vec_env.step(self._offset + self._scale * actions.clamp(-1.0, 1.0))
        obs = _obs_tensor(obs).to(self.device).clone()
        dones = dones.to(self.device, torch.bool)
        time_outs = infos.get("time_outs")
        truncated = (
            dones & time_outs.to(self.device, torch.bool)
            if time_outs is not None
            else torch.zeros_like(dones)
        )
        final = self._final_obs(infos)
        if final is None:
            # Isaac Lab sets final_obs at the first reset; before that no env has finished.
            if not self._warned and bool(dones.any()):
                print(
                    "[meow] warning: the env reports no infos['final_obs']; finished episodes store the "
                    "reset observation as next observation (set compute_final_obs on Isaac Lab env cfgs)"
                )
                self._warned = True
            next_obs = obs
        else:
            next_obs = torch.where(dones.unsqueeze(-1), final.to(self.device), obs)
        self.last_infos = infos
        return StepResult(
            obs, rewards.to(self.device, torch.float32).clone(), dones & ~truncated, truncated, next_obs
        )

    def close(self) -> None:
        close = getattr(self.vec_env, "close", None) or getattr(
            getattr(self.vec_env, "env", None), "close", None
        )
        if close is not None:
            close()


def meow_env(vec_env: Any, env_info: dict[str, Any], device: torch.device) -> VecEnv:
    """The MEow ``VecEnv`` behind an rl-games env: itself when registered by :func:`register_env`."""
    if isinstance(vec_env, RlGamesEnv):
        return vec_env.env
    bridge = RlGamesEnvBridge(vec_env, env_info, device)
    bridge.reset()
    return bridge


def config_from_rl_games(params: dict[str, Any]):
    """MEow's run config from rl-games params: ``meow_task``'s settings < the mapped keys."""
    from meow.config import ConfigError, env_steps, load_config

    c = params["config"]
    if "meow_task" not in c and "meow_config" not in c:
        raise ConfigError("params.config.meow_task is missing; it names the MEow task file (see tasks/)")
    if c.get("learnable_temperature", False):
        raise ConfigError(
            "params.config.learnable_temperature=true is invalid; valid: false (MEow's alpha is fixed)"
        )
    shaper = c.get("reward_shaper") or {}
    scale, shift = getattr(shaper, "scale_value", 1), getattr(shaper, "shift_value", 0)
    if isinstance(shaper, dict):
        scale, shift = shaper.get("scale_value", 1), shaper.get("shift_value", 0)
    if (scale, shift) != (1, 0):
        raise ConfigError(
            f"params.config.reward_shaper scale_value={scale}, shift_value={shift} is invalid; "
            "valid: 1 and 0 "
            "(scale MEow's entropy with init_alpha instead)"
        )
    overrides = [f"{ours}={c[theirs]}" for theirs, ours in KEY_MAP.items() if c.get(theirs) not in (None, -1)]
    if params.get("seed") is not None:
        overrides.append(f"seed={params['seed']}")
    overrides += list(c.get("meow_overrides", []))
    if "meow_config" in c:  # a complete MEow config (scripts/train.py --runner rl_games)
        from meow.config import config_from_checkpoint

        cfg = config_from_checkpoint(c["meow_config"], overrides)
    else:
        cfg = load_config(c["meow_task"], overrides)
    if c.get("max_epochs", -1) > 0:  # Isaac Lab's --max_iterations: epochs are vectorized steps
        cfg.runner.total_steps = env_steps(c["max_epochs"], cfg.env.num_envs)
    if c.get("save_frequency", 0) > 0:
        cfg.runner.checkpoint_interval = env_steps(c["save_frequency"], cfg.env.num_envs)
    from meow.envs.registry import get_kind

    if not get_kind(cfg.env.kind).eval_envs_allowed:
        cfg.env.eval_envs = 0
    return cfg


class MEowAgent:
    """rl-games agent (``algo_factory`` builder ``meow``) that trains with MEow's core runner."""

    def __init__(self, base_name: str, params: dict[str, Any]) -> None:
        from rl_games.common import vecenv

        from meow.runners import OffPolicyRunner

        self.config = c = params["config"]
        self.name = base_name
        self.cfg = cfg = config_from_rl_games(params)
        self.device = self.ppo_device = torch.device(cfg.device)
        self.vec_env = vecenv.create_vec_env(c["env_name"], cfg.env.num_envs, **c.get("env_config", {}))
        self.env_info = self.vec_env.get_env_info()
        env = meow_env(self.vec_env, self.env_info, self.device)
        if env.num_envs != cfg.env.num_envs:
            cfg.env.num_envs = env.num_envs  # the env decides (Isaac Lab's --num_envs)
        self.games_to_track = c.get("games_to_track", 100)
        self.algo_observer = c["features"]["observer"]
        experiment = c.get("full_experiment_name") or c["name"] + datetime.now().strftime("_%d-%H-%M-%S")
        self.experiment_dir = Path(c.get("train_dir", "runs")) / experiment
        self.nn_dir, self.summaries_dir = self.experiment_dir / "nn", self.experiment_dir / "summaries"
        self.nn_dir.mkdir(parents=True, exist_ok=True)
        self.summaries_dir.mkdir(parents=True, exist_ok=True)
        name = c["name"]
        self.runner = OffPolicyRunner(
            cfg,
            env,
            None,
            log_dir=self.nn_dir,
            writer_dir=self.summaries_dir,
            checkpoint_name=lambda step: f"last_{name}_frame_{step}.pth",
        )
        self.writer = self.runner.writer
        # rl-games' Runner wraps ``agent.model`` in torch.compile when config.torch_compile is on
        # (its default). The update below does not call it; MEow's own is algo.capture.
        self.model = self.runner.alg.policy
        self.epoch_num = 0
        self.frame = 0

    def _on_step(self, result: StepResult) -> None:
        done = result.terminated | result.truncated
        self.algo_observer.process_infos(self.runner.env.last_infos or {}, done.nonzero(as_tuple=False))

    def _on_log(self, logged: dict[str, float]) -> None:
        self.frame = self.runner.global_step
        self.epoch_num = self.runner.global_step // self.runner.env.num_envs
        self.algo_observer.after_print_stats(self.frame, self.epoch_num, time.perf_counter() - self._start)

    def train(self) -> None:
        self.algo_observer.after_init(self)
        self._start = time.perf_counter()
        has_infos = hasattr(self.runner.env, "last_infos")
        try:
            self.runner.learn(on_step=self._on_step if has_infos else None, on_log=self._on_log)
        except KeyboardInterrupt:
            # Ctrl-C or a scheduler's SIGTERM: keep the step reached, then stop as asked.
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            print(f"[meow] interrupted; saved {self.runner.save()}")
            raise
        self.frame = self.runner.global_step
        # rl-games' players (and Isaac Lab's rl-games play script) look for nn/<name>.pth
        last = self.nn_dir / self.runner.checkpoint_name(self.runner.global_step)
        shutil.copyfile(last, self.nn_dir / f"{self.config['name']}.pth")

    def save(self, fn: str | os.PathLike) -> None:
        self.runner.save(Path(str(fn)).with_suffix(".pth"))

    def restore(self, fn: str | os.PathLike, set_epoch: bool = True) -> None:
        from meow.runners import read_checkpoint

        self.runner.load(read_checkpoint(fn, map_location=self.device))

    def get_full_state_weights(self) -> dict:
        return self.runner.state_dict()


def _player_base():
    from rl_games.common.player import BasePlayer

    return BasePlayer


def make_player(params: dict[str, Any]):
    """rl-games player (``player_factory`` builder ``meow``): the deterministic or sampled flow policy."""
    base = _player_base()

    class MEowPlayer(base):
        def __init__(self, params: dict[str, Any]) -> None:
            super().__init__(params)
            from meow.modules import EmpiricalNormalization, build_policy

            self.cfg = cfg = config_from_rl_games(params)
            self.device = torch.device(cfg.device)
            obs_dim, act_dim = self.observation_space.shape[0], self.action_space.shape[0]
            self.policy = build_policy(cfg, obs_dim, act_dim).to(self.device).eval()
            self.normalizer = (
                EmpiricalNormalization(obs_dim).to(self.device) if cfg.algo.normalize_obs else None
            )
            self.is_rnn = False
            self.model = self.policy

        def load_networks(self, params: dict[str, Any]) -> None:
            pass  # MEow's flow is built from the MEow config, not from rl-games' model builder

        def restore(self, fn: str | os.PathLike) -> None:
            from meow.algorithms import MEow
            from meow.runners import read_checkpoint

            ckpt = read_checkpoint(fn, map_location=self.device)
            alg = MEow(self.policy, self.normalizer, lr=1e-3, gamma=0.99, tau=0.005, grad_clip=1.0)
            alg.load_state_dict(ckpt["learner"])
            self.alg = alg

        def get_action(self, obs, is_deterministic: bool = False) -> Tensor:
            obs = _obs_tensor(obs).to(self.device)
            squeeze = obs.dim() == 1
            actions = self.alg.act(obs.unsqueeze(0) if squeeze else obs, deterministic=is_deterministic)
            low = torch.as_tensor(self.action_space.low, device=self.device)
            high = torch.as_tensor(self.action_space.high, device=self.device)
            actions = (high + low) / 2 + (high - low) / 2 * actions
            return actions[0] if squeeze else actions

        def reset(self) -> None:
            pass

    return MEowPlayer(params)


def rl_games_params(cfg, train_dir: str | os.PathLike, experiment: str, env_name: str = "meow") -> dict:
    """rl-games params that train the MEow run config ``cfg`` (what ``--runner rl_games`` runs)."""
    from omegaconf import OmegaConf

    return {
        "seed": cfg.seed,
        "algo": {"name": ALGO_NAME},
        "config": {
            "name": cfg.env.id,
            "env_name": env_name,
            "device": cfg.device,
            "num_actors": cfg.env.num_envs,
            "meow_config": OmegaConf.to_container(cfg, resolve=True),
            "train_dir": str(train_dir),
            "full_experiment_name": experiment,
            "reward_shaper": {},
            "games_to_track": 100,
            "player": {"use_vecenv": True, "deterministic": True},
        },
    }


def register_algorithm(runner: Any) -> Any:
    """Adds the ``meow`` agent and player to an rl-games ``Runner``; returns the runner."""
    runner.algo_factory.register_builder(ALGO_NAME, lambda **kwargs: MEowAgent(**kwargs))
    runner.player_factory.register_builder(ALGO_NAME, lambda **kwargs: make_player(**kwargs))
    return runner

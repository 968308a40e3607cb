"""Evaluation episodes: the return of the deterministic or the sampled policy, and the flow's
value calibration (its exact soft V at the start state against the soft return it then earns)."""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch
from torch import Tensor, nn

from meow.envs.protocol import VecEnv
from meow.modules import FlowPolicy
from meow.utils.checks import check_choice
from meow.utils.seeding import isolated_rng

EVAL_MODES = ("deterministic", "stochastic", "both")
"""``runner.eval_mode``: which policy the evaluation episodes run (``both``: one episode of each
per eval env, from the same start states)."""


def eval_passes(eval_mode: str) -> tuple[bool, ...]:
    """The ``deterministic`` flags of the passes that ``eval_mode`` runs, deterministic first."""
    check_choice("runner.eval_mode", eval_mode, EVAL_MODES)
    return {"deterministic": (True,), "stochastic": (False,), "both": (True, False)}[eval_mode]


class Episodes(NamedTuple):
    """One episode per eval env; ``value_v0`` and ``soft_return`` only for sampled actions."""

    returns: Tensor
    """Undiscounted return of each episode, ``(N,)``."""
    value_v0: Tensor | None = None
    """``min_k V_k(s_0)`` of the online flow at each episode's first observation, ``(N,)``."""
    soft_return: Tensor | None = None
    """``sum_t gamma^t (r_t - alpha log pi(a_t|s_t))`` from ``s_0``, plus ``gamma^T min_k V_k(s_T)``
    when the episode ends by a time-out after ``T`` steps, ``(N,)``."""


class StochasticEvaluation(NamedTuple):
    """One stochastic evaluation: return statistics and the means of the value calibration."""

    step: int
    mean: float
    std: float
    value_v0: float
    soft_return: float

    @property
    def value_error(self) -> float:
        """``value_v0 - soft_return``: positive when the flow overestimates its soft value."""
        return self.value_v0 - self.soft_return


@torch.no_grad()
def run_episodes(
    env: VecEnv,
    policy: FlowPolicy,
    normalizer: nn.Module,
    *,
    deterministic: bool,
    seed: int,
    gamma: float,
    device: torch.device,
    act: Callable[[Tensor], Tensor] | None = None,
    max_steps: int = 100_000,
    latent_scale: float = 1.0,
    value_scale: float | Tensor = 1.0,
) -> Episodes:
    """Runs one episode in each env of ``env``, reset with ``seed``.

    Every random generator is seeded with ``seed`` for the episodes and put back afterwards, so an
    evaluation is reproducible and leaves a training run's random stream where it was.

    Args:
        env: the evaluation envs.
        policy: the online flow (switched to eval mode: no dropout).
        normalizer: applied to observations before the flow.
        deterministic: the latent-zero action; otherwise sampled actions, with the value calibration.
        seed: seeds the env reset and the random generators.
        gamma: discount of the soft return (the learner's).
        device: where the flow lives.
        act: the deterministic policy (e.g. the learner's captured ``act``); default: the flow's.
        max_steps: a RuntimeError if some episode has not ended after this many steps.
        latent_scale: sampled actions draw the flow's latent at this scale (1: the policy itself;
            see :meth:`FlowPolicy.sample`); the value calibration still uses ``log pi``.
        value_scale: the reward scale the flow's values are in (:class:`~meow.modules.RewardScale`;
            1: raw rewards): ``V`` and the entropy terms are multiplied by it, so that the value
            calibration is in the task's own reward units.
    """
    policy.eval()
    n = env.num_envs
    returns = torch.zeros(n, device=device)
    soft_return = torch.zeros(n, device=device)
    running = torch.ones(n, dtype=torch.bool, device=device)
    value_v0 = None
    with isolated_rng(seed):
        obs = env.reset(seed=seed).to(device)
        if not deterministic:
            value_v0 = value_scale * policy.values(normalizer(obs)).min(0).values
        discount = 1.0
        for _ in range(max_steps):
            if deterministic:
                action = act(obs) if act is not None else policy.deterministic(normalizer(obs))
            else:
                # A plain call, not the learner's captured act: the log-density comes with the sample.
                action, log_prob = policy.sample(normalizer(obs), latent_scale)
            result = env.step(action)
            rewards = result.rewards.to(device)
            terminated, truncated = result.terminated.to(device), result.truncated.to(device)
            returns += torch.where(running, rewards, torch.zeros_like(rewards))
            if not deterministic:
                soft = rewards - value_scale * policy.alpha * log_prob
                soft_return += torch.where(running, discount * soft, torch.zeros_like(soft))
                # A time-out cuts the sum that the critic's target would have bootstrapped: add
                # gamma^T V(s_T) at the true final observation, as the learner's target does.
                timeout = running & truncated & ~terminated
                next_v = value_scale * policy.values(normalizer(result.next_obs.to(device))).min(0).values
                soft_return += torch.where(timeout, discount * gamma * next_v, torch.zeros_like(next_v))
            running &= ~(terminated | truncated)
            obs = result.obs.to(device)
            discount *= gamma
            if not running.any():
                break
        else:
            raise RuntimeError(f"evaluation episodes did not end within {max_steps} steps")
    if deterministic:
        return Episodes(returns)
    return Episodes(returns, value_v0, soft_return)

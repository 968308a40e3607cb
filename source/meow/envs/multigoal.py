"""The 2-D multi-goal point mass of the soft Q-learning and MEow papers, batched in torch."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from meow.envs.protocol import StepResult


class MultiGoalEnv:
    """A point in the plane moved by velocity actions towards one of four goals.

    The state is the position, the action a velocity in ``[-1, 1]^2``, and the reward
    ``-actuation_cost * |a|^2 - distance_cost * (distance to the nearest goal)``, plus
    ``goal_reward`` on reaching a goal, which ends the episode. Episodes start near the
    origin and are cut after ``horizon`` steps. Every optimal policy from the origin is
    multi-modal: the four goals are equally good.

    Args:
        num_envs: number of point masses.
        device: where state and outputs live.
        goal_reward: bonus for reaching a goal.
        actuation_cost: weight of the squared action norm.
        distance_cost: weight of the distance to the nearest goal.
        init_sigma: standard deviation of the start position around the origin.
        goal_threshold: distance under which a goal counts as reached.
        bound: positions are clipped to ``[-bound, bound]^2``.
        horizon: time limit in steps.
    """

    GOALS = ((5.0, 0.0), (-5.0, 0.0), (0.0, 5.0), (0.0, -5.0))

    def __init__(
        self,
        num_envs: int = 1,
        device: str | torch.device = "cpu",
        goal_reward: float = 10.0,
        actuation_cost: float = 30.0,
        distance_cost: float = 1.0,
        init_sigma: float = 0.1,
        goal_threshold: float = 1.0,
        bound: float = 7.0,
        horizon: int = 30,
    ) -> None:
        self.num_envs = num_envs
        self.device = torch.device(device)
        self.obs_dim = 2
        self.action_dim = 2
        self.goal_reward = goal_reward
        self.actuation_cost = actuation_cost
        self.distance_cost = distance_cost
        self.init_sigma = init_sigma
        self.goal_threshold = goal_threshold
        self.bound = bound
        self.horizon = horizon
        self.goals = torch.tensor(self.GOALS, device=self.device)
        self.generator = torch.Generator(device=self.device)
        self.position = torch.zeros(num_envs, 2, device=self.device)
        self.elapsed = torch.zeros(num_envs, dtype=torch.long, device=self.device)

    def _start_positions(self, n: int) -> Tensor:
        return self.init_sigma * torch.randn(n, 2, device=self.device, generator=self.generator)

    def reset(self, seed: int | None = None) -> Tensor:
        if seed is not None:
            self.generator.manual_seed(seed)
        self.position = self._start_positions(self.num_envs)
        self.elapsed.zero_()
        return self.position.clone()

    def goal_distances(self, position: Tensor) -> Tensor:
        """Distance of each position ``(N, 2)`` to each goal, ``(N, 4)``."""
        return torch.cdist(position, self.goals)

    def step(self, actions: Tensor) -> StepResult:
        actions = actions.to(self.device).clamp(-1.0, 1.0)
        next_obs = (self.position + actions).clamp(-self.bound, self.bound)
        nearest = self.goal_distances(next_obs).min(-1).values
        terminated = nearest < self.goal_threshold
        rewards = (
            -self.actuation_cost * actions.square().sum(-1)
            - self.distance_cost * nearest
            + self.goal_reward * terminated.float()
        )
        self.elapsed += 1
        truncated = (self.elapsed >= self.horizon) & ~terminated
        done = terminated | truncated
        obs = torch.where(done.unsqueeze(-1), self._start_positions(self.num_envs), next_obs)
        self.elapsed = torch.where(done, torch.zeros_like(self.elapsed), self.elapsed)
        self.position = obs
        return StepResult(obs.clone(), rewards, terminated, truncated, next_obs)

    def state_dict(self) -> dict:
        """Positions, step counters and the reset generator, for exact resumption."""
        return {
            "position": self.position.clone(),
            "elapsed": self.elapsed.clone(),
            "generator": self.generator.get_state(),
        }

    def load_state_dict(self, state: dict) -> None:
        """Restores :meth:`state_dict`."""
        self.position = state["position"].to(self.device)
        self.elapsed = state["elapsed"].to(self.device)
        self.generator.set_state(state["generator"])

    def close(self) -> None:
        pass


@torch.no_grad()
def origin_rollouts(
    act: Callable[[Tensor], Tensor],
    trajectories: int = 500,
    horizon: int = 100,
    seed: int = 0,
    device: str | torch.device = "cpu",
) -> tuple[Tensor, Tensor]:
    """Trajectories started exactly at the origin, and the goal each one ends at.

    Args:
        act: maps observations ``(N, 2)`` to actions in ``[-1, 1]^2`` (e.g. the sampling policy).
        trajectories: number of independent trajectories.
        horizon: steps each trajectory may take.
        seed: seeds the environment (the start positions are exact, so only ``act`` draws).
        device: where the rollout runs.

    Returns:
        ``paths`` of shape ``(horizon + 1, N, 2)``: the positions from the origin on; a trajectory
        that reached a goal stays at its last position. ``reached`` of shape ``(N,)``: the index
        of the goal in :attr:`MultiGoalEnv.GOALS` each trajectory reached, or ``len(GOALS)`` for
        none within ``horizon`` steps.
    """
    env = MultiGoalEnv(trajectories, device, init_sigma=0.0, horizon=horizon)
    obs = env.reset(seed=seed)
    paths = [obs.clone()]
    reached = torch.full((trajectories,), len(MultiGoalEnv.GOALS), device=env.device)
    running = torch.ones(trajectories, dtype=torch.bool, device=env.device)
    for _ in range(horizon):
        result = env.step(act(obs))
        goal = env.goal_distances(result.next_obs).argmin(-1)
        reached = torch.where(running & result.terminated, goal, reached)
        # a finished trajectory's env restarts at the origin: keep its final position instead
        paths.append(torch.where(running.unsqueeze(-1), result.next_obs, paths[-1]))
        running &= ~(result.terminated | result.truncated)
        obs = result.obs
    return torch.stack(paths), reached


@torch.no_grad()
def goal_histogram(
    act: Callable[[Tensor], Tensor],
    trajectories: int = 500,
    horizon: int = 100,
    seed: int = 0,
    device: str | torch.device = "cpu",
) -> Tensor:
    """How often trajectories started exactly at the origin end at each goal.

    Args: as :func:`origin_rollouts`.

    Returns:
        Counts of shape ``(5,)``: one per goal in :attr:`MultiGoalEnv.GOALS` order, then the
        number of trajectories that reached no goal.
    """
    _, reached = origin_rollouts(act, trajectories, horizon, seed, device)
    return torch.bincount(reached, minlength=len(MultiGoalEnv.GOALS) + 1)

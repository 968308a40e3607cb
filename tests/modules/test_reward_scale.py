"""The reward scale: a running scale of the discounted return, computed as SimbaV2 states it."""

from __future__ import annotations

import math

import pytest
import torch

from meow.algorithms import MEow
from meow.modules import FlowPolicy, RewardScale
from meow.storage import TransitionBatch


def _by_hand(rewards: list[list[float]], dones: list[list[bool]], gamma: float, g_max: float) -> float:
    """The scale after a reward stream, from plain Python: every env's discounted return at every
    step, their population variance, and the largest magnitude."""
    returns, seen = [0.0] * len(rewards[0]), []
    for step_rewards, step_dones in zip(rewards, dones, strict=True):
        for i, (r, d) in enumerate(zip(step_rewards, step_dones, strict=True)):
            returns[i] = gamma * returns[i] + r
            seen.append(returns[i])
            if d:
                returns[i] = 0.0
    mean = sum(seen) / len(seen)
    var = sum((g - mean) ** 2 for g in seen) / len(seen)
    return max(math.sqrt(var + 1e-8), max(abs(g) for g in seen) / g_max)


def _stream(steps: int, envs: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    rewards = torch.randn(steps, envs, generator=g) * 3.0 + 1.0
    dones = torch.rand(steps, envs, generator=g) < 0.05
    return rewards, dones


@pytest.mark.parametrize("g_max", [5.0, 1000.0])
def test_the_scale_of_a_known_reward_stream(g_max):
    rewards, dones = _stream(300, 4)
    scale = RewardScale(4, gamma=0.97, g_max=g_max)
    for r, d in zip(rewards, dones, strict=True):
        scale.update(r, d)
    expected = _by_hand(rewards.tolist(), dones.tolist(), 0.97, g_max)
    assert scale.scale.item() == pytest.approx(expected, rel=1e-5)
    assert torch.allclose(scale(rewards[0]), rewards[0] / expected, rtol=1e-5)


def test_the_bound_on_the_largest_return_binds_where_the_return_barely_varies():
    """A constant reward with no episode end: G climbs towards 1 / (1 - gamma) with a small spread
    late on; the scale keeps every normalised return within g_max."""
    scale = RewardScale(1, gamma=0.9, g_max=2.0)
    for _ in range(500):
        scale.update(torch.ones(1), torch.zeros(1, dtype=torch.bool))
    largest = sum(0.9**t for t in range(500))
    assert scale.scale.item() == pytest.approx(largest / 2.0, rel=1e-5)
    assert scale.scale.item() > math.sqrt(scale.moments.var.item())


def test_an_episode_end_resets_that_env_only():
    scale = RewardScale(2, gamma=0.5)
    scale.update(torch.tensor([1.0, 1.0]), torch.tensor([True, False]))
    scale.update(torch.tensor([2.0, 2.0]), torch.tensor([False, False]))
    assert scale.returns.tolist() == [2.0, 2.5]


def test_the_state_restores_the_same_scale_and_its_future():
    rewards, dones = _stream(200, 3, seed=1)
    a, b = RewardScale(3, gamma=0.99), RewardScale(3, gamma=0.99)
    for r, d in zip(rewards[:100], dones[:100], strict=True):
        a.update(r, d)
    b.load_state_dict(a.state_dict())
    for r, d in zip(rewards[100:], dones[100:], strict=True):
        a.update(r, d)
        b.update(r, d)
    assert torch.equal(a.scale, b.scale) and torch.equal(a.returns, b.returns)


def test_a_bad_bound_is_a_one_line_error():
    with pytest.raises(ValueError, match=r"^algo.reward_norm_max=0.0 is invalid; valid: a number > 0$"):
        RewardScale(1, gamma=0.99, g_max=0.0)


def _windows(n: int = 32) -> TransitionBatch:
    g = torch.Generator().manual_seed(2)
    return TransitionBatch(
        obs=torch.randn(n, 3, 4, generator=g),
        actions=torch.rand(n, 3, 2, generator=g) * 1.8 - 0.9,
        rewards=torch.randn(n, 3, generator=g) * 10,
        next_obs=torch.randn(n, 3, 4, generator=g),
        terminated=(torch.rand(n, 3, generator=g) < 0.2).float(),
        truncated=torch.rand(n, 3, generator=g) < 0.2,
    )


def test_the_learner_divides_the_rewards_of_its_n_step_targets_by_the_scale():
    torch.manual_seed(0)
    policy = FlowPolicy(4, 2, alpha=0.2, log_sigma_min=-2.0, log_sigma_max=0.5)
    scale = RewardScale(1, gamma=0.99)
    scale.scale.fill_(7.0)
    scaled = MEow(policy, n_step=3, reward_scale=scale)
    raw = MEow(policy, n_step=3)
    raw.target.load_state_dict(scaled.target.state_dict())
    b = _windows()
    with torch.no_grad():
        got = scaled.soft_target(b)["target"]
        want = raw.soft_target(b._replace(rewards=b.rewards / 7.0))["target"]
        unscaled = raw.soft_target(b)["target"]
    assert torch.allclose(got, want, rtol=1e-6, atol=1e-6)
    assert not torch.allclose(got, unscaled, rtol=1e-2)
    state = scaled.state_dict()
    assert state["reward_scale"]["scale"].item() == 7.0
    again = MEow(
        FlowPolicy(4, 2, alpha=0.2, log_sigma_min=-2.0, log_sigma_max=0.5), reward_scale=RewardScale(1, 0.99)
    )
    again.load_state_dict(state)
    assert again.reward_scale.scale.item() == 7.0

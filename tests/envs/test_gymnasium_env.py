"""Gymnasium adapter: shapes, action scaling, and the true final observation of finished episodes."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from meow.envs import make_env
from meow.envs.gymnasium_env import GymnasiumVecEnv


def _pendulum_next(obs: torch.Tensor, u: float) -> torch.Tensor:
    """Gymnasium's Pendulum-v1 dynamics (g=10, m=l=1, dt=0.05) from an observation."""
    th = torch.atan2(obs[1], obs[0])
    thdot = obs[2]
    new_thdot = (thdot + (3 * 10.0 / 2 * torch.sin(th) + 3.0 * u) * 0.05).clamp(-8, 8)
    new_th = th + new_thdot * 0.05
    return torch.stack((torch.cos(new_th), torch.sin(new_th), new_thdot))


def test_protocol_shapes_and_dtypes():
    env = make_env("gymnasium", "Hopper-v5", 3, "cpu")
    obs = env.reset(seed=0)
    assert (env.obs_dim, env.action_dim) == (11, 3)
    assert obs.shape == (3, 11) and obs.dtype == torch.float32
    r = env.step(torch.zeros(3, 3))
    assert r.obs.shape == r.next_obs.shape == (3, 11)
    assert r.rewards.shape == (3,) and r.rewards.dtype == torch.float32
    assert r.terminated.dtype == r.truncated.dtype == torch.bool
    assert torch.equal(r.obs, r.next_obs)  # nobody finished on the first step
    env.close()


def test_actions_in_unit_box_are_scaled_to_the_env_range():
    """Pendulum's torque range is [-2, 2]: action +1 must apply torque 2 (checked via its reward)."""
    env = GymnasiumVecEnv("Pendulum-v1", 1)
    obs = env.reset(seed=1)[0]
    r = env.step(torch.ones(1, 1))
    th, thdot = math.atan2(obs[1].item(), obs[0].item()), obs[2].item()
    expected = -(th**2 + 0.1 * thdot**2 + 0.001 * 2.0**2)
    assert r.rewards[0].item() == pytest.approx(expected, abs=1e-5)
    assert torch.allclose(r.next_obs[0], _pendulum_next(obs, 2.0), atol=1e-5)


def test_time_limit_gives_truncation_and_the_true_final_observation():
    """At Pendulum's 200-step limit: truncated, not terminated; next_obs continues the dynamics,
    obs is the reset observation of the next episode."""
    env = GymnasiumVecEnv("Pendulum-v1", 2)
    obs = env.reset(seed=2)
    for t in range(200):
        r = env.step(torch.full((2, 1), 0.5))
        if t < 199:
            assert not r.truncated.any()
            obs = r.obs
    assert r.truncated.all() and not r.terminated.any()
    for i in range(2):
        assert torch.allclose(r.next_obs[i], _pendulum_next(obs[i], 1.0), atol=1e-4)
        assert not torch.allclose(r.next_obs[i], r.obs[i], atol=1e-3)


def test_termination_returns_the_unhealthy_final_state_not_the_reset_one():
    """Hopper falls under random actions; the final observation of a terminated episode is
    unhealthy (height <= 0.7, |angle| >= 0.2 or a state out of range), the reset one healthy."""
    env = GymnasiumVecEnv("Hopper-v5", 4)
    env.reset(seed=3)
    rng = np.random.default_rng(0)
    seen = 0
    for _ in range(2000):
        r = env.step(torch.as_tensor(rng.uniform(-1, 1, (4, 3)), dtype=torch.float32))
        for i in torch.nonzero(r.terminated).flatten().tolist():
            final, fresh = r.next_obs[i], r.obs[i]
            unhealthy = final[0] <= 0.7 or abs(final[1]) >= 0.2 or final[1:].abs().max() >= 100
            assert unhealthy, final
            assert fresh[0] > 1.2 and abs(fresh[1]) < 0.01  # Hopper's reset pose
            assert not r.truncated[i]
            seen += 1
        if seen >= 3:
            break
    assert seen >= 3


def test_bad_ids_and_spaces_are_refused():
    with pytest.raises(ValueError, match="not a registered"):
        GymnasiumVecEnv("Hoppr-v5")
    with pytest.raises(ValueError, match="continuous Box"):
        GymnasiumVecEnv("CartPole-v1")
    with pytest.raises(ValueError, match=r"env.kind=isaac is invalid; valid: gymnasium \| .*multigoal"):
        make_env("isaac", "Hopper-v5", 1, "cpu")

"""The Gymnasium view of the multi-goal point mass runs the core env's dynamics, reward and limits."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env

from meow.envs.multigoal import MultiGoalEnv
from meow.envs.multigoal_gym import MultiGoalGymEnv


def _actions(steps: int) -> np.ndarray:
    """Episodes that truncate (small wandering steps) and episodes that reach a goal (full speed right)."""
    rng = np.random.default_rng(3)
    actions = rng.uniform(-0.3, 0.3, size=(steps, 2)).astype(np.float32)
    actions[40:50] = (1.0, 0.0)  # reaches goal (5, 0) within the second episode
    actions[80:83] = (1.7, -2.0)  # out of range: both envs clip to [-1, 1]
    return actions


def test_same_observations_rewards_and_episode_ends_as_the_core_env():
    horizon, steps = 12, 100
    core = MultiGoalEnv(1, horizon=horizon)
    view = MultiGoalGymEnv(horizon=horizon)
    core_obs = core.reset(seed=7)
    obs, _ = view.reset(seed=7)
    assert np.array_equal(obs, core_obs[0].numpy())
    ends = {"terminated": 0, "truncated": 0}
    for a in _actions(steps):
        r = core.step(torch.as_tensor(a).unsqueeze(0))
        obs, reward, terminated, truncated, _ = view.step(a)
        assert obs.dtype == np.float32 and obs.shape == (2,)
        assert np.array_equal(obs, r.next_obs[0].numpy())  # the final position at an episode's end
        assert reward == pytest.approx(float(r.rewards[0]), abs=0.0)
        assert (terminated, truncated) == (bool(r.terminated[0]), bool(r.truncated[0]))
        ends["terminated"] += terminated
        ends["truncated"] += truncated
        if terminated or truncated:
            obs, _ = view.reset()
            assert np.array_equal(obs, r.obs[0].numpy())  # the start the core env drew
            assert np.abs(obs).max() < 1.0  # near the origin, not the goal
    assert ends["terminated"] >= 1 and ends["truncated"] >= 2, ends


def test_spaces_seeding_and_gymnasium_checks():
    view = MultiGoalGymEnv()
    assert view.action_space.shape == (2,) and (view.action_space.high == 1.0).all()
    assert (view.observation_space.high == np.float32(7.0)).all()
    assert view.core.horizon == 30  # the core env's default time limit, as in training
    first, _ = view.reset(seed=11)
    again, _ = MultiGoalGymEnv().reset(seed=11)
    other, _ = MultiGoalGymEnv().reset(seed=12)
    assert np.array_equal(first, again) and not np.array_equal(first, other)
    check_env(view, skip_render_check=True)

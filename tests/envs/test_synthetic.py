"""The synthetic pipeline env keeps the protocol: true final observations, time limits, resets."""

from __future__ import annotations

import torch

from meow.envs import VecEnv
from meow.envs.synthetic import SyntheticVecEnv


def test_protocol_final_observations_and_staggered_time_limits():
    env = SyntheticVecEnv(8, obs_dim=5, action_dim=3, horizon=4)
    assert isinstance(env, VecEnv)
    obs = env.reset(seed=1)
    assert obs.shape == (8, 5)
    ended = torch.zeros(8, dtype=torch.long)
    for _ in range(8):
        actions = torch.rand(8, 3) * 2 - 1
        before = obs
        result = env.step(actions)
        assert result.rewards.shape == (8,) and result.terminated.dtype == torch.bool
        done = result.terminated | result.truncated
        expected = 0.9 * before + 0.1 * torch.tanh(actions @ env._mix)
        assert torch.allclose(result.next_obs, expected)  # the true next state, also for finished envs
        assert torch.equal(result.obs[done], torch.zeros_like(result.obs[done]))  # restarted
        assert torch.equal(result.obs[~done], result.next_obs[~done])
        ended += done.long()
        obs = result.obs
    assert (ended == 2).all()  # every env hit its 4-step limit twice in 8 steps, at staggered times

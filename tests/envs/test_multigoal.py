"""The multi-goal point mass: dynamics, reward, termination at goals, truncation, exact state."""

from __future__ import annotations

import torch

from meow.envs.multigoal import MultiGoalEnv


def test_reward_and_dynamics_follow_the_definition():
    env = MultiGoalEnv(2, init_sigma=0.0)
    env.reset(seed=0)
    a = torch.tensor([[0.5, 0.0], [0.0, -1.0]])
    r = env.step(a)
    assert torch.equal(r.next_obs, a)
    nearest = torch.tensor([4.5, 4.0])  # (0.5, 0) -> goal (5, 0); (0, -1) -> goal (0, -5)
    expected = -30.0 * a.square().sum(-1) - nearest
    assert torch.allclose(r.rewards, expected)
    assert not r.terminated.any() and not r.truncated.any()


def test_reaching_a_goal_terminates_with_the_bonus_and_resets():
    env = MultiGoalEnv(1, init_sigma=0.0)
    env.reset(seed=0)
    env.position = torch.tensor([[0.0, 3.5]])
    r = env.step(torch.tensor([[0.0, 1.0]]))  # lands at (0, 4.5): 0.5 from goal (0, 5)
    assert r.terminated.all() and not r.truncated.any()
    assert torch.allclose(r.rewards, torch.tensor([-30.0 - 0.5 + 10.0]))
    assert torch.allclose(r.next_obs, torch.tensor([[0.0, 4.5]]))
    assert torch.equal(r.obs, torch.zeros(1, 2))  # reset to the origin (init_sigma = 0)


def test_horizon_truncates_and_positions_stay_in_bounds():
    env = MultiGoalEnv(3, horizon=5)
    env.reset(seed=0)
    for t in range(5):
        r = env.step(torch.ones(3, 2))
        assert r.next_obs.abs().max() <= env.bound
        assert r.truncated.all() == (t == 4)
    assert (env.elapsed == 0).all()


def test_state_dict_restores_trajectories_exactly():
    env = MultiGoalEnv(4)
    env.reset(seed=5)
    actions = [torch.rand(4, 2) * 2 - 1 for _ in range(40)]
    for a in actions[:10]:
        env.step(a)
    state = env.state_dict()
    first = [env.step(a) for a in actions[10:]]
    env.load_state_dict(state)
    second = [env.step(a) for a in actions[10:]]
    for x, y in zip(first, second, strict=True):
        assert all(torch.equal(u, v) for u, v in zip(x, y, strict=True))

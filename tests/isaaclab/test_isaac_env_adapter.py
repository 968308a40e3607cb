"""The adapter contract on real Isaac Lab environments (Isaac-Ant, manager-based and direct)."""

from __future__ import annotations

import pytest
import torch

from meow.envs import StepResult, VecEnv

NUM_ENVS = 4
EPISODE_STEPS = 12  # env.episode_length_s below / the task's 1/60 s step


@pytest.fixture(scope="module", params=["Isaac-Ant-v0", "Isaac-Ant-Direct"])
def ant(request):
    from meow_isaac.env import make_isaaclab_env

    env = make_isaaclab_env(
        request.param,
        NUM_ENVS,
        "cpu",
        overrides=[f"env.episode_length_s={EPISODE_STEPS / 60}"],
        seed=3,
    )
    yield env
    env.close()


def _actions(env, scale: float = 1.0) -> torch.Tensor:
    return (torch.rand(env.num_envs, env.action_dim) * 2 - 1) * scale


def _check_step(env, r: StepResult) -> None:
    n = env.num_envs
    assert r.obs.shape == r.next_obs.shape == (n, env.obs_dim)
    assert r.rewards.shape == r.terminated.shape == r.truncated.shape == (n,)
    assert r.obs.dtype == r.next_obs.dtype == r.rewards.dtype == torch.float32
    assert r.terminated.dtype == r.truncated.dtype == torch.bool
    for t in r:
        assert t.device == env.device
    assert (
        torch.isfinite(r.obs).all() and torch.isfinite(r.next_obs).all() and torch.isfinite(r.rewards).all()
    )
    assert not (r.terminated & r.truncated).any()


def test_protocol_and_sizes(ant):
    assert isinstance(ant, VecEnv)
    assert (ant.num_envs, ant.obs_dim, ant.action_dim) == (NUM_ENVS, 60, 8)
    assert ant.device == torch.device("cpu")
    obs = ant.reset(seed=0)
    assert obs.shape == (NUM_ENVS, 60) and torch.isfinite(obs).all()


def test_true_final_observation_on_truncation_and_termination(ant):
    # Both Ant tasks end their observation with the last action taken: in the true final
    # observation it is the action of the final step, in a reset observation it is zero.
    ant.reset(seed=1)
    steps = 0
    for _ in range(EPISODE_STEPS):
        steps += 1
        a = _actions(ant)
        r = ant.step(a)
        _check_step(ant, r)
        done = r.terminated | r.truncated
        torch.testing.assert_close(r.next_obs[:, -8:], a)
        torch.testing.assert_close(r.next_obs[~done], r.obs[~done])
        if done.all():
            break
    assert steps == EPISODE_STEPS and r.truncated.all() and not r.terminated.any()
    assert (r.obs[:, -8:] == 0).all()  # the new episodes' first observations
    assert not torch.allclose(r.next_obs, r.obs)

    # Real terminations: raise the torso-height floor above any reachable height.
    u = ant.unwrapped
    if hasattr(u, "termination_manager"):
        u.termination_manager.get_term_cfg("torso_height").params["minimum_height"] = 10.0
    else:
        u.cfg.termination_height, saved = 10.0, u.cfg.termination_height
    try:
        a = _actions(ant)
        r = ant.step(a)
    finally:
        if hasattr(u, "termination_manager"):
            u.termination_manager.get_term_cfg("torso_height").params["minimum_height"] = 0.31
        else:
            u.cfg.termination_height = saved
    _check_step(ant, r)
    assert r.terminated.all() and not r.truncated.any()
    torch.testing.assert_close(r.next_obs[:, -8:], a)
    assert (r.obs[:, -8:] == 0).all()
    # the final torso height (first entry) is that of the robot before the reset
    assert (r.next_obs[:, 0] < 10.0).all()


def test_actions_are_clipped_and_results_not_aliased(ant):
    ant.reset(seed=2)
    a = _actions(ant, scale=5.0)
    r = ant.step(a)
    torch.testing.assert_close(r.next_obs[:, -8:], a.clamp(-1, 1))
    kept = [t.clone() for t in r]
    for _ in range(3):
        ant.step(_actions(ant))
    for before, t in zip(kept, r, strict=True):
        torch.testing.assert_close(t, before)  # later steps did not overwrite earlier results


def test_episode_statistics_are_exposed(ant):
    ant.reset(seed=4)
    for _ in range(EPISODE_STEPS):
        ant.step(_actions(ant))
    assert ant.episode_log, "Isaac Lab reports per-episode statistics in extras['log'] at resets"
    assert all(isinstance(float(v), float) for v in ant.episode_log.values())

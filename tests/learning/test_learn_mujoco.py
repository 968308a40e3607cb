"""A MuJoCo task learned within a CI-sized budget, to a threshold the ablated learner misses."""

from __future__ import annotations

import pytest

from meow.config import load_config
from meow.envs import make_env
from meow.runners import OffPolicyRunner

THRESHOLD = 500.0
"""InvertedPendulum's return is the number of steps balanced, at most 1000."""


def _best_return(*overrides: str) -> float:
    """Best deterministic evaluation (every 2,500 steps) of a 10,000-step run."""
    cfg = load_config(
        "InvertedPendulum-v5",
        [
            "runner.progress=false",
            "runner.total_steps=10000",
            "buffer.capacity=100000",
            "env.eval_envs=5",
            "runner.eval_interval=2500",
            "runner.eval_mode=deterministic",  # what the threshold was measured with
            "seed=2",
            # calibrated with zero coupling biases and one dropout pass for both Q heads: under
            # the release's pair (the defaults) no seed of 1-4 passed 206 within 12,500 steps
            # (docs/RESULTS.md, "Early learning")
            "algo.coupling_bias=zeros",
            "algo.q_dropout=shared",
            *overrides,
        ],
    )
    env = make_env("gymnasium", cfg.env.id, 1, "cpu")
    eval_env = make_env("gymnasium", cfg.env.id, cfg.env.eval_envs, "cpu")
    runner = OffPolicyRunner(cfg, env, eval_env)
    runner.learn()
    env.close(), eval_env.close()
    return max(mean for _, mean, _ in runner.evaluations)


@pytest.mark.slow
def test_inverted_pendulum_is_learned_and_not_without_reward_shifting():
    """Best evaluation within 10,000 steps (2,500 of them random). Measured on 2026-11-27 (seed 2,
    one thread, evaluations at 2,500 / 5,000 / 7,500 / 10,000): 4 / 234 / 1000 / 1000 with
    learnable reward shifting, 4 / 40 / 58 / 40 without it (the paper's ablation). Over seeds
    1-4 with 12,500 steps the best evaluations were 1000, 1000, 258, 161 with reward shifting:
    deterministic returns on this task oscillate while learning, hence the best evaluation, and
    this single-seed check is a smoke test of learning speed, not a statistic."""
    learned = _best_return()
    ablated = _best_return("algo.reward_shifting=false")
    assert learned >= THRESHOLD, learned
    assert ablated < THRESHOLD, ablated

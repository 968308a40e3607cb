"""A MuJoCo task learned within a CI-sized budget, to a threshold the ablated learner misses."""

from __future__ import annotations

import pytest

from meow.config import load_config
from meow.envs import make_env
from meow.runners import OffPolicyRunner

THRESHOLD = 500.0
"""InvertedPendulum's return is the number of steps balanced, at most 1000."""


def _best_return(*overrides: str) -> float:
    """Best deterministic evaluation (every 2,500 steps) of a 15,000-step run."""
    cfg = load_config(
        "InvertedPendulum-v5",
        [
            "runner.progress=false",
            "runner.total_steps=15000",
            "buffer.capacity=100000",
            "env.eval_envs=5",
            "runner.eval_interval=2500",
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
    """Best evaluation within 15,000 steps (2,500 of them random). Measured at this commit
    (seed 1, one thread): 1000 (reached at step 12,500) with learnable reward shifting, at most
    51 without it (the paper's ablation). Deterministic returns on this task oscillate while
    learning (121 at step 15,000 of the same run), hence the best evaluation."""
    learned = _best_return()
    ablated = _best_return("algo.reward_shifting=false")
    assert learned >= THRESHOLD, learned
    assert ablated < THRESHOLD, ablated

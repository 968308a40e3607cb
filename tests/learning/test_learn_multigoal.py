"""Multi-modality: MEow trained on the multi-goal task with the published settings spreads its
samples from the origin over several goals (a unimodal Gaussian policy commits to one)."""

from __future__ import annotations

import pytest
import torch

from meow.config import load_config
from meow.envs.multigoal import MultiGoalEnv, goal_histogram
from meow.runners import OffPolicyRunner


@pytest.mark.slow
def test_samples_from_the_origin_reach_at_least_three_goals():
    cfg = load_config("MultiGoal", ["runner.progress=false", "env.eval_envs=0"])  # 4000 steps, as published
    runner = OffPolicyRunner(cfg, MultiGoalEnv(cfg.env.num_envs))
    runner.learn()
    torch.manual_seed(0)
    counts = goal_histogram(runner.alg.act, trajectories=500, horizon=100)
    reached = counts[:-1]
    # A training run with these settings (seed 1, one thread) gave [7, 165, 87, 46] of 500,
    # 195 reaching none (docs/RESULTS.md).
    # A goal counts when at least 2% of the trajectories end there.
    assert int((reached >= 10).sum()) >= 3, counts.tolist()
    assert reached.max() < 0.8 * reached.sum(), counts.tolist()  # no single goal dominates

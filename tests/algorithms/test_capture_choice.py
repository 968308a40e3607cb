"""``algo.capture=auto``: what it picks, and the run length it picks by."""

from __future__ import annotations

import pytest

from meow.algorithms.capture import AUTO_COMPILE_MIN_UPDATES, resolve_capture
from meow.config import load_config
from meow.runners.off_policy_runner import planned_updates


def test_auto_compiles_long_cpu_runs_only():
    n = AUTO_COMPILE_MIN_UPDATES
    assert resolve_capture("auto", "cpu", n) == "compile"
    assert resolve_capture("auto", "cpu", n - 1) == "none"
    assert resolve_capture("auto", "cpu") == "none"  # run length unknown
    assert resolve_capture("auto", "cuda", 10) == "cudagraph"
    for mode in ("none", "compile"):
        assert resolve_capture(mode, "cpu", 10 * n) == mode  # an explicit mode is kept


def test_planned_updates_counts_iterations_past_the_warmup():
    cfg = load_config("Hopper-v5", ["runner.total_steps=30000", "runner.warmup_steps=5000"])
    assert planned_updates(cfg, 1) == 25_000
    cfg.algo.updates_per_step = 2
    assert planned_updates(cfg, 4) == 2 * 6_250
    cfg.runner.warmup_steps = 40_000
    assert planned_updates(cfg, 1) == 0


@pytest.mark.parametrize(("total", "mode"), [(1_500_000, "compile"), (20_000, "none")])
def test_the_default_hopper_command_compiles_and_a_short_run_does_not(total, mode):
    cfg = load_config("Hopper-v5", [f"runner.total_steps={total}"])
    assert cfg.algo.capture == "auto"
    assert resolve_capture(cfg.algo.capture, cfg.device, planned_updates(cfg, cfg.env.num_envs)) == mode

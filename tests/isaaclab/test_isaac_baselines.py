"""--algo ppo (rsl_rl) and --algo sac (rl-games) on the real Isaac-Ant, and compare.py over them."""

from __future__ import annotations

from pathlib import Path

import pytest
from script_loader import load_script

ROOT = Path(__file__).resolve().parents[2]


train, compare = load_script("train"), load_script("compare")


@pytest.fixture(scope="module")
def baseline_runs(tmp_path_factory):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    logs = tmp_path_factory.mktemp("baselines") / "logs"
    common = ["--task", "Isaac-Ant-v0", "--num_envs", "8", "--device", "cpu", "env.episode_length_s=0.5"]
    common += [f"runner.log_dir={logs}"]
    assert train.main([*common, "--algo", "ppo", "--max_iterations", "3"]) == 0
    assert train.main([*common, "--algo", "sac", "--max_iterations", "150"]) == 0
    (ppo,) = (logs / "rsl_rl" / "ant").iterdir()
    (sac,) = (logs / "rl_games" / "Isaac-Ant").iterdir()
    for run in (ppo, sac / "summaries"):
        events = EventAccumulator(str(run))
        events.Reload()
        assert {"charts/episodic_return", "charts/SPS"} <= set(events.Tags()["scalars"]), run
    return ppo, sac


def test_ppo_steps_are_env_steps(baseline_runs):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    ppo, _ = baseline_runs
    events = EventAccumulator(str(ppo))
    events.Reload()
    iterations = [e.step for e in events.Scalars("Perf/total_fps")]
    steps = [e.step for e in events.Scalars("charts/SPS")]
    assert steps == [(i + 1) * 32 * 8 for i in iterations]  # Ant's rsl_rl: 32 steps per env per iteration


def test_compare_plots_the_baselines(baseline_runs, tmp_path, capsys):
    ppo, sac = baseline_runs
    out = tmp_path / "cmp.png"
    args = [f"PPO={ppo}", f"SAC={sac}", "--tag", "charts/episodic_return", "--out", str(out)]
    assert compare.main(args) == 0
    assert out.stat().st_size > 10_000
    text = capsys.readouterr().out
    assert "PPO: 1 run(s)" in text and "SAC: 1 run(s)" in text

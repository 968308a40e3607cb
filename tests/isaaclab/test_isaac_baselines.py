"""--algo ppo (rsl_rl) and --algo sac (rl-games) on the real Isaac-Ant, and compare.py over them."""

from __future__ import annotations

from pathlib import Path

import pytest
from script_loader import load_script

from meow_compare.curves import read_run

ROOT = Path(__file__).resolve().parents[2]


train, compare = load_script("train"), load_script("compare")


@pytest.fixture(scope="module")
def baseline_runs(tmp_path_factory):

    # a log folder whose parent does not exist yet: the library's working folder is made for it
    logs = tmp_path_factory.mktemp("baselines") / "not_yet" / "logs"
    common = ["--task", "Isaac-Ant-v0", "--num_envs", "8", "--device", "cpu", "env.episode_length_s=0.5"]
    common += [f"runner.log_dir={logs}"]
    assert train.main([*common, "--algo", "ppo", "--max_iterations", "3"]) == 0
    assert train.main([*common, "--algo", "sac", "--max_iterations", "150"]) == 0
    (ppo,) = (logs / "rsl_rl" / "ant").iterdir()
    (sac,) = (logs / "rl_games" / "Isaac-Ant").iterdir()
    return ppo, sac


def test_baseline_curves_are_read_from_what_the_libraries_log_as_they_train(baseline_runs):
    """MEow's names are derived from the libraries' own live scalars; nothing is written into
    their folders after they end (so a stopped run reads the same)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    for run in (baseline_runs[0], baseline_runs[1] / "summaries"):
        events = EventAccumulator(str(run))
        events.Reload()
        assert not {t for t in events.Tags()["scalars"] if t.startswith("charts/")}, run
        assert len(list(run.glob("events.out.tfevents.*"))) == 1, run
        curves = read_run(run)
        assert {"charts/episodic_return", "charts/SPS"} <= set(curves), run


def test_ppo_steps_are_env_steps(baseline_runs):
    ppo, _ = baseline_runs
    curves = read_run(ppo)
    iterations = curves["Perf/total_fps"].steps
    assert len(iterations) == 3
    # Ant's rsl_rl: 32 steps per env per iteration, 8 envs
    assert curves["charts/SPS"].steps == [(i + 1) * 32 * 8 for i in iterations]
    assert curves["charts/SPS"].values == curves["Perf/total_fps"].values


def test_sac_steps_are_the_library_s_env_steps(baseline_runs):
    _, sac = baseline_runs
    curves = read_run(sac / "summaries")
    assert curves["charts/episodic_return"].steps == curves["rewards/step"].steps
    assert curves["charts/episodic_return"].values == curves["rewards/step"].values


def test_compare_plots_the_baselines(baseline_runs, tmp_path, capsys):
    ppo, sac = baseline_runs
    out = tmp_path / "cmp.png"
    args = [f"PPO={ppo}", f"SAC={sac}", "--tag", "charts/episodic_return", "--out", str(out)]
    assert compare.main(args) == 0
    assert out.stat().st_size > 10_000
    text = capsys.readouterr().out
    assert "PPO: 1 run(s)" in text and "SAC: 1 run(s)" in text

"""--algo sac on a Gymnasium task: Stable-Baselines3's SAC, logging MEow's metric names."""

from __future__ import annotations

from pathlib import Path

import pytest
from script_loader import load_script

ROOT = Path(__file__).resolve().parents[1]
train = load_script("train")


def test_sb3_sac_logs_meows_metric_names(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    args = ["--task", "InvertedPendulum-v5", "--algo", "sac", "--total_steps", "600", "env.eval_envs=1"]
    args += ["runner.warmup_steps=300", "runner.log_interval=100", "runner.eval_interval=300"]
    assert train.main([*args, f"runner.log_dir={tmp_path}"]) == 0
    (run,) = (tmp_path / "sac" / "InvertedPendulum-v5").iterdir()
    assert (run / "model.zip").is_file()
    events = EventAccumulator(str(run))
    events.Reload()
    assert {"charts/episodic_return", "charts/SPS", "eval/return_mean"} <= set(events.Tags()["scalars"])
    assert [e.step for e in events.Scalars("eval/return_mean")] == [300, 600]


def test_a_baseline_the_task_does_not_have_is_a_one_line_error(tmp_path, capsys):
    assert train.main(["--task", "Hopper-v5", "--algo", "ppo", f"runner.log_dir={tmp_path}"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: --algo ppo is not available for Hopper-v5 (gymnasium task); valid: ")
    assert "sac (gymnasium tasks)" in err and "\n" not in err
    with pytest.raises(SystemExit) as exit_:
        train.main(["--task", "Hopper-v5", "--algo", "td3"])
    assert (
        exit_.value.code == 2
        and "--algo td3 is not available; valid: meow, sac, ppo" in capsys.readouterr().err
    )

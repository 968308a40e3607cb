"""tools/probe_critic.py: the critic's terms on replay data, consistent with MEow's identity."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from script_loader import load_script

train, probe = load_script("train"), load_script("probe_critic")
SMALL = ["runner.progress=false", "runner.warmup_steps=64", "algo.batch_size=32", "env.eval_envs=0"]


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    logs = tmp_path_factory.mktemp("probe") / "logs"
    assert train.main(["--task", "MultiGoal", "--total_steps", "200", f"runner.log_dir={logs}", *SMALL]) == 0
    (run_dir,) = (logs / "meow" / "MultiGoal").iterdir()
    return run_dir


def test_the_figures_obey_q_minus_v_equals_alpha_log_pi(run, tmp_path, capsys):
    out = tmp_path / "probe.json"
    assert probe.main([str(run), "--samples", "150", "--json", str(out)]) == 0
    (res,) = json.loads(out.read_text())
    assert res["checkpoint"] == str(run / "model_200.pt") and res["env_step"] == 200
    # Q_k - V_k = alpha log pi for every head, so the heads' minima differ by exactly that
    assert res["q_replay"] - res["v"] == pytest.approx(res["alpha_log_pi_replay"], abs=1e-3)
    assert -2.0 <= res["log_sigma"] <= 1.0  # tasks/multigoal.yaml's bounds of the prior's log-sigma
    assert 0.0 <= res["saturated"] <= 1.0 and res["kernel_q10"] <= res["kernel_median"] <= 0.0
    printed = capsys.readouterr().out
    assert "min_k Q_k(s, a replay), mean" in printed and f"{res['v']:.1f}" in printed


def test_the_same_seed_draws_the_same_figures(run, tmp_path):
    paths = [tmp_path / "a.json", tmp_path / "b.json"]
    for path in paths:
        assert probe.main([str(run), "--samples", "100", "--seed", "3", "--json", str(path)]) == 0
    assert paths[0].read_text() == paths[1].read_text()


def test_a_run_saved_without_its_buffer_is_a_one_line_error(tmp_path, capsys):
    logs = tmp_path / "logs"
    argv = ["--task", "MultiGoal", "--total_steps", "100", f"runner.log_dir={logs}"]
    assert train.main([*argv, "runner.save_buffer=false", *SMALL]) == 0
    (run_dir,) = (logs / "meow" / "MultiGoal").iterdir()
    capsys.readouterr()
    assert probe.main([str(run_dir)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "runner.save_buffer=false: no replay data" in err and "\n" not in err

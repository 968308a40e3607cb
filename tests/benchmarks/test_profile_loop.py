"""benchmarks/profile_loop.py: the one-env loop's phases and its input errors (Gymnasium)."""

from __future__ import annotations

import json

import pytest
from script_loader import load_script


@pytest.fixture(scope="module")
def prof():
    return load_script("profile_loop")


def test_phases_account_for_the_step_and_overrides_reach_the_learner(prof, tmp_path, capsys):
    pytest.importorskip("mujoco")
    out = tmp_path / "p.json"
    argv = ["--task", "InvertedPendulum-v5", "--steps", "20", "--warmup", "256", "--burnin", "2"]
    argv += ["--profile_steps", "2", "--batch_size", "32", "--out", str(out), "algo.shift_hidden=[16,16]"]
    assert prof.main(argv) == 0
    report = json.loads(out.read_text())
    assert report["batch_size"] == 32 and report["capture"] == "none"
    phases = report["phases_ms"]
    assert set(phases) == set(prof.PHASES)
    timed = sum(v["wall"] for k, v in phases.items() if not k.startswith("("))
    step = report["step_ms"]["wall"]
    # the phases are the step, less the loop's own Python
    assert 0.7 * step <= timed <= step * (1 + 1e-9)
    assert report["matmul_ms_per_update"] > 0
    assert "InvertedPendulum-v5 | capture none | batch 32" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--task", "Hopper-v5", "--num_envs", "4"], "--num_envs 4 is invalid for Hopper-v5; valid: 1"),
        (["--task", "Hopper-v5", "algo.no_such_key=1"], "no_such_key"),
        (["--task", "Nope-v0"], "Nope-v0"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(prof, argv, message, capsys):
    assert prof.main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1

"""benchmarks/profile_loop.py on a real Isaac task: the runner's own loop, timed phase by phase."""

from __future__ import annotations

import json

import pytest
from script_loader import load_script


def test_isaac_ant_phases_updates_and_rates_agree(tmp_path, capsys):
    from meow.config import load_config

    prof = load_script("profile_loop")
    out = tmp_path / "p.json"
    argv = ["--task", "Isaac-Ant", "--num_envs", "4", "--steps", "6", "--burnin", "1", "--profile_steps", "2"]
    argv += ["--capture", "none", "--out", str(out), "algo.batch_size=64", "algo.shift_hidden=[32,32]"]
    assert prof.main(argv) == 0
    report = json.loads(out.read_text())
    expected = load_config("Isaac-Ant", ["env.num_envs=4"]).algo.updates_per_step
    # every timed vectorized step ran the task file's updates, at the overridden batch
    assert report["num_envs"] == 4 and report["updates_per_step"] == expected
    assert report["batch_size"] == 64 and report["overrides"][-1] == "algo.shift_hidden=[32,32]"
    phases = report["phases_ms"]
    assert set(phases) == {*prof.VEC_PHASES, "rest"}
    for name in ("act", "env step", "obs statistics", "store", "updates"):
        assert phases[name]["wall"] > 0, name  # the runner called each wrapped phase
    step = report["step_ms"]["wall"]
    assert sum(v["wall"] for v in phases.values()) == pytest.approx(step, rel=1e-9)
    assert 0 <= phases["rest"]["wall"] < 0.5 * step
    assert report["update_ms"] * expected == pytest.approx(phases["updates"]["wall"], rel=1e-9)
    assert report["env_steps_per_s"] == pytest.approx(4 / step * 1e3, rel=1e-9)
    assert f"Isaac-Ant | 4 envs | capture none | {expected:g} updates of batch 64" in capsys.readouterr().out

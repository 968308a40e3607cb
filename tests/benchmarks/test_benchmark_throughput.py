"""benchmarks/benchmark_throughput.py: both contenders measured, figures consistent with each other."""

from __future__ import annotations

import itertools
import json
import math
import sys

import pytest
from script_loader import load_script


@pytest.fixture(scope="module")
def bench():
    return load_script("benchmark_throughput")


def test_tiny_run_reports_both_contenders_and_their_ratio(bench, tmp_path, capsys):
    pytest.importorskip("stable_baselines3")
    pytest.importorskip("mujoco")
    out = tmp_path / "bench.json"
    argv = ["--task", "Hopper-v5", "--steps", "50", "--warmup", "300", "--burnin", "5"]
    argv += ["algo.q_dropout=shared"]  # a MEow config override, recorded
    assert bench.main([*argv, "--repeats", "1", "--threads", "1", "--out", str(out)]) == 0
    data = json.loads(out.read_text())
    assert data["threads"] == 1
    assert data["overrides"] == ["algo.q_dropout=shared"]
    res = data["results"]
    assert set(res) == {bench.MEOW, bench.SB3}
    for name in res:
        (sps,) = res[name]["sps"]
        assert math.isfinite(sps) and sps > 0
        assert res[name]["median"] == res[name]["min"] == res[name]["max"] == sps
        # The comparable setup: exactly one gradient update per timed env step for both.
        assert res[name]["updates_per_step"] == [1.0]
    ratio = res[bench.MEOW]["ratio_vs_sb3"]
    assert ratio == pytest.approx(res[bench.MEOW]["median"] / res[bench.SB3]["median"], rel=1e-12)
    assert res[bench.MEOW]["ratio_vs_sb3_per_repeat"] == pytest.approx([ratio], rel=1e-12)
    assert res[bench.SB3]["ratio_vs_sb3"] == 1.0
    printed = capsys.readouterr().out
    assert bench.MEOW in printed and bench.SB3 in printed and f"{ratio:.2f}x" in printed


def test_against_times_a_second_meow_config_in_the_same_rounds(bench, tmp_path, capsys):
    pytest.importorskip("stable_baselines3")
    pytest.importorskip("mujoco")
    out = tmp_path / "bench.json"
    argv = ["--task", "Hopper-v5", "--steps", "30", "--warmup", "300", "--burnin", "5", "--threads", "1"]
    # Applied after the pinned comparable setup: two updates per step show that they reached the runner.
    argv += ["--against", "algo.updates_per_step=2", "--against", "algo.q_dropout=shared"]
    assert bench.main([*argv, "--repeats", "2", "--out", str(out)]) == 0
    data = json.loads(out.read_text())
    assert data["against"] == ["algo.updates_per_step=2", "algo.q_dropout=shared"]
    res = data["results"]
    assert set(res) == {bench.MEOW, bench.SB3, bench.AGAINST}
    assert res[bench.AGAINST]["updates_per_step"] == [2.0, 2.0]
    assert res[bench.MEOW]["updates_per_step"] == [1.0, 1.0]
    meow, against = res[bench.MEOW], res[bench.AGAINST]
    assert meow["ratio_vs_against"] == pytest.approx(meow["median"] / against["median"], rel=1e-12)
    per = [m / a for m, a in zip(meow["sps"], against["sps"], strict=True)]
    assert meow["ratio_vs_against_per_repeat"] == pytest.approx(per, rel=1e-12)
    assert against["ratio_vs_against"] == 1.0
    printed = capsys.readouterr().out
    assert "A/B against" in printed and f"{meow['ratio_vs_against']:.2f}x" in printed


def test_a_bad_against_override_is_a_one_line_error(bench, capsys):
    assert bench.main(["--steps", "1", "--against", "algo.q_dropout=twice"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "error: algo.q_dropout=twice is invalid; valid: shared | per_head"


def shift_heads_flops(batch: int, obs_dim: int, hidden: list[int], heads: int) -> int:
    """FLOPs of the reward-shifting heads in one update: online forward and backward, target forward."""
    sizes = [obs_dim, *hidden, 1]
    layers = list(itertools.pairwise(sizes))
    forward = sum(2 * batch * i * o for i, o in layers)
    # backward: every weight's gradient; the inputs' gradient for all but the first layer (obs)
    backward = forward + sum(2 * batch * i * o for i, o in layers[1:])
    return heads * (2 * forward + backward)


def test_flops_give_each_contender_a_floor_below_its_measured_time(bench, tmp_path, capsys):
    pytest.importorskip("stable_baselines3")
    pytest.importorskip("mujoco")
    from meow.config import load_config

    out = tmp_path / "bench.json"
    argv = ["--task", "Hopper-v5", "--steps", "20", "--warmup", "256", "--burnin", "0", "--flops"]
    assert bench.main([*argv, "--threads", "1", "--out", str(out), "algo.q_dropout=shared"]) == 0
    data = json.loads(out.read_text())
    rate, table = data["gemm_gflops"], data["floors"]
    assert set(table) == {bench.MEOW, bench.SB3} and 0.1 < rate < 10_000
    algo = load_config("Hopper-v5").algo
    heads = shift_heads_flops(256, 11, list(algo.shift_hidden), algo.num_shift_heads)
    meow, sac = table[bench.MEOW], table[bench.SB3]
    # MEow's update: the shift heads' products plus the flow's smaller ones (64-wide couplings)
    assert heads < meow["update_flops"] < 1.4 * heads
    # SAC's update runs three 256-wide MLP passes with backward; MEow's fewer products than that
    assert meow["update_flops"] < sac["update_flops"]
    for row in (meow, sac):
        assert 0 < row["act_flops"] < row["update_flops"] / 100  # one observation against 256
        step = row["update_flops"] + row["act_flops"]
        assert row["floor_ms"] == pytest.approx(step / rate / 1e6, rel=1e-9)
        assert 0 < row["floor_share"] < 1  # the products alone cannot outrun the whole step
    printed = capsys.readouterr().out
    assert f"{rate:.1f} GFLOP/s" in printed and "floor ms" in printed


def test_missing_sb3_is_one_line_error(bench, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "stable_baselines3", None)  # makes the import fail
    assert bench.main(["--steps", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "pip install stable-baselines3" in err and "\n" not in err


def test_a_bad_override_is_a_one_line_error(bench, capsys):
    assert bench.main(["--steps", "1", "algo.q_dropout=twice"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "error: algo.q_dropout=twice is invalid; valid: shared | per_head"


def test_warmup_shorter_than_a_batch_is_refused(bench, capsys):
    with pytest.raises(SystemExit):
        bench.parse_args(["--warmup", "100", "--burnin", "0"])
    assert "--warmup + --burnin" in capsys.readouterr().err

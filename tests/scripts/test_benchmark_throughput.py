"""scripts/benchmark_throughput.py: both contenders measured, figures consistent with each other."""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "benchmark_throughput.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("benchmark_throughput", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


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

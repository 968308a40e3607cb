"""benchmarks/benchmark_distributed.py end to end on a tiny setting: one torchrun job per world size,
the JSON it writes, and its argument errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "benchmark_distributed.py"


def test_one_round_of_each_world_size_is_recorded(tmp_path):
    out = tmp_path / "dist.json"
    args = [
        "--steps",
        "30",
        "--warmup",
        "20",
        "--out",
        str(out),
        "algo.batch_size=16",
        "buffer.capacity=1000",
    ]
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), *args], cwd=tmp_path, capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    record = json.loads(out.read_text())
    (round_,) = record["rounds"]
    assert [r["world_size"] for r in round_] == [1, 2]
    for r in round_:
        # every rank took its timed steps with an update after each; steps are summed over ranks
        assert r["updates_per_rank"] == 30 and r["env_steps"] == 30 * r["world_size"]
        assert r["sps"] > 0
    assert set(record["scale_out"]) == {"2"}
    assert "scale-out 2 vs 1 rank(s):" in proc.stdout


def test_bad_arguments_are_one_line_errors(tmp_path):
    for bad, needle in (
        (["--ranks", "0", "2"], "--ranks 0 2 is invalid"),
        (["--steps", "0"], "--steps 0 is invalid"),
    ):
        proc = subprocess.run(
            [sys.executable, str(SCRIPT), *bad], cwd=tmp_path, capture_output=True, text=True
        )
        assert proc.returncode == 2 and needle in proc.stderr

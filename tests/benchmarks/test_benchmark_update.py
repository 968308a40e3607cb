"""Bad input to benchmarks/benchmark_update.py: one ``error:`` line, exit status 2 (its measurements
run in tests/tools/test_gpu_check.py's CPU rehearsal)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--modes", "cudagraph", "--device", "cpu"], "--modes cudagraph needs CUDA"),
        (["--modes", "fast"], "--modes fast is invalid; valid: none, compile"),
        (["--batches", "0,256"], "'0,256' is invalid; valid: comma-separated integers >= 1"),
        (["--device", "tpu"], "device=tpu is invalid"),
        (["--seconds", "0"], "--seconds 0.0 is invalid"),
        (["--device", "cpu", "algo.n_step=0"], "algo.n_step=0 is invalid"),
        (["--device", "cpu", "--profile_batch", "64"], "--profile_batch needs CUDA"),
        (["--profile_batch", "-1"], "--profile_batch -1 is invalid"),
        (["--device", "cpu", "--matmul_precision", "tf32"], "--matmul_precision tf32 needs CUDA"),
        (["--matmul_precision", "half"], "--matmul_precision half is invalid; valid: float32, tf32"),
        (["--device", "cpu", "algo.matmul_precision=tf32"], "is set here with --matmul_precision"),
    ],
)
def test_benchmark_update_bad_input_is_one_line(argv, message):
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "benchmark_update.py"), *argv],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: ") and proc.stderr.count("\n") == 1 and message in proc.stderr

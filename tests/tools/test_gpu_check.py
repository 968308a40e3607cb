"""tools/gpu_check.py on a machine without a GPU."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from script_loader import load_script

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the answer on a machine without a GPU")
def test_without_a_gpu_it_says_so_and_checks_nothing(tmp_path):
    out = tmp_path / "report.json"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "gpu_check.py"), "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 1
    assert "no CUDA GPU is visible here" in proc.stderr and "nothing was checked" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and not out.exists()


def test_without_the_isaac_task_files_it_says_what_to_install_before_checking_anything(
    tmp_path, monkeypatch, capsys
):
    from meow.envs import registry

    gpu_check = load_script("gpu_check")

    monkeypatch.setattr(registry, "_installed", dict)  # no package registers a kind
    out = tmp_path / "report.json"
    assert gpu_check.main(["--rehearse", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "not registered" in err and "-e exts/meow_isaac" in err
    assert not out.exists()


def test_a_cpu_rehearsal_runs_every_step_and_writes_one_report(tmp_path):
    out = tmp_path / "report.json"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "gpu_check.py"), "--rehearse", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["rehearsal"] and report["environment"]["torch"] == torch.__version__
    gpu_tests = report["tests"]
    assert gpu_tests["exit_code"] == 0
    if not torch.cuda.is_available():  # collected, and skipped with their reason
        collected = subprocess.run(
            [
                sys.executable,
                "-m",
                "pytest",
                "--collect-only",
                "-q",
                "-m",
                "gpu",
                str(ROOT / "tests" / "gpu"),
            ],
            capture_output=True,
            text=True,
            cwd=ROOT,
        ).stdout
        expected = sum("::" in line for line in collected.splitlines())
        assert expected >= 11 and gpu_tests["counts"] == {"skipped": expected}
        assert "needs a CUDA GPU" in gpu_tests["output_tail"]
    rows = report["benchmarks"]["updates"]
    assert [r["batch"] for r in rows] == [64, 256]
    for row in rows:
        assert row["ms"]["floor"] > 0 and row["ms"]["none"] > 0
    (pipeline,) = report["benchmarks"]["pipeline"]
    assert pipeline["mode"] == "none" and pipeline["num_envs"] == 64 and pipeline["updates_per_s"] > 0
    assert "[gpu_check] wrote" in proc.stdout

"""scripts/gpu_check.py and scripts/benchmark_update.py on a machine without a GPU."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the answer on a machine without a GPU")
def test_without_a_gpu_it_says_so_and_checks_nothing(tmp_path):
    out = tmp_path / "report.json"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "gpu_check.py"), "--out", str(out)],
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
    sys.path.insert(0, str(ROOT / "scripts"))
    import gpu_check

    from meow.envs import registry

    monkeypatch.setattr(registry, "_installed", dict)  # no package registers a kind
    out = tmp_path / "report.json"
    assert gpu_check.main(["--rehearse", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "not registered" in err and "-e exts/meow_isaac" in err
    assert not out.exists()


def test_a_cpu_rehearsal_runs_every_step_and_writes_one_report(tmp_path):
    out = tmp_path / "report.json"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "gpu_check.py"), "--rehearse", "--out", str(out)],
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
        [sys.executable, str(ROOT / "scripts" / "benchmark_update.py"), *argv],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: ") and proc.stderr.count("\n") == 1 and message in proc.stderr


def test_lease_steps_keep_the_carried_folders_and_refuse_bad_input(tmp_path):
    """scripts/gpu_lease.sh from a copy of the checkout: 'keep' copies each carried .wheelhouse
    folder out of the checkout (a later call's checkout no longer holds it); the errors are one line."""
    import shutil

    checkout = tmp_path / "checkout"
    (checkout / "scripts").mkdir(parents=True)
    shutil.copy(ROOT / "scripts" / "gpu_lease.sh", checkout / "scripts")
    kept = tmp_path / "in"
    env = {"PATH": "/usr/bin:/bin", "WHEELHOUSE_IN": str(kept), "PYTHON": sys.executable}

    def lease(*args: str) -> subprocess.CompletedProcess:
        cmd = ["bash", str(checkout / "scripts" / "gpu_lease.sh"), *args]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=60, env=env)

    r = lease("keep")
    assert r.returncode == 2 and "no .wheelhouse/part-NN folder" in r.stderr
    r = lease("isaac")
    assert r.returncode == 2 and "run 'core' first" in r.stderr
    r = lease("deploy")
    assert r.returncode == 2
    assert r.stderr.strip() == "error: step 'deploy' is invalid; valid: core, keep, isaac"
    for name in ("part-02", "part-03"):  # one call each, as the device tool carries them
        shutil.rmtree(checkout / ".wheelhouse", ignore_errors=True)
        (checkout / ".wheelhouse" / name).mkdir(parents=True)
        (checkout / ".wheelhouse" / name / "x.part001").write_bytes(name.encode())
        r = lease("keep")
        assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in kept.iterdir()) == ["part-02", "part-03"]
    assert (kept / "part-02" / "x.part001").read_bytes() == b"part-02"
    assert "part-02 part-03" in r.stdout

"""Checks MEow on a CUDA GPU in one command: the GPU tests, then the benchmarks; one JSON, one table.

    python tools/gpu_check.py --out gpu_check.json          # on a machine with an NVIDIA GPU
    python tools/gpu_check.py --rehearse                    # the same steps, tiny, on the CPU

It needs PyTorch with CUDA and the project installed (``pip install -e . -e exts/meow_isaac``; on a
machine without network, from a wheel folder: docs/GPU.md, "Air-gapped install"). In order:
1. the tests marked ``gpu`` (captured vs eager updates at batch 256 and 4096, captured act,
   re-capture after loading, n-step targets and replay sampling on the device);
2. ``benchmarks/benchmark_update.py``: ms per update by capture mode and batch size beside the
   floor, and the pipeline ceiling (the whole training loop at Isaac-Ant's shapes and
   large-env settings on a synthetic GPU-resident environment), in float32 and, captured and
   compiled, with ``algo.matmul_precision=tf32``;
3. where Isaac Lab is importable, ``benchmarks/benchmark_isaac.py`` on the GPU (MEow vs rsl_rl PPO).
Without a GPU it says so and exits with status 1; ``--rehearse`` runs every step on the CPU at
toy sizes, to check the script and the installed packages before a GPU is at hand.
"""

from __future__ import annotations

import argparse
import json
import platform
import re
import subprocess
import sys
import tempfile
import time
from importlib.util import find_spec
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

TARGETS = {
    "captured_over_floor_at_batch_ge_4096": 2.0,
    "eager_over_captured_at_batch_1024": 4.0,
    "pipeline_env_steps_per_s": 1_000_000,
}
"""The targets on one H100-class GPU: captured <= 2x the floor at batch >= 4096, captured >= 4x
faster than eager at batch 1024, and >= 1M env-steps/s for the pipeline at 4096 envs."""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    from meow.utils.cli import ArgumentParser, at_least

    parser = ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="gpu_check.json", help="the JSON report (default ./gpu_check.json)")
    parser.add_argument("--rehearse", action="store_true", help="run every step on the CPU at toy sizes")
    parser.add_argument("--skip_tests", action="store_true", help="benchmarks only")
    parser.add_argument(
        "--skip_isaac", action="store_true", help="no Isaac Lab benchmark even where it imports"
    )
    parser.add_argument(
        "--num_envs", type=at_least(1), default=4096, help="pipeline and Isaac benchmark env count"
    )
    return parser.parse_args(argv)


def environment() -> dict:
    """What machine and software this report is about."""
    import torch

    info = {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "host": platform.node(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda_build": torch.version.cuda,
        "cuda_available": torch.cuda.is_available(),
        "isaaclab": find_spec("isaaclab") is not None,
        "glibc": " ".join(platform.libc_ver()),  # Isaac Lab's wheels need 2.35 (docs/GPU.md)
    }
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        info.update(
            gpu=props.name,
            gpu_memory_gib=round(props.total_memory / 2**30, 1),
            multiprocessors=props.multi_processor_count,
            gpu_count=torch.cuda.device_count(),
        )
        try:
            driver = subprocess.run(
                ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                capture_output=True,
                text=True,
                timeout=20,
            )
            info["driver"] = driver.stdout.strip().splitlines()[0] if driver.returncode == 0 else None
        except (OSError, subprocess.SubprocessError, IndexError):
            info["driver"] = None
    return info


def missing_task_files() -> str | None:
    """Why the pipeline benchmark could not load Isaac-Ant's settings, or None: its task file comes
    from the meow_isaac package, which registers its tasks when installed (not from PYTHONPATH)."""
    from meow.config import ConfigError, find_task

    try:
        find_task("Isaac-Ant")
    except ConfigError:
        return (
            "the Isaac task files are not registered (the pipeline benchmark takes Isaac-Ant's "
            "settings): install the checkout first, offline: python -m pip install --no-index "
            "--no-deps --no-build-isolation -e . -e exts/meow_isaac"
        )
    return None


def run_tests() -> dict:
    """The ``gpu`` tests in a fresh process; their outcome counts and output."""
    start = time.perf_counter()
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-m",
            "gpu",
            "tests/gpu",
            "-q",
            "-s",
            "-rs",
            "-p",
            "no:cacheprovider",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    output = proc.stdout + proc.stderr
    summary = [
        line for line in output.splitlines() if re.search(r"\d+ (passed|failed|skipped|deselected)", line)
    ]
    counts = {
        k: int(n)
        for n, k in re.findall(r"(\d+) (passed|failed|skipped|errors?)", summary[-1] if summary else "")
    }
    diffs = re.findall(r"((?:compiled \+ graph, )?batch \d+[^:\n]*: max \|\w+ - eager\| = \S+)", output)
    print(f"  tests: {counts} in {time.perf_counter() - start:.0f} s (exit {proc.returncode})")
    for line in diffs:
        print(f"    {line}")
    if proc.returncode != 0:
        print(output[-6000:])
    return {
        "exit_code": proc.returncode,
        "counts": counts,
        "captured_vs_eager": diffs,
        "output_tail": output[-6000:],
        "seconds": round(time.perf_counter() - start, 1),
    }


def _benchmark_update(argv: list[str], out: Path) -> dict:
    """``benchmarks/benchmark_update.py ARGV`` in a fresh process, its output shown as it runs;
    the JSON it wrote."""
    cmd = [sys.executable, str(ROOT / "benchmarks" / "benchmark_update.py"), *argv, "--out", str(out)]
    sys.stdout.flush()  # our lines before the child's
    proc = subprocess.run(cmd, cwd=ROOT)
    if proc.returncode != 0 or not out.is_file():
        raise RuntimeError(f"benchmark_update.py {' '.join(argv)} exited with status {proc.returncode}")
    return json.loads(out.read_text())


def run_benchmarks(rehearse: bool, num_envs: int, workdir: Path) -> dict:
    """``benchmarks/benchmark_update.py``: the update table and the pipeline, float32, then (CUDA)
    the pipeline captured and compiled with TF32 matrix products."""
    if rehearse:
        # eager only: compiling on a CPU takes minutes, and the plumbing is the same
        argv = ["--device", "cpu", "--batches", "64,256", "--seconds", "0.2", "--modes", "none"]
        argv += ["--pipeline", "--num_envs", "64", "--pipeline_steps", "10"]
    else:
        # compiling takes about a minute per cell on a GPU: the compile modes at batch 1024 only
        argv = ["--device", "cuda:0", "--compile_batches", "1024", "--seconds", "1.0"]
        argv += ["--pipeline", "--num_envs", str(num_envs), "--pipeline_steps", "200"]
    float32 = _benchmark_update(argv, workdir / "benchmark_update.json")
    result: dict = {"device": float32["device"], "argv": argv}
    result["updates"], result["pipeline"] = float32["updates"], float32["pipeline"]
    if not rehearse:  # the same loop with algo.matmul_precision=tf32 (TF32 needs CUDA)
        tf32_argv = ["--device", "cuda:0", "--pipeline_only", "--modes", "cudagraph,compile"]
        tf32_argv += ["--num_envs", str(num_envs), "--pipeline_steps", "200", "--matmul_precision", "tf32"]
        result["pipeline"] += _benchmark_update(tf32_argv, workdir / "benchmark_update_tf32.json")["pipeline"]
    return result


def targets(bench: dict) -> dict:
    """Each target of :data:`TARGETS` against what was measured: value, target, met."""
    rows = {r["batch"]: r["ms"] for r in bench["updates"]}
    out = {}
    # the floor is held captured on CUDA (eager it is launch-bound there), as benchmark_update's
    big = [
        ms["cudagraph"] / ms.get("floor-captured", ms["floor"])
        for b, ms in rows.items()
        if b >= 4096 and "cudagraph" in ms
    ]
    if big:
        worst = max(big)
        out["captured_over_floor_at_batch_ge_4096"] = {
            "value": round(worst, 2),
            "target": "<= 2.0",
            "met": worst <= 2.0,
        }
    if 1024 in rows and "cudagraph" in rows[1024]:
        speedup = rows[1024]["none"] / rows[1024]["cudagraph"]
        out["eager_over_captured_at_batch_1024"] = {
            "value": round(speedup, 2),
            "target": ">= 4.0",
            "met": speedup >= 4.0,
        }
    captured = [
        p for p in bench["pipeline"] if p["mode"] == "cudagraph" and p["matmul_precision"] == "float32"
    ]
    if captured:
        sps = captured[0]["env_steps_per_s"]
        out["pipeline_env_steps_per_s"] = {"value": round(sps), "target": ">= 1,000,000", "met": sps >= 1e6}
    return out


def run_isaac(num_envs: int) -> dict:
    """benchmarks/benchmark_isaac.py on the GPU: MEow vs Isaac Lab's rsl_rl PPO on Isaac-Ant."""
    out = Path("gpu_check_isaac.json").resolve()
    cmd = [
        sys.executable,
        "benchmarks/benchmark_isaac.py",
        "--task",
        "Isaac-Ant",
        "--num_envs",
        str(num_envs),
    ]
    cmd += ["--device", "cuda:0", "--out", str(out)]
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    result = {"exit_code": proc.returncode, "seconds": round(time.perf_counter() - start, 1)}
    result["output_tail"] = (proc.stdout + proc.stderr)[-4000:]
    if proc.returncode == 0 and out.is_file():
        result["results"] = json.loads(out.read_text())
    print(f"  isaac benchmark: exit {proc.returncode} in {result['seconds']:.0f} s")
    print("    " + "\n    ".join(result["output_tail"].strip().splitlines()[-6:]))
    return result


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)

    env = environment()
    if not env["cuda_available"] and not args.rehearse:
        print(
            f"gpu_check: no CUDA GPU is visible here (torch {env['torch']}, CUDA build {env['cuda_build']}): "
            "nothing was checked. Run it on a machine with an NVIDIA GPU, or with --rehearse to "
            "try every step on the CPU.",
            file=sys.stderr,
        )
        return 1
    missing = missing_task_files()
    if missing:
        print(f"gpu_check: {missing}", file=sys.stderr)
        return 2
    what = "CPU rehearsal (no GPU)" if args.rehearse else f"{env['gpu']}, driver {env.get('driver')}"
    print(f"[gpu_check] {what} | torch {env['torch']} (CUDA {env['cuda_build']}) | Python {env['python']}")
    report: dict = {"environment": env, "rehearsal": args.rehearse}
    out = Path(args.out)
    start = time.perf_counter()
    if not args.skip_tests:
        print("[gpu_check] tests marked gpu")
        report["tests"] = run_tests()
        out.write_text(json.dumps(report, indent=2))  # each stage's results survive a later failure
    print("[gpu_check] benchmarks")
    with tempfile.TemporaryDirectory() as workdir:
        try:
            report["benchmarks"] = run_benchmarks(args.rehearse, args.num_envs, Path(workdir))
        except RuntimeError as err:
            print(f"gpu_check: {err}; the report so far: {args.out}", file=sys.stderr)
            return 1
    report["targets"] = targets(report["benchmarks"])
    out.write_text(json.dumps(report, indent=2))
    if env["isaaclab"] and not args.skip_isaac and not args.rehearse:
        print("[gpu_check] Isaac Lab benchmark")
        report["isaac"] = run_isaac(args.num_envs)
    report["seconds"] = round(time.perf_counter() - start, 1)
    out.write_text(json.dumps(report, indent=2))
    print(f"[gpu_check] targets: {json.dumps(report['targets'])}")
    print(f"[gpu_check] wrote {args.out} in {report['seconds']:.0f} s")
    failed = report.get("tests", {}).get("exit_code", 0) != 0
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

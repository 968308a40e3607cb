"""Env-steps/s of MEow training on an Isaac Lab task next to Isaac Lab's own rsl_rl PPO.

    ./isaaclab.sh -p scripts/benchmark_isaac.py --task Isaac-Ant --num_envs 64 --device cpu
    ./isaaclab.sh -p scripts/benchmark_isaac.py --task Isaac-Ant --num_envs 4096 --device cuda:0

Both run on the same task, env count, device and machine, one after the other, in fresh
processes: MEow through scripts/train.py, PPO through Isaac Lab's own ``isaaclab train
--rl_library rsl_rl`` with the task's rsl_rl settings. Each library measures its own
training throughput (collection and updates, simulation included): MEow's ``charts/SPS``
after its warm-up, rsl_rl's ``Perf/total_fps``; the first measurements of each run are
dropped. Prints both rates and MEow/PPO; ``--repeats`` alternates the two to spread noise.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--task", default="Isaac-Ant", help="an Isaac task id with a MEow task file")
    parser.add_argument("--num_envs", type=int, default=64)
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--meow_iterations", type=int, default=150, help="MEow vectorized steps measured after warm-up"
    )
    parser.add_argument("--ppo_iterations", type=int, default=8, help="rsl_rl PPO iterations")
    parser.add_argument("--repeats", type=int, default=1, help="alternating rounds of both")
    parser.add_argument("--out", help="also write the results as JSON to this file")
    parser.add_argument("overrides", nargs="*", help="extra MEow settings, key=value")
    args = parser.parse_args(argv)
    for name in ("num_envs", "meow_iterations", "ppo_iterations", "repeats"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} {getattr(args, name)} is invalid; valid: an integer >= 1")
    return args


def _scalars(log_dir: Path, tag: str) -> list[tuple[int, float]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    runs = sorted({p.parent for p in log_dir.rglob("events.out.tfevents.*")})
    if not runs:
        raise RuntimeError(f"no TensorBoard events under {log_dir}")
    events = EventAccumulator(str(runs[-1]), size_guidance={"scalars": 0})
    events.Reload()
    if tag not in events.Tags()["scalars"]:
        raise RuntimeError(f"{runs[-1]} has no '{tag}' scalars")
    return [(e.step, e.value) for e in events.Scalars(tag)]


def _run(cmd: list[str], cwd: Path, what: str) -> None:
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-15:])
        raise RuntimeError(f"{what} failed (exit {proc.returncode}):\n{tail}")


def run_meow(args: argparse.Namespace, work: Path) -> float:
    """MEow's steady-state env-steps/s after warm-up (median of its logged windows)."""
    from meow.config import load_config

    cfg = load_config(args.task, [f"env.num_envs={args.num_envs}", *args.overrides])
    warmup = cfg.runner.warmup_steps
    log_every = cfg.env.num_envs * 10
    total = warmup + (args.meow_iterations + 10) * cfg.env.num_envs
    cmd = [sys.executable, str(ROOT / "scripts" / "train.py"), "--task", args.task, "--device", args.device]
    cmd += ["--num_envs", str(args.num_envs), "--total_steps", str(total), *args.overrides]
    cmd += [f"runner.log_interval={log_every}", "runner.progress=false", "runner.save_buffer=false"]
    cmd += [f"runner.checkpoint_interval={total}", "runner.log_dir=logs"]
    _run(cmd, work, "MEow training")
    # windows that start after warm-up plus one window of compilation/allocation warm-up
    rates = [v for step, v in _scalars(work / "logs", "charts/SPS") if step - log_every > warmup + log_every]
    if not rates:
        raise RuntimeError("MEow logged no throughput after its warm-up; raise --meow_iterations")
    return statistics.median(rates)


def run_ppo(args: argparse.Namespace, work: Path) -> float:
    """rsl_rl PPO's env-steps/s through Isaac Lab's own training CLI (median over iterations)."""
    search = os.pathsep.join([str(Path(sys.executable).parent), os.environ["PATH"]])
    launcher = shutil.which("isaaclab", path=search)
    if launcher is None:
        raise RuntimeError("Isaac Lab's 'isaaclab' command is not on PATH")
    from meow.config import load_config
    from meow_isaac.env import with_default_physics

    task = load_config(args.task).env.id  # Isaac Lab's own id
    cmd = [launcher, "train", "--rl_library", "rsl_rl", "--task", task, "--num_envs", str(args.num_envs)]
    cmd += ["--max_iterations", str(args.ppo_iterations), "--device", args.device]
    cmd += [*with_default_physics([]), f"agent.device={args.device}"]
    _run(cmd, work, "rsl_rl PPO training")
    rates = [v for step, v in _scalars(work / "logs" / "rsl_rl", "Perf/total_fps") if step >= 2]
    if not rates:
        raise RuntimeError("rsl_rl logged fewer than 3 iterations; raise --ppo_iterations")
    return statistics.median(rates)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    sys.path.insert(0, str(ROOT / "source"))
    from meow.config import ConfigError

    results = []
    try:
        for r in range(args.repeats):
            with tempfile.TemporaryDirectory() as a, tempfile.TemporaryDirectory() as b:
                meow = run_meow(args, Path(a))
                ppo = run_ppo(args, Path(b))
            results.append({"meow_sps": meow, "ppo_sps": ppo, "ratio": meow / ppo})
            print(
                f"[bench] round {r + 1}/{args.repeats}: MEow {meow:,.0f} env-steps/s, "
                f"rsl_rl PPO {ppo:,.0f} env-steps/s, MEow/PPO {meow / ppo:.2f}",
                flush=True,
            )
    except (ConfigError, RuntimeError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    ratio = statistics.median(r["ratio"] for r in results)
    print(
        f"[bench] {args.task}, {args.num_envs} envs on {args.device}: median MEow/PPO env-steps/s = "
        f"{ratio:.2f} over {len(results)} round(s)"
    )
    if args.out:
        report = {"args": vars(args), "rounds": results, "ratio": ratio}
        Path(args.out).write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Scale-out of data-parallel training: env steps per second summed over ranks, 1 rank vs N ranks.

    python benchmarks/benchmark_distributed.py                          # MultiGoal, 1 vs 2 ranks on the CPU
    python benchmarks/benchmark_distributed.py --task InvertedPendulum-v5 --ranks 1 2
    python benchmarks/benchmark_distributed.py --device cuda --ranks 1  # the 1-GPU figure
    python benchmarks/benchmark_distributed.py --repeats 3              # alternate 1 and 2 ranks 3 times

Each world size runs as its own ``torchrun --standalone`` job of this script, one after the other
in this one invocation, with one torch thread per rank (``OMP_NUM_THREADS=1``, ``torch_threads=1``).
Every rank trains the same MEow as ``scripts/train.py --distributed`` (the core runner, gradients
all-reduced every update), first at least ``--warmup`` untimed vectorized steps (half of them
random actions, and as many as every rank's buffer needs to hold a batch), then ``--steps`` timed
vectorized steps with an update after each. The figure is the
env steps of the timed part summed over ranks, divided by its wall-clock time. The ratio of each
world size to the first is printed, per round and as the median over ``--repeats`` rounds (the
world sizes alternate, so that a busy neighbour slows both alike): on a machine with at least N
free cores the ideal is N.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

RESULT_PREFIX = "[benchmark_distributed] result "


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--task", default="MultiGoal", help="task id (default MultiGoal)")
    parser.add_argument("--ranks", type=int, nargs="+", default=[1, 2], help="world sizes (default 1 2)")
    parser.add_argument("--num_envs", type=int, default=1, help="environments per rank (default 1)")
    parser.add_argument("--steps", type=int, default=1500, help="timed vectorized steps per rank")
    parser.add_argument("--warmup", type=int, default=300, help="untimed vectorized steps first")
    parser.add_argument("--repeats", type=int, default=1, help="rounds over the world sizes (default 1)")
    parser.add_argument("--device", default="cpu", help="cpu (gloo) or cuda (one GPU per rank, NCCL)")
    parser.add_argument("--out", type=Path, help="also write the results as JSON here")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides")
    args = parser.parse_args(argv)
    for name in ("num_envs", "steps", "warmup", "repeats"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} {getattr(args, name)} is invalid; valid: an integer >= 1")
    if any(n < 1 for n in args.ranks):
        parser.error(f"--ranks {' '.join(map(str, args.ranks))} is invalid; valid: integers >= 1")
    return args


def worker(args: argparse.Namespace) -> int:
    """One rank: trains in memory and, on rank 0, prints the timed part's summed env steps/s."""
    import torch

    from meow.config import load_config
    from meow.distributed import init_from_env
    from meow.envs import make_env_from_config
    from meow.runners import OffPolicyRunner

    dist = init_from_env()
    world, n = dist.world_size, args.num_envs
    cfg = load_config(
        args.task,
        [
            f"device={args.device}",
            f"env.num_envs={n}",
            "env.eval_envs=0",
            "torch_threads=1",
            "runner.progress=false",
            f"runner.log_interval={10**12}",
            *args.overrides,
        ],
    )
    # Untimed: half random actions, then updates, and at least a batch in every rank's buffer.
    warm_iters = max(args.warmup, -(-cfg.algo.batch_size // n) + args.warmup // 2)
    warm = warm_iters * n * world
    cfg.runner.warmup_steps = max(1, args.warmup // 2) * n * world
    cfg.runner.total_steps = warm
    dist.configure(cfg)
    env = make_env_from_config(cfg, n)
    runner = OffPolicyRunner(cfg, env, None, None, dist=dist)
    runner.learn()  # random actions, buffer fill, first updates (and compilation, if any)
    cfg.runner.total_steps = warm + args.steps * n * world
    dist.barrier()
    if runner.device.type == "cuda":
        torch.cuda.synchronize()
    start, before, updates = time.perf_counter(), runner.global_step, runner.num_updates
    runner.learn()
    if runner.device.type == "cuda":
        torch.cuda.synchronize()
    dist.barrier()
    elapsed = time.perf_counter() - start
    env.close()
    if dist.is_main:
        result = {
            "world_size": world,
            "env_steps": runner.global_step - before,
            "seconds": elapsed,
            "updates_per_rank": runner.num_updates - updates,
        }
        print(RESULT_PREFIX + json.dumps(result), flush=True)
    return 0


def run_world(args: argparse.Namespace, world: int) -> dict:
    """Runs one torchrun job of ``world`` ranks; returns rank 0's result."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={world}"]
    cmd += [str(Path(__file__).resolve()), "--worker", "--task", args.task, "--device", args.device]
    cmd += ["--num_envs", str(args.num_envs), "--steps", str(args.steps), "--warmup", str(args.warmup)]
    proc = subprocess.run([*cmd, *args.overrides], env=env, capture_output=True, text=True)
    for line in proc.stdout.splitlines():
        if line.startswith(RESULT_PREFIX):
            return json.loads(line[len(RESULT_PREFIX) :])
    tail = "\n".join(proc.stderr.strip().splitlines()[-15:])
    raise RuntimeError(f"{world}-rank run failed (exit {proc.returncode}):\n{tail}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.worker:
        return worker(args)
    import torch

    print(
        f"[benchmark_distributed] {args.task} | {args.num_envs} env(s) per rank | {args.steps} timed steps "
        f"per rank | device {args.device} | {os.cpu_count()} CPU cores | torch {torch.__version__}"
    )
    base = args.ranks[0]
    ratios: dict[int, list[float]] = {world: [] for world in args.ranks[1:]}
    rounds = []
    for round_ in range(1, args.repeats + 1):
        results = []
        for world in args.ranks:
            try:
                res = run_world(args, world)
            except RuntimeError as err:
                print(f"error: {err}", file=sys.stderr)
                return 1
            res["sps"] = res["env_steps"] / res["seconds"]
            results.append(res)
            print(
                f"  round {round_}, {world} rank(s): {res['sps']:9.1f} env steps/s summed over ranks "
                f"({res['env_steps']:,} steps, {res['updates_per_rank']:,} updates per rank, "
                f"in {res['seconds']:.1f} s)",
                flush=True,
            )
        for world, res in zip(args.ranks[1:], results[1:], strict=True):
            ratios[world].append(res["sps"] / results[0]["sps"])
        rounds.append(results)
    summary = {}
    for world, values in ratios.items():
        per_round = ", ".join(f"{v:.2f}" for v in values)
        print(
            f"  scale-out {world} vs {base} rank(s): {statistics.median(values):.2f}x median "
            f"(rounds: {per_round}; ideal {world / base:.0f}x)"
        )
        summary[str(world)] = {"median": statistics.median(values), "rounds": values}
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        record = {
            "task": args.task,
            "num_envs_per_rank": args.num_envs,
            "steps": args.steps,
            "device": args.device,
            "cpu_cores": os.cpu_count(),
            "torch": torch.__version__,
            "overrides": args.overrides,
            "date": time.strftime("%Y-%m-%d %H:%M %Z"),
            "rounds": rounds,
            "scale_out": summary,
        }
        args.out.write_text(json.dumps(record, indent=2) + "\n")
        print(f"[benchmark_distributed] wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

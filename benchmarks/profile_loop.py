"""Where a training step's time goes: the Hopper loop (one env, one update per step) phase by phase.

    python benchmarks/profile_loop.py                                  # Hopper-v5, eager, one thread
    python benchmarks/profile_loop.py --capture compile --steps 500
    python benchmarks/profile_loop.py --task Walker2d-v5 --batch_size 256 --out profile.json

After --warmup random steps (and, under compile, --burnin untimed learning steps that absorb the
compilation), --steps learning steps run the same work as the OffPolicyRunner's loop, in its order
(action, env step, storing, one update), each phase timed by itself: wall-clock and the process's
own CPU time (which other processes on the machine disturb less). The update is split into
sampling the batch, the loss's forward pass (of which the target), backward, and the optimizer
part (zeroing, clip, Adam, Polyak); the target is timed again apart (not counted in the step).
Then torch.profiler records --profile_steps more updates and
reports the matrix products alone (mm, addmm, bmm, baddbmm): the floor that no fusion removes.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch

from meow.utils.cli import ArgumentParser, at_least

MATMULS = ("aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm")
PHASES = ("act", "env step", "store", "sample", "loss forward", "(target part)", "backward", "optimizer")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", default="Hopper-v5", help="Gymnasium task id or alias (see tasks/)")
    parser.add_argument("--capture", default="none", choices=("none", "compile"), help="algo.capture")
    parser.add_argument("--steps", type=at_least(1), default=1000, help="timed learning steps")
    parser.add_argument("--warmup", type=at_least(256), default=1000, help="random-action steps first")
    parser.add_argument("--burnin", type=at_least(0), default=100, help="untimed learning steps")
    parser.add_argument("--profile_steps", type=at_least(1), default=100, help="updates under torch.profiler")
    parser.add_argument("--batch_size", type=at_least(1), default=256)
    parser.add_argument("--threads", type=at_least(1), default=1, help="torch intra-op threads")
    parser.add_argument("--top", type=at_least(0), default=0, help="also list the N costliest operations")
    parser.add_argument("--out", type=Path, help="also write the figures to this JSON file")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from meow.config import ConfigError, load_config
    from meow.envs import make_env
    from meow.runners import OffPolicyRunner

    try:
        cfg = load_config(
            args.task,
            [
                f"torch_threads={args.threads}",
                f"algo.capture={args.capture}",
                f"algo.batch_size={args.batch_size}",
                "env.num_envs=1",
                "env.eval_envs=0",
                "runner.progress=false",
            ],
        )
        if cfg.env.kind != "gymnasium":
            raise ConfigError(f"--task {args.task} is invalid; valid: a Gymnasium task")
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    env = make_env(cfg.env.kind, cfg.env.id, 1, cfg.device, cfg.env.kwargs)
    runner = OffPolicyRunner(cfg, env, None, None)
    alg, buffer = runner.alg, runner.buffer
    obs = env.reset(seed=cfg.seed)

    def env_step(actions: torch.Tensor) -> None:
        nonlocal obs
        result = env.step(actions)
        buffer.add(obs, actions, result.rewards, result.next_obs, result.terminated, result.truncated)
        obs = result.obs

    for _ in range(args.warmup):
        env_step(torch.rand(1, env.action_dim) * 2.0 - 1.0)
    wall = dict.fromkeys(PHASES, 0.0)
    cpu = dict.fromkeys(PHASES, 0.0)

    def timed(name: str, fn):
        w, c = time.perf_counter(), time.process_time()
        out = fn()
        wall[name] += time.perf_counter() - w
        cpu[name] += time.process_time() - c
        return out

    def learning_step() -> None:
        nonlocal obs
        actions = timed("act", lambda: alg.act(obs))
        result = timed("env step", lambda: env.step(actions))
        timed(
            "store",
            lambda: buffer.add(
                obs, actions, result.rewards, result.next_obs, result.terminated, result.truncated
            ),
        )
        obs = result.obs
        alg.policy.train()
        if args.capture == "compile":
            loss, _ = timed("loss forward", lambda: alg._update_loss(buffer, args.batch_size))
        else:
            batch = timed("sample", lambda: buffer.sample_windows(args.batch_size, alg.n_step))
            loss, _ = timed("loss forward", lambda: alg.loss(batch))
            with torch.no_grad():
                timed("(target part)", lambda: alg.soft_target(batch))
        grad = alg._flat.grad

        def optimizer_part() -> None:
            norm = torch.linalg.vector_norm(grad)
            grad.mul_(torch.clamp(alg.grad_clip / (norm + 1e-6), max=1.0))
            alg.optimizer.step()
            with torch.no_grad():
                alg._target_flat.lerp_(alg._flat, alg.tau)

        timed("optimizer", grad.zero_)
        timed("backward", loss.backward)
        timed("optimizer", optimizer_part)

    for _ in range(args.burnin):
        learning_step()
    for k in PHASES:
        wall[k] = cpu[k] = 0.0
    t0, c0 = time.perf_counter(), time.process_time()
    for _ in range(args.steps):
        learning_step()
    # the target part ran a second time, on its own, to be timed: not part of the step
    total_wall = time.perf_counter() - t0 - wall["(target part)"]
    total_cpu = time.process_time() - c0 - cpu["(target part)"]

    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(args.profile_steps):
            alg.update_from(buffer, args.batch_size)
    events = prof.key_averages()
    matmul_ms = sum(e.self_cpu_time_total for e in events if e.key in MATMULS) / args.profile_steps / 1e3
    profiled_ms = sum(e.self_cpu_time_total for e in events) / args.profile_steps / 1e3
    env.close()

    rows = {k: (wall[k] / args.steps * 1e3, cpu[k] / args.steps * 1e3) for k in PHASES if wall[k] > 0}
    print(
        f"\n{args.task} | capture {args.capture} | batch {args.batch_size} | {args.threads} thread(s) | "
        f"torch {torch.__version__} | load average {os.getloadavg()[0]:.1f}"
    )
    print(f"{'phase':<16}{'ms/step wall':>14}{'ms/step cpu':>14}{'share (cpu)':>13}")
    for k, (w, c) in rows.items():
        share = "" if k.startswith("(") else f"{c / (total_cpu / args.steps * 1e3):12.0%}"
        print(f"{k:<16}{w:14.3f}{c:14.3f}{share:>13}")
    print(f"{'whole step':<16}{total_wall / args.steps * 1e3:14.3f}{total_cpu / args.steps * 1e3:14.3f}")
    print(
        f"matrix products alone: {matmul_ms:.3f} ms per update (torch.profiler, {args.profile_steps} "
        f"updates; all operations under the profiler: {profiled_ms:.3f} ms)"
    )
    print(f"env-steps/s: {args.steps / total_wall:.1f} wall, {args.steps / total_cpu:.1f} by CPU time")
    if args.top:
        print(f"the {args.top} costliest operations under the profiler (self CPU time, ms per update):")
        for e in sorted(events, key=lambda e: -e.self_cpu_time_total)[: args.top]:
            per_update = e.self_cpu_time_total / args.profile_steps / 1e3
            print(f"  {per_update:7.3f}  x{e.count / args.profile_steps:<6.1f} {e.key[:90]}")
    if args.out is not None:
        report = {
            "task": args.task,
            "capture": args.capture,
            "batch_size": args.batch_size,
            "threads": args.threads,
            "torch": torch.__version__,
            "phases_ms": {k: {"wall": w, "cpu": c} for k, (w, c) in rows.items()},
            "step_ms": {"wall": total_wall / args.steps * 1e3, "cpu": total_cpu / args.steps * 1e3},
            "matmul_ms_per_update": matmul_ms,
        }
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

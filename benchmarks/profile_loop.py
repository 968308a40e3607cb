"""Where a training step's time goes, phase by phase: the one-env Gymnasium loop, or a vectorized
(Isaac Lab) task's loop at its task file's settings.

    python benchmarks/profile_loop.py                                  # Hopper-v5, eager, one thread
    python benchmarks/profile_loop.py --capture compile --steps 500
    python benchmarks/profile_loop.py --task Walker2d-v5 --batch_size 256 --out profile.json
    python benchmarks/profile_loop.py --task Isaac-Ant --threads 2 --steps 100 algo.capture=compile

Gymnasium tasks (one env, one update per step): after --warmup random steps (and, under compile,
--burnin untimed learning steps that absorb the compilation), --steps learning steps run the same
work as the OffPolicyRunner's loop, in its order (action, env step, storing, one update), each
phase timed by itself: wall-clock and the process's own CPU time (which other processes on the
machine disturb less). The update is split into sampling the batch, the loss's forward pass (of
which the target), backward, and the optimizer part (zeroing, clip, Adam, Polyak); the target is
timed again apart (not counted in the step).

Other kinds (Isaac Lab tasks, MultiGoal): the OffPolicyRunner's own loop runs at the task file's settings
(with the key=value overrides, and --num_envs), its phases timed where the runner calls them:
action, simulator step, observation statistics, storing, the step's updates (algo.updates_per_step
of algo.batch_size), and the rest (episode bookkeeping, logging). The task file's warm-up of random
actions, then --burnin learning steps (vectorized) run untimed, then --steps timed; figures are per
vectorized step and per env step.

Both then record --profile_steps more updates under torch.profiler and report the matrix products
alone (mm, addmm, bmm, baddbmm): the floor that no fusion removes.
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
    parser.add_argument("--task", default="Hopper-v5", help="task id or alias (see tasks/)")
    parser.add_argument(
        "--capture",
        default=None,
        choices=("none", "compile"),
        help="algo.capture (default: none for Gymnasium tasks, the task file's for vectorized ones)",
    )
    parser.add_argument("--steps", type=at_least(1), default=1000, help="timed learning steps")
    parser.add_argument(
        "--warmup", type=at_least(256), default=1000, help="Gymnasium: random-action steps first"
    )
    parser.add_argument("--burnin", type=at_least(0), default=100, help="untimed learning steps")
    parser.add_argument("--profile_steps", type=at_least(1), default=100, help="updates under torch.profiler")
    parser.add_argument(
        "--batch_size", type=at_least(1), default=None, help="default: 256 (Gymnasium), the task file's"
    )
    parser.add_argument(
        "--num_envs", type=at_least(1), default=None, help="vectorized tasks: parallel envs (the task file's)"
    )
    parser.add_argument("--threads", type=at_least(1), default=1, help="torch intra-op threads")
    parser.add_argument("--top", type=at_least(0), default=0, help="also list the N costliest operations")
    parser.add_argument("--out", type=Path, help="also write the figures to this JSON file")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="settings over the task file's")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from meow.config import ConfigError, load_config

    overrides = [f"torch_threads={args.threads}", "runner.progress=false"]
    if args.capture is not None:
        overrides.append(f"algo.capture={args.capture}")
    if args.batch_size is not None:
        overrides.append(f"algo.batch_size={args.batch_size}")
    try:
        cfg = load_config(args.task, [*overrides, *args.overrides])
        if cfg.env.kind == "gymnasium":
            if args.num_envs not in (None, 1):
                raise ConfigError(
                    f"--num_envs {args.num_envs} is invalid for {args.task}; valid: 1 (the one-env loop)"
                )
            cfg = load_config(
                args.task,
                [
                    *overrides,
                    f"algo.capture={args.capture or 'none'}",
                    f"algo.batch_size={args.batch_size or 256}",
                    *args.overrides,
                    "env.num_envs=1",
                    "env.eval_envs=0",
                ],
            )
        elif args.num_envs is not None:
            cfg = load_config(args.task, [*overrides, f"env.num_envs={args.num_envs}", *args.overrides])
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if cfg.env.kind != "gymnasium":
        return profile_vectorized(args, cfg)
    return profile_gymnasium(args, cfg)


def profile_gymnasium(args: argparse.Namespace, cfg) -> int:
    """The one-env loop rebuilt step by step, the update split into its parts."""
    from meow.envs import make_env
    from meow.runners import OffPolicyRunner

    args.capture = cfg.algo.capture
    args.batch_size = cfg.algo.batch_size
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

    matmul_ms, profiled_ms, events = profile_updates(alg, buffer, args.batch_size, args.profile_steps)
    env.close()

    rows = {k: (wall[k] / args.steps * 1e3, cpu[k] / args.steps * 1e3) for k in PHASES if wall[k] > 0}
    print(
        f"\n{args.task} | capture {args.capture} | batch {args.batch_size} | {args.threads} thread(s) | "
        f"torch {torch.__version__} | load average {os.getloadavg()[0]:.1f}"
    )
    print_phases(rows, total_wall / args.steps * 1e3, total_cpu / args.steps * 1e3)
    print(
        f"matrix products alone: {matmul_ms:.3f} ms per update (torch.profiler, {args.profile_steps} "
        f"updates; all operations under the profiler: {profiled_ms:.3f} ms)"
    )
    print(f"env-steps/s: {args.steps / total_wall:.1f} wall, {args.steps / total_cpu:.1f} by CPU time")
    print_top(events, args.top, args.profile_steps)
    write_report(
        args,
        {
            "task": args.task,
            "capture": args.capture,
            "batch_size": args.batch_size,
            "threads": args.threads,
            "torch": torch.__version__,
            "phases_ms": {k: {"wall": w, "cpu": c} for k, (w, c) in rows.items()},
            "step_ms": {"wall": total_wall / args.steps * 1e3, "cpu": total_cpu / args.steps * 1e3},
            "matmul_ms_per_update": matmul_ms,
        },
    )
    return 0


VEC_PHASES = ("act", "env step", "obs statistics", "store", "updates")


def profile_vectorized(args: argparse.Namespace, cfg) -> int:
    """The OffPolicyRunner's own loop on a vectorized task, its phases timed where the runner calls them."""
    from meow.envs import make_env_from_config
    from meow.runners import OffPolicyRunner

    env = make_env_from_config(cfg, cfg.env.num_envs)
    try:
        runner = OffPolicyRunner(cfg, env, None, None)  # capture resolved for the task file's whole run
        alg, buffer, n = runner.alg, runner.buffer, env.num_envs
        sync = torch.cuda.synchronize if runner.device.type == "cuda" else (lambda: None)
        wall = dict.fromkeys(VEC_PHASES, 0.0)
        cpu = dict.fromkeys(VEC_PHASES, 0.0)

        def timed(owner, attr: str, name: str) -> None:
            inner = getattr(owner, attr)

            def wrapper(*a, **k):
                sync()
                w, c = time.perf_counter(), time.process_time()
                out = inner(*a, **k)
                sync()
                wall[name] += time.perf_counter() - w
                cpu[name] += time.process_time() - c
                return out

            setattr(owner, attr, wrapper)

        timed(alg, "act", "act")
        timed(env, "step", "env step")
        timed(alg.normalizer, "update", "obs statistics")
        timed(buffer, "add", "store")
        timed(runner, "_update", "updates")
        # untimed: the task file's random-action warm-up, then --burnin learning steps (compilation)
        cfg.runner.total_steps = cfg.runner.warmup_steps + max(args.burnin, 1) * n
        runner.learn()
        for k in VEC_PHASES:
            wall[k] = cpu[k] = 0.0
        updates0 = runner.num_updates
        cfg.runner.total_steps += args.steps * n
        sync()
        t0, c0 = time.perf_counter(), time.process_time()
        runner.learn()
        sync()
        total_wall, total_cpu = time.perf_counter() - t0, time.process_time() - c0
        updates = (runner.num_updates - updates0) / args.steps
        batch = cfg.algo.batch_size
        matmul_ms, profiled_ms, events = profile_updates(alg, buffer, batch, args.profile_steps)
    finally:
        env.close()

    rows = {k: (wall[k] / args.steps * 1e3, cpu[k] / args.steps * 1e3) for k in VEC_PHASES}
    rows["rest"] = (
        (total_wall - sum(wall.values())) / args.steps * 1e3,
        (total_cpu - sum(cpu.values())) / args.steps * 1e3,
    )
    step_wall, step_cpu = total_wall / args.steps * 1e3, total_cpu / args.steps * 1e3
    print(
        f"\n{args.task} | {n} envs | capture {alg.capture.mode} | {updates:g} updates of batch {batch} per "
        f"vectorized step | {args.threads} thread(s) | torch {torch.__version__} | load average "
        f"{os.getloadavg()[0]:.1f}"
    )
    print_phases(rows, step_wall, step_cpu)
    per_update = rows["updates"][0] / updates if updates else float("nan")
    print(
        f"one update: {per_update:.3f} ms wall; matrix products alone {matmul_ms:.3f} ms (torch.profiler, "
        f"{args.profile_steps} updates; all operations under the profiler: {profiled_ms:.3f} ms)"
    )
    sps_wall, sps_cpu = n * args.steps / total_wall, n * args.steps / total_cpu
    print(f"env-steps/s: {sps_wall:,.0f} wall, {sps_cpu:,.0f} by CPU time")
    print_top(events, args.top, args.profile_steps)
    write_report(
        args,
        {
            "task": args.task,
            "num_envs": n,
            "capture": alg.capture.mode,
            "batch_size": batch,
            "updates_per_step": updates,
            "threads": args.threads,
            "overrides": list(args.overrides),
            "torch": torch.__version__,
            "phases_ms": {k: {"wall": w, "cpu": c} for k, (w, c) in rows.items()},
            "step_ms": {"wall": step_wall, "cpu": step_cpu},
            "update_ms": per_update,
            "env_steps_per_s": sps_wall,
            "matmul_ms_per_update": matmul_ms,
        },
    )
    return 0


def profile_updates(alg, buffer, batch_size: int, steps: int):
    """``steps`` updates under torch.profiler: (matrix products ms, all ops ms) per update, and the events."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            alg.update_from(buffer, batch_size)
    events = prof.key_averages()
    matmul_ms = sum(e.self_cpu_time_total for e in events if e.key in MATMULS) / steps / 1e3
    return matmul_ms, sum(e.self_cpu_time_total for e in events) / steps / 1e3, events


def print_phases(rows: dict[str, tuple[float, float]], step_wall: float, step_cpu: float) -> None:
    print(f"{'phase':<16}{'ms/step wall':>14}{'ms/step cpu':>14}{'share (cpu)':>13}")
    for k, (w, c) in rows.items():
        share = "" if k.startswith("(") else f"{c / step_cpu:12.0%}"
        print(f"{k:<16}{w:14.3f}{c:14.3f}{share:>13}")
    print(f"{'whole step':<16}{step_wall:14.3f}{step_cpu:14.3f}")


def print_top(events, top: int, steps: int) -> None:
    if top:
        print(f"the {top} costliest operations under the profiler (self CPU time, ms per update):")
        for e in sorted(events, key=lambda e: -e.self_cpu_time_total)[:top]:
            print(f"  {e.self_cpu_time_total / steps / 1e3:7.3f}  x{e.count / steps:<6.1f} {e.key[:90]}")


def write_report(args: argparse.Namespace, report: dict) -> None:
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    sys.exit(main())

"""Train MEow.

    python scripts/train.py --task Hopper-v5 --algo meow [key=value ...]
    python scripts/train.py --task MultiGoal runner.total_steps=4000
    python scripts/train.py --resume logs/meow/Hopper-v5/<timestamp> runner.total_steps=2000000

Settings come from config/meow.yaml, then tasks/<task>.yaml, then the key=value overrides.
"""

from __future__ import annotations

import argparse
import signal
import sys
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "source"))

ALGOS = ("meow",)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--task", help="task id or alias, e.g. Hopper-v5 (see tasks/)")
    parser.add_argument("--algo", default="meow", help=f"algorithm; one of: {', '.join(ALGOS)}")
    parser.add_argument("--resume", metavar="PATH", help="checkpoint file or run directory to continue from")
    parser.add_argument("--seed", type=int, help="shorthand for seed=N")
    parser.add_argument("--device", help="shorthand for device=DEV (cpu, cuda, cuda:N)")
    parser.add_argument("--num_envs", type=int, help="shorthand for env.num_envs=N")
    parser.add_argument("--total_steps", type=int, help="shorthand for runner.total_steps=N")
    parser.add_argument(
        "overrides", nargs="*", metavar="key=value", help="config overrides, e.g. algo.lr=3e-4"
    )
    args = parser.parse_args(argv)
    if args.algo not in ALGOS:
        parser.error(f"--algo {args.algo} is not available; valid: {', '.join(ALGOS)}")
    if not args.task and not args.resume:
        parser.error("give --task (a new run) or --resume (continue a run)")
    for flag, key in (
        ("seed", "seed"),
        ("device", "device"),
        ("num_envs", "env.num_envs"),
        ("total_steps", "runner.total_steps"),
    ):
        if getattr(args, flag) is not None:
            args.overrides.append(f"{key}={getattr(args, flag)}")
    return args


def _raise_interrupt(signum, frame) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def new_run_dir(cfg) -> Path:
    """``<log_dir>/meow/<task id>/<timestamp>``, never an existing directory."""
    base = Path(cfg.runner.log_dir) / "meow" / cfg.env.id / datetime.now().strftime("%Y-%m-%d_%H-%M-%S")
    path, k = base, 1
    while path.exists():
        path, k = base.with_name(f"{base.name}_{k}"), k + 1
    return path


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from meow.config import ConfigError, config_from_checkpoint, load_config
    from meow.envs import make_env
    from meow.runners import CheckpointError, OffPolicyRunner, read_checkpoint

    try:
        ckpt = None
        if args.resume:
            ckpt = read_checkpoint(args.resume)
            cfg = config_from_checkpoint(ckpt["config"], args.overrides)
            if args.task and args.task != cfg.env.id:
                raise CheckpointError(f"{ckpt['path']} is a {cfg.env.id} run, not --task {args.task}")
        else:
            cfg = load_config(args.task, args.overrides)
        env = make_env(cfg.env.kind, cfg.env.id, cfg.env.num_envs, cfg.device, cfg.env.kwargs)
        eval_env = None
        if cfg.env.eval_envs > 0:
            eval_env = make_env(cfg.env.kind, cfg.env.id, cfg.env.eval_envs, cfg.device, cfg.env.kwargs)
        run_dir = new_run_dir(cfg)
        runner = OffPolicyRunner(cfg, env, eval_env, run_dir)
        if ckpt is not None:
            runner.load(ckpt)
            print(f"[meow] resumed {ckpt['path']} at env step {runner.global_step:,}")
    except (ConfigError, CheckpointError, MemoryError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2

    import torch

    print(
        f"[meow] task {cfg.env.id} | device {cfg.device} | torch threads {torch.get_num_threads()} | "
        f"seed {cfg.seed} | {cfg.runner.total_steps:,} env steps"
    )
    print(f"[meow] logging to {run_dir}")
    # Ctrl-C, and the SIGTERM a cluster scheduler sends before it kills a job, save a checkpoint.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        runner.learn()
    except KeyboardInterrupt:
        path = runner.save()
        print(f"\n[meow] interrupted at env step {runner.global_step:,}; saved {path}")
        return 130
    except FloatingPointError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    finally:
        env.close()
        if eval_env is not None:
            eval_env.close()
    if runner.last_eval is not None:
        mean, std = runner.last_eval
        step, best, _ = max(runner.evaluations, key=lambda e: e[1])
        print(
            f"[meow] final deterministic evaluation: return {mean:.1f} ± {std:.1f} "
            f"over {cfg.env.eval_envs} episodes (best {best:.1f} at env step {step:,})"
        )
    print(f"[meow] checkpoint: {run_dir / f'model_{runner.global_step}.pt'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

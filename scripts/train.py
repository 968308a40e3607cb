"""Train MEow.

    python scripts/train.py --task Hopper-v5 --algo meow [key=value ...]
    python scripts/train.py --task MultiGoal runner.total_steps=4000
    python scripts/train.py --resume logs/meow/Hopper-v5/<timestamp> runner.total_steps=2000000
    python scripts/train.py --task Hopper-v5 --algo sac --run_dir runs/hopper/sac/seed1
    python scripts/train.py --resume runs/hopper/sac/seed1 --run_dir runs/hopper/sac/seed1   # in place
    ./isaaclab.sh -p scripts/train.py --task Isaac-Ant-v0 --algo meow --headless --num_envs 4096
    torchrun --nproc_per_node 4 scripts/train.py --task Isaac-Ant-v0 --distributed --num_envs 4096

Settings come from config/meow.yaml, then the task file, then the key=value overrides. An env
kind may take overrides of its own (Isaac tasks: physics=newton_mjwarp | physx, presets=...,
env.<Isaac Lab env cfg key>=value such as env.episode_length_s=10; agent.<key>=value is the same
as <key>=value, e.g. agent.algo.lr=3e-4).
"""

from __future__ import annotations

import argparse
import signal
import sys
import time
from datetime import datetime
from pathlib import Path

from meow.utils.cli import ArgumentParser, at_least

ALGOS = ("meow", "sac", "ppo")
RUNNERS = ("core", "rl_games")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", help="task id or alias, e.g. Hopper-v5 (see tasks/)")
    parser.add_argument(
        "--algo",
        help="meow (default); baselines from their own libraries: sac (SB3 on Gymnasium tasks, "
        "rl-games on Isaac tasks), ppo (rsl_rl through Isaac Lab, Isaac tasks); --resume takes "
        "the algorithm of the run it continues",
    )
    parser.add_argument(
        "--runner",
        default="core",
        choices=RUNNERS,
        help="training loop: core (default) or rl_games (MEow as an rl-games algorithm, rl-games log layout)",
    )
    parser.add_argument(
        "--distributed",
        action="store_true",
        help="data-parallel training, one process per GPU (or CPU rank), started by torchrun; "
        "--num_envs is per rank, env steps are counted over all ranks",
    )
    parser.add_argument("--resume", metavar="PATH", help="checkpoint file or run directory to continue from")
    parser.add_argument("--checkpoint", metavar="PATH", help="same as --resume (Isaac Lab's name)")
    parser.add_argument(
        "--run_dir",
        metavar="DIR",
        help="write the run into DIR instead of <log_dir>/<algo>/<task>/<timestamp> (MEow's core runner "
        "and --algo sac on Gymnasium tasks); DIR must hold no checkpoints, except that --resume DIR "
        "--run_dir DIR continues a run in its own directory",
    )
    parser.add_argument("--seed", type=at_least(0), help="shorthand for seed=N")
    parser.add_argument("--device", help="shorthand for device=DEV (cpu, cuda, cuda:N)")
    parser.add_argument("--num_envs", type=at_least(1), help="shorthand for env.num_envs=N")
    parser.add_argument("--total_steps", type=at_least(1), help="shorthand for runner.total_steps=N")
    parser.add_argument(
        "--max_iterations",
        type=at_least(1),
        help="train for N vectorized steps (runner.total_steps = N x env.num_envs [x ranks]); "
        "--algo ppo: N rsl_rl iterations, as Isaac Lab counts them",
    )
    parser.add_argument(
        "--max_minutes",
        type=float,
        help="shorthand for runner.max_minutes=M: stop after M minutes of wall-clock time, start-up "
        "included (also for --algo sac|ppo), ending as at total_steps",
    )
    video = parser.add_argument_group("env kinds that record training video (Isaac Lab tasks)")
    video.add_argument(
        "--headless",
        action="store_true",
        help="run without a viewer (always the case for kit-less Newton; accepted for Isaac Lab habits)",
    )
    video.add_argument(
        "--video", action="store_true", help="record training clips to <run>/videos/train (needs a viewer)"
    )
    video.add_argument("--video_length", type=at_least(1), default=200, help="steps per recorded video")
    video.add_argument(
        "--video_interval", type=at_least(1), default=2000, help="vectorized steps between videos"
    )
    parser.add_argument(
        "overrides", nargs="*", metavar="key=value", help="config overrides, e.g. algo.lr=3e-4"
    )
    # key=value overrides may stand before, between or after the flags
    args = parser.parse_intermixed_args(argv)
    if args.algo is not None and args.algo not in ALGOS:
        parser.error(f"--algo {args.algo} is not available; valid: {', '.join(ALGOS)}")
    if args.checkpoint:
        if args.resume and args.resume != args.checkpoint:
            parser.error("give --resume or --checkpoint, not both")
        args.resume = args.checkpoint
    if not args.task and not args.resume:
        parser.error("give --task (a new run) or --resume (continue a run)")
    for flag, key in (
        ("seed", "seed"),
        ("device", "device"),
        ("num_envs", "env.num_envs"),
        ("total_steps", "runner.total_steps"),
        ("max_minutes", "runner.max_minutes"),
    ):
        if getattr(args, flag) is not None:
            args.overrides.append(f"{key}={getattr(args, flag)}")
    return args


def _raise_interrupt(signum, frame) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def save_interrupted(runner, why: str = "") -> int:
    """After a stop signal: a checkpoint of the current step, one line, exit status 130."""
    from meow.runners import CheckpointWriteError

    # A scheduler may signal again while the checkpoint is written: finish writing it.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        path = runner.save()
    except (CheckpointWriteError, FloatingPointError) as err:
        print(f"\nerror: interrupted, and {err}", file=sys.stderr)
        return 1
    print(f"\n[meow] interrupted at env step {runner.global_step:,}{why}; saved {path}")
    return 130


def check_run_dir(run_dir: Path, resuming: Path | None) -> None:
    """Raises a one-line ValueError unless ``--run_dir`` can take this run.

    A run never writes into a directory holding another run's checkpoints; ``resuming`` (the
    directory of the checkpoint given to --resume) may be continued in place.
    """
    from meow.utils.io import check_creatable_dir

    if run_dir.exists() and not run_dir.is_dir():
        raise ValueError(f"--run_dir {run_dir} is a file; valid: a directory")
    held = sorted(p.name for p in run_dir.glob("model_*")) if run_dir.is_dir() else []
    if held and (resuming is None or run_dir.resolve() != resuming.resolve()):
        raise ValueError(
            f"--run_dir {run_dir} holds another run's checkpoints ({held[-1]}); valid: a directory "
            "without checkpoints, or the directory of the run given to --resume (to continue it there)"
        )
    check_creatable_dir(run_dir, "--run_dir")


def read_run_checkpoint(path: str) -> dict:
    """The checkpoint --resume names (a file, or a run directory's newest): MEow's or SB3 SAC's."""
    from meow.runners.checkpoint import FORMAT, CheckpointError, find_checkpoint, safe_load

    found = find_checkpoint(path)
    ckpt = safe_load(found)
    saved = ckpt.get("format") if isinstance(ckpt, dict) else None
    if saved != FORMAT:
        from meow_baselines.sac import SAC_FORMAT  # not MEow's: only then is the baselines package read

        if saved != SAC_FORMAT:
            raise CheckpointError(f"{found} is not a MEow checkpoint (expected format '{FORMAT}')")
    ckpt["path"] = str(found)
    return ckpt


def new_run_dir(cfg) -> Path:
    """``<log_dir>/meow/<task id>/<timestamp>``, never an existing directory."""
    base = Path(cfg.runner.log_dir) / "meow" / cfg.env.id / datetime.now().strftime("%Y-%m-%d_%H-%M-%S")
    path, k = base, 1
    while path.exists():
        path, k = base.with_name(f"{base.name}_{k}"), k + 1
    return path


def train_rl_games(cfg, ckpt: dict | None) -> int:
    """Trains MEow as an rl-games algorithm: rl-games' Runner and observer, its log layout
    ``<log_dir>/rl_games/<task>/<timestamp>/{nn,summaries}``; the learner is the same."""
    from rl_games.common.algo_observer import DefaultAlgoObserver
    from rl_games.torch_runner import Runner

    from meow.envs import get_kind, make_env_from_config
    from meow.integrations.rl_games import register_algorithm, register_env, rl_games_params

    if cfg.env.eval_envs > 0:
        print("[meow] --runner rl_games does not run evaluation episodes; scripts/play.py does")
        cfg.env.eval_envs = 0
    observer = get_kind(cfg.env.kind).rl_games_observer() or DefaultAlgoObserver()
    register_env("meow", lambda **_: make_env_from_config(cfg, cfg.env.num_envs))
    train_dir = Path(cfg.runner.log_dir) / "rl_games" / cfg.env.id
    experiment = datetime.now().strftime("%Y-%m-%d_%H-%M-%S")
    runner = register_algorithm(Runner(observer))
    runner.load({"params": rl_games_params(cfg, train_dir, experiment)})
    print(f"[meow] rl-games runner | task {cfg.env.id} | logging to {train_dir / experiment}")
    args = {"train": True, "play": False, "checkpoint": ckpt["path"] if ckpt else None}
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        runner.run(args)
    except KeyboardInterrupt:
        print("\n[meow] interrupted; the latest rl-games checkpoint is in nn/")
        return 130
    except FloatingPointError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(f"[meow] checkpoint: {train_dir / experiment / 'nn' / (cfg.env.id + '.pth')}")
    return 0


def train_baseline(args, cfg, ckpt: dict | None, deadline: float | None) -> int:
    """--algo sac|ppo: the baseline from its own library (package ``meow_baselines``, imported only
    here: MEow's runs never load it). Its :class:`~meow_baselines.BaselineError` is a ValueError,
    reported as one; an interrupted SAC run saved a checkpoint and exits 130."""
    from meow_baselines import BaselineInterrupted
    from meow_baselines.registry import run_baseline

    run_dir = Path(args.run_dir) if args.run_dir else None
    try:
        out = run_baseline(
            args.algo, cfg, args.max_iterations, run_dir=run_dir, resume=ckpt, deadline=deadline
        )
    except BaselineInterrupted as stopped:
        print(f"\n[meow] {stopped}")
        return 130
    print(f"[meow] {args.algo} baseline on {cfg.env.id}: logs in {out}")
    return 0


def prepare(args, dist, started: float):
    """Everything before training starts; a bad input raises ConfigError, CheckpointError, ...

    Returns ``(cfg, env, eval_env, runner, run_dir)``, or the exit status when a baseline or the
    rl-games runner ran instead. ``dist``: this process's rank of a data-parallel run (or None).
    ``started``: ``time.monotonic()`` at the command's start, from which ``runner.max_minutes``
    counts.
    """
    from meow.config import ConfigError, config_from_checkpoint, env_steps, find_task, load_config
    from meow.envs import get_kind, make_env_from_config
    from meow.runners import CheckpointError, OffPolicyRunner
    from meow.runners.checkpoint import FORMAT, unfinished_saves
    from meow.runners.off_policy_runner import budget_deadline
    from meow.utils.io import check_creatable_dir

    ckpt = None
    if args.resume:
        ckpt = read_run_checkpoint(args.resume)
        saved_algo = "meow" if ckpt["format"] == FORMAT else "sac"  # the only two it reads
        if args.algo not in (None, saved_algo):
            raise CheckpointError(f"{ckpt['path']} is a {saved_algo} run, not --algo {args.algo}")
        args.algo = saved_algo
        stale = unfinished_saves(Path(ckpt["path"]).parent)
        if stale:
            mib = sum(p.stat().st_size for p in stale) / 2**20
            print(
                f"[meow] note: {Path(ckpt['path']).parent} holds {len(stale)} unfinished save(s) of an "
                f"interrupted run (.*.tmp, {mib:.1f} MiB); they are never read and can be deleted"
            )
        cfg = config_from_checkpoint(ckpt["config"], args.overrides)
        if args.task and find_task(args.task) != find_task(cfg.env.id):
            raise CheckpointError(f"{ckpt['path']} is a {cfg.env.id} run, not --task {args.task}")
    else:
        cfg = load_config(args.task, args.overrides)
    args.algo = args.algo or "meow"
    if args.run_dir is not None:
        check_run_dir(Path(args.run_dir), Path(ckpt["path"]).parent if ckpt else None)
    if args.max_iterations is not None:
        world = dist.world_size if dist else 1
        cfg.runner.total_steps = env_steps(args.max_iterations, cfg.env.num_envs, world)
    if dist is not None:
        dist.configure(cfg)  # cuda:<local_rank>, the rank's seed
    check_creatable_dir(cfg.runner.log_dir, "runner.log_dir")
    kind = get_kind(cfg.env.kind)
    if args.algo != "meow":
        if args.runner != "core" or args.video or dist is not None:
            raise ConfigError(f"--algo {args.algo} takes no --runner, --video or --distributed")
        return train_baseline(args, cfg, ckpt, budget_deadline(cfg.runner.max_minutes, started))
    if args.runner == "rl_games":
        if args.run_dir:
            raise ConfigError("--run_dir is not available with --runner rl_games; use the core runner")
        if args.video:
            raise ConfigError("--video is not available with --runner rl_games; use the core runner")
        if cfg.runner.max_minutes > 0:
            raise ConfigError(
                f"runner.max_minutes={cfg.runner.max_minutes:g} is not available with --runner rl_games "
                "(rl-games counts epochs); use the core runner, or leave it at 0"
            )
        return train_rl_games(cfg, ckpt)
    run_dir = Path(args.run_dir) if args.run_dir else new_run_dir(cfg)
    main_rank = dist is None or dist.is_main  # the only rank that writes
    video = None
    if args.video and main_rank:
        if not kind.training_video:
            raise ConfigError(
                f"--video records training of env kinds that support it, not {cfg.env.kind} tasks; "
                "use scripts/play.py --video"
            )
        video = {
            "dir": run_dir,
            "subdir": "train",
            "interval": args.video_interval,
            "length": args.video_length,
        }
    env = eval_env = None
    try:
        env = make_env_from_config(cfg, cfg.env.num_envs, video=video)
        if cfg.env.eval_envs > 0 and main_rank:
            eval_env = make_env_from_config(cfg, cfg.env.eval_envs)
        runner = OffPolicyRunner(cfg, env, eval_env, run_dir, dist=dist)
        runner.deadline = budget_deadline(cfg.runner.max_minutes, started)
        if ckpt is not None:
            runner.load(ckpt)
            print(f"[meow] resumed {ckpt['path']} at env step {runner.global_step:,}")
        if main_rank:
            kind.write_run_files(run_dir, cfg, env)
    except BaseException:
        for e in (env, eval_env):
            if e is not None:
                e.close()
        raise
    return cfg, env, eval_env, runner, run_dir


def main(argv: list[str] | None = None) -> int:
    started = time.monotonic()  # runner.max_minutes counts from here: start-up is part of the budget
    args = parse_args(argv)
    from meow.config import ConfigError
    from meow.distributed import DistributedError, init_from_env
    from meow.envs import EnvKindError
    from meow.runners import CheckpointError, CheckpointWriteError, StopRequested

    dist = None
    try:
        if args.distributed:
            if args.runner != "core" or args.algo not in (None, "meow"):
                given = f"--runner {args.runner}" if args.runner != "core" else f"--algo {args.algo}"
                raise ConfigError(
                    f"{given} does not support --distributed; use the core runner with MEow "
                    "(leave out --runner and --algo)"
                )
            dist = init_from_env()
        prepared = prepare(args, dist, started)
    except KeyboardInterrupt:  # a library's baseline run, stopped with it
        print("\n[meow] interrupted")
        return 130
    except (
        ConfigError,
        CheckpointError,
        EnvKindError,
        MemoryError,
        ValueError,
        ImportError,
        FileNotFoundError,
        RuntimeError,
    ) as err:
        print(f"error: {' '.join(str(err).split())}", file=sys.stderr)
        return 2
    if isinstance(prepared, int):
        return prepared
    cfg, env, eval_env, runner, run_dir = prepared

    import torch

    print(
        f"[meow] task {cfg.env.id} | device {cfg.device} | torch threads {torch.get_num_threads()} | "
        f"seed {cfg.seed} | {cfg.runner.total_steps:,} env steps | "
        f"update: capture {runner.alg.capture.mode}, {cfg.algo.matmul_precision} products"
    )
    print(f"[meow] logging to {run_dir}")
    if runner.alg.capture.mode == "compile" and cfg.algo.capture == "auto":
        print(
            "[meow] a long CPU run: the update and the action are compiled (torch.compile), which takes "
            "40-60 s at the first update; algo.capture=none trains without compiling"
        )

    # Ctrl-C, and the SIGTERM a cluster scheduler sends before it kills a job, save a checkpoint:
    # the runner stops at the start of its next iteration (an evaluation under way is finished
    # and logged, so the resumed run misses none; in a data-parallel run every rank at the same
    # iteration); a second signal, or one while the first update compiles (nothing of the learner
    # has changed yet), stops at once. One flag and one handler, on every rank.
    def request_stop(signum, frame) -> None:
        interrupt = runner.stop_requested or runner.interruptible
        runner.stop_requested = True
        if interrupt:
            raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    try:
        runner.learn()
    except StopRequested:
        return save_interrupted(runner)
    except KeyboardInterrupt:
        if dist is not None:  # the other ranks are not at this point: no collective checkpoint
            print(f"\n[meow] stopped at once at env step {runner.global_step:,}; no checkpoint of this step")
            return 130
        return save_interrupted(runner)
    except (FloatingPointError, CheckpointWriteError, DistributedError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    except Exception as err:
        # The terminal's Ctrl-C reaches the whole process group: torch.compile's compiler children
        # too, whose death then surfaces here as a compile error. The stop was asked for first.
        if not runner.stop_requested or dist is not None:
            raise
        return save_interrupted(runner, f" (while {type(err).__name__} ended a compile)")
    finally:
        env.close()
        if eval_env is not None:
            eval_env.close()
    if runner.budget_spent:
        print(
            f"[meow] wall-clock budget spent (runner.max_minutes={cfg.runner.max_minutes:g}): stopped at "
            f"env step {runner.global_step:,} of {cfg.runner.total_steps:,}"
        )
    histories = (("deterministic", runner.evaluations), ("stochastic", runner.stochastic_evaluations))
    for label, history in histories:
        if history:
            _, mean, std = history[-1][:3]
            step, best = max(((e[0], e[1]) for e in history), key=lambda e: e[1])
            print(
                f"[meow] final {label} evaluation: return {mean:.1f} ± {std:.1f} "
                f"over {cfg.env.eval_envs} episodes (best {best:.1f} at env step {step:,})"
            )
    if runner.stochastic_evaluations:
        last = runner.stochastic_evaluations[-1]
        print(
            f"[meow] value calibration: the flow's V(s0) {last.value_v0:.1f}, soft return earned "
            f"{last.soft_return:.1f} (V - soft return: {last.value_error:+.1f})"
        )
    print(f"[meow] checkpoint: {run_dir / f'model_{runner.global_step}.pt'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

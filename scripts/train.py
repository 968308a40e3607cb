"""Train MEow.

    python scripts/train.py --task Hopper-v5 --algo meow [key=value ...]
    python scripts/train.py --task MultiGoal runner.total_steps=4000
    python scripts/train.py --resume logs/meow/Hopper-v5/<timestamp> runner.total_steps=2000000
    ./isaaclab.sh -p scripts/train.py --task Isaac-Ant-v0 --algo meow --headless --num_envs 4096
    torchrun --nproc_per_node 4 scripts/train.py --task Isaac-Ant-v0 --distributed --num_envs 4096

Settings come from config/meow.yaml, then tasks/<task>.yaml, then the key=value overrides.
Isaac tasks also take Isaac Lab's overrides: physics=newton_mjwarp | physx, presets=...,
env.<Isaac Lab env cfg key>=value (e.g. env.episode_length_s=10); agent.<key>=value is the
same as <key>=value (e.g. agent.algo.lr=3e-4).
"""

from __future__ import annotations

import argparse
import signal
import sys
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "source"))

ALGOS = ("meow", "sac", "ppo")
RUNNERS = ("core", "rl_games")
ISAACLAB_KEYS = ("physics", "presets")
"""Top-level override keys that belong to Isaac Lab's config resolution, not to MEow's."""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--task", help="task id or alias, e.g. Hopper-v5 (see tasks/)")
    parser.add_argument(
        "--algo",
        default="meow",
        help="meow (default); baselines from their own libraries: sac (SB3 on Gymnasium tasks, "
        "rl-games on Isaac tasks), ppo (rsl_rl through Isaac Lab, Isaac tasks)",
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
    parser.add_argument("--seed", type=int, help="shorthand for seed=N")
    parser.add_argument("--device", help="shorthand for device=DEV (cpu, cuda, cuda:N)")
    parser.add_argument("--num_envs", type=int, help="shorthand for env.num_envs=N")
    parser.add_argument("--total_steps", type=int, help="shorthand for runner.total_steps=N")
    parser.add_argument(
        "--max_iterations",
        type=int,
        help="train for N vectorized steps (runner.total_steps = N x env.num_envs [x ranks])",
    )
    isaac = parser.add_argument_group("Isaac Lab tasks")
    isaac.add_argument(
        "--headless",
        action="store_true",
        help="run without a viewer (always the case for kit-less Newton; accepted for Isaac Lab habits)",
    )
    isaac.add_argument(
        "--video", action="store_true", help="record training clips to <run>/videos/train (needs a viewer)"
    )
    isaac.add_argument("--video_length", type=int, default=200, help="steps per recorded video")
    isaac.add_argument("--video_interval", type=int, default=2000, help="vectorized steps between videos")
    parser.add_argument(
        "overrides", nargs="*", metavar="key=value", help="config overrides, e.g. algo.lr=3e-4"
    )
    # key=value overrides may stand before, between or after the flags
    args = parser.parse_intermixed_args(argv)
    if args.algo not in ALGOS:
        parser.error(f"--algo {args.algo} is not available; valid: {', '.join(ALGOS)}")
    if args.checkpoint:
        if args.resume and args.resume != args.checkpoint:
            parser.error("give --resume or --checkpoint, not both")
        args.resume = args.checkpoint
    if not args.task and not args.resume:
        parser.error("give --task (a new run) or --resume (continue a run)")
    for name in ("max_iterations", "video_length", "video_interval"):
        value = getattr(args, name)
        if value is not None and value < 1:
            parser.error(f"--{name} {value} is invalid; valid: an integer >= 1")
    for flag, key in (
        ("seed", "seed"),
        ("device", "device"),
        ("num_envs", "env.num_envs"),
        ("total_steps", "runner.total_steps"),
    ):
        if getattr(args, flag) is not None:
            args.overrides.append(f"{key}={getattr(args, flag)}")
    args.overrides, args.isaaclab_overrides = split_overrides(args.overrides)
    return args


def split_overrides(overrides: list[str]) -> tuple[list[str], list[str]]:
    """Separates MEow's ``key=value`` overrides from those meant for Isaac Lab's env config.

    ``agent.<key>`` is MEow's ``<key>``; ``physics``, ``presets`` and ``env.<key>`` where ``<key>``
    is not one of MEow's env settings go to Isaac Lab.
    """
    from meow.config import EnvConfig

    ours, isaac = [], []
    env_keys = set(EnvConfig.__dataclass_fields__)
    for item in overrides:
        key = item.split("=", 1)[0].strip()
        if key.startswith("agent."):
            ours.append(item[len("agent.") :])
        elif key in ISAACLAB_KEYS or (
            key.startswith("env.") and "=" in item and key.split(".")[1] not in env_keys
        ):
            isaac.append(item)
        else:
            ours.append(item)
    return ours, isaac


def _raise_interrupt(signum, frame) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def new_run_dir(cfg) -> Path:
    """``<log_dir>/meow/<task id>/<timestamp>``, never an existing directory."""
    base = Path(cfg.runner.log_dir) / "meow" / cfg.env.id / datetime.now().strftime("%Y-%m-%d_%H-%M-%S")
    path, k = base, 1
    while path.exists():
        path, k = base.with_name(f"{base.name}_{k}"), k + 1
    return path


def apply_isaaclab_overrides(cfg, isaaclab_overrides: list[str]) -> None:
    """Adds Isaac Lab overrides (and the default physics preset) to ``cfg.env.isaaclab_overrides``."""
    from meow.config import ConfigError, validate

    if cfg.env.kind != "isaaclab":
        if isaaclab_overrides:
            raise ConfigError(
                f"override '{isaaclab_overrides[0]}' is for Isaac Lab tasks; {cfg.env.id} is a "
                f"{cfg.env.kind} task (its env settings: env.num_envs, env.eval_envs, env.kwargs.*)"
            )
        return
    from meow_isaac.env import with_default_physics

    cfg.env.isaaclab_overrides = with_default_physics([*cfg.env.isaaclab_overrides, *isaaclab_overrides])
    validate(cfg)


def write_params(run_dir: Path, cfg, env) -> None:
    """Isaac Lab's layout: ``params/env.yaml`` (the env config) and ``params/agent.yaml`` (MEow's)."""
    from isaaclab.utils.io import dump_yaml
    from omegaconf import OmegaConf

    (run_dir / "params").mkdir(parents=True, exist_ok=True)
    dump_yaml(str(run_dir / "params" / "env.yaml"), env.env_cfg)
    OmegaConf.save(cfg, run_dir / "params" / "agent.yaml", resolve=True)


def train_rl_games(cfg, ckpt: dict | None) -> int:
    """Trains MEow as an rl-games algorithm: rl-games' Runner and observer, its log layout
    ``<log_dir>/rl_games/<task>/<timestamp>/{nn,summaries}``; the learner is the same."""
    from rl_games.common.algo_observer import DefaultAlgoObserver
    from rl_games.torch_runner import Runner

    from meow.envs import make_env_from_config
    from meow.integrations.rl_games import register_algorithm, register_env, rl_games_params

    if cfg.env.eval_envs > 0:
        print("[meow] --runner rl_games does not run evaluation episodes; scripts/play.py does")
        cfg.env.eval_envs = 0
    observer = DefaultAlgoObserver()
    if cfg.env.kind == "isaaclab":
        from isaaclab_rl.rl_games import IsaacAlgoObserver

        observer = IsaacAlgoObserver()
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


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from meow.baselines import BaselineError
    from meow.config import ConfigError, config_from_checkpoint, find_task, load_config
    from meow.distributed import DistributedError, init_from_env
    from meow.envs import make_env_from_config
    from meow.runners import CheckpointError, OffPolicyRunner, read_checkpoint

    env = eval_env = dist = None
    try:
        if args.distributed:
            if args.runner != "core" or args.algo != "meow":
                given = f"--runner {args.runner}" if args.runner != "core" else f"--algo {args.algo}"
                raise ConfigError(
                    f"{given} does not support --distributed; use the core runner with MEow "
                    "(leave out --runner and --algo)"
                )
            dist = init_from_env()
        ckpt = None
        if args.resume:
            ckpt = read_checkpoint(args.resume)
            cfg = config_from_checkpoint(ckpt["config"], args.overrides)
            if args.task and find_task(args.task) != find_task(cfg.env.id):
                raise CheckpointError(f"{ckpt['path']} is a {cfg.env.id} run, not --task {args.task}")
        else:
            cfg = load_config(args.task, args.overrides)
        if args.max_iterations is not None:
            cfg.runner.total_steps = args.max_iterations * cfg.env.num_envs * (dist.world_size if dist else 1)
        if dist is not None:
            dist.configure(cfg)  # cuda:<local_rank>, the rank's seed
        apply_isaaclab_overrides(cfg, args.isaaclab_overrides)
        if args.algo != "meow":
            if args.runner != "core" or args.resume or args.video:
                raise ConfigError(f"--algo {args.algo} takes no --runner, --resume or --video")
            from meow.baselines import run_baseline

            out = run_baseline(args.algo, cfg, args.max_iterations)
            print(f"[meow] {args.algo} baseline on {cfg.env.id}: logs in {out}")
            return 0
        if args.runner == "rl_games":
            if args.video:
                raise ConfigError("--video is not available with --runner rl_games; use the core runner")
            return train_rl_games(cfg, ckpt)
        run_dir = new_run_dir(cfg)
        main_rank = dist is None or dist.is_main  # the only rank that writes
        video = None
        if args.video and main_rank:
            if cfg.env.kind != "isaaclab":
                raise ConfigError("--video records Isaac Lab training; other tasks: scripts/play.py --video")
            video = {
                "dir": run_dir,
                "subdir": "train",
                "interval": args.video_interval,
                "length": args.video_length,
            }
        env = make_env_from_config(cfg, cfg.env.num_envs, video=video)
        if cfg.env.eval_envs > 0 and main_rank:
            eval_env = make_env_from_config(cfg, cfg.env.eval_envs)
        runner = OffPolicyRunner(cfg, env, eval_env, run_dir, dist=dist)
        if ckpt is not None:
            runner.load(ckpt)
            print(f"[meow] resumed {ckpt['path']} at env step {runner.global_step:,}")
        if cfg.env.kind == "isaaclab" and main_rank:
            write_params(run_dir, cfg, env)
    except (
        ConfigError,
        CheckpointError,
        BaselineError,
        MemoryError,
        ValueError,
        ImportError,
        FileNotFoundError,
        RuntimeError,
    ) as err:
        for e in (env, eval_env):
            if e is not None:
                e.close()
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
    if dist is not None:
        dist.install_signal_handlers()  # ranks stop together, at the runner's next collective check
    try:
        runner.learn()
    except KeyboardInterrupt:
        # A scheduler may signal again while the checkpoint is written: finish writing it.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        path = runner.save()
        print(f"\n[meow] interrupted at env step {runner.global_step:,}; saved {path}")
        return 130
    except (FloatingPointError, DistributedError) as err:
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

"""Env-steps/s of MEow training on an Isaac Lab task next to Isaac Lab's own rsl_rl PPO, or
next to MEow run through rl-games (the adapter's cost).

    ./isaaclab.sh -p benchmarks/benchmark_isaac.py --task Isaac-Ant --num_envs 64 --device cpu
    ./isaaclab.sh -p benchmarks/benchmark_isaac.py --task Isaac-Ant --num_envs 4096 --device cuda:0
    ./isaaclab.sh -p benchmarks/benchmark_isaac.py --task Isaac-Ant --against rl_games

Both run on the same task, env count, device and machine, one after the other, in fresh
processes: MEow through scripts/train.py, PPO through Isaac Lab's own ``isaaclab train
--rl_library rsl_rl`` with the task's rsl_rl settings. Each library measures its own
training throughput (collection and updates, simulation included): MEow's ``charts/SPS``
after its warm-up, rsl_rl's ``Perf/total_fps``; the first measurements of each run are
dropped. Prints both rates and MEow/PPO; ``--repeats`` alternates the two to spread noise.
With ``--against rl_games`` the second contender is MEow itself, trained through Isaac Lab's
``isaaclab train --rl_library rl_games --agent rl_games_meow_cfg_entry_point`` (rl-games'
Runner, Isaac Lab's rl-games wrapper and observer, MEow's rl-games agent); the same
``charts/SPS`` is read from its ``summaries/``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from meow.utils.cli import ArgumentParser, at_least

ROOT = Path(__file__).resolve().parents[1]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", default="Isaac-Ant", help="an Isaac task id with a MEow task file")
    parser.add_argument("--num_envs", type=at_least(1), default=64)
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--meow_iterations",
        type=at_least(1),
        default=150,
        help="MEow vectorized steps measured after warm-up",
    )
    parser.add_argument("--ppo_iterations", type=at_least(1), default=8, help="rsl_rl PPO iterations")
    parser.add_argument("--repeats", type=at_least(1), default=1, help="alternating rounds of both")
    parser.add_argument(
        "--against", choices=("ppo", "rl_games"), default="ppo", help="rsl_rl PPO, or MEow through rl-games"
    )
    parser.add_argument("--out", help="also write the results as JSON to this file")
    parser.add_argument("overrides", nargs="*", help="extra MEow settings, key=value")
    return parser.parse_args(argv)


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


def _meow_plan(args: argparse.Namespace) -> tuple[int, int, int]:
    """(warm-up env steps, log interval, total env steps) of a MEow benchmark run."""
    from meow.config import load_config

    cfg = load_config(args.task, [f"env.num_envs={args.num_envs}", *args.overrides])
    log_every = cfg.env.num_envs * 10
    total = cfg.runner.warmup_steps + (args.meow_iterations + 10) * args.num_envs
    return cfg.runner.warmup_steps, log_every, total


def _steady_sps(log_dir: Path, warmup: int, log_every: int) -> float:
    # windows that start after warm-up plus one window of compilation/allocation warm-up
    rates = [v for step, v in _scalars(log_dir, "charts/SPS") if step - log_every > warmup + log_every]
    if not rates:
        raise RuntimeError("MEow logged no throughput after its warm-up; raise --meow_iterations")
    return statistics.median(rates)


def run_meow(args: argparse.Namespace, work: Path) -> float:
    """MEow's steady-state env-steps/s after warm-up, core runner (median of its logged windows)."""
    warmup, log_every, total = _meow_plan(args)
    cmd = [sys.executable, str(ROOT / "scripts" / "train.py"), "--task", args.task, "--device", args.device]
    cmd += ["--num_envs", str(args.num_envs), "--total_steps", str(total), *args.overrides]
    cmd += [f"runner.log_interval={log_every}", "runner.progress=false", "runner.save_buffer=false"]
    cmd += [f"runner.checkpoint_interval={total}", "runner.log_dir=logs"]
    _run(cmd, work, "MEow training")
    return _steady_sps(work / "logs", warmup, log_every)


def _isaaclab_cli() -> str:
    from meow_baselines import BaselineError
    from meow_isaac.baselines import isaaclab_cli

    try:
        return isaaclab_cli()
    except BaselineError as err:
        raise RuntimeError(str(err)) from None


def run_meow_rl_games(args: argparse.Namespace, work: Path) -> float:
    """The same MEow run through Isaac Lab's rl-games CLI and MEow's rl-games agent."""
    from meow.config import load_config
    from meow_isaac.env import with_default_physics

    warmup, log_every, total = _meow_plan(args)
    task = load_config(args.task).env.id
    meow_settings = [f"runner.log_interval={log_every}", "runner.save_buffer=false", *args.overrides]
    meow = ",".join(f'"{o}"' for o in meow_settings)
    cmd = [_isaaclab_cli(), "train", "--rl_library", "rl_games", "--task", task]
    cmd += ["--agent", "rl_games_meow_cfg_entry_point", "--num_envs", str(args.num_envs)]
    cmd += ["--device", args.device, "--max_iterations", str(total // args.num_envs)]
    cmd += [*with_default_physics([]), "env.compute_final_obs=true"]
    cmd += [f"agent.params.config.device={args.device}", f"agent.params.config.meow_overrides=[{meow}]"]
    cmd += [f"agent.params.config.save_frequency={total // args.num_envs}"]
    _run(cmd, work, "MEow training through rl-games")
    return _steady_sps(work / "logs" / "rl_games", warmup, log_every)


def run_ppo(args: argparse.Namespace, work: Path) -> float:
    """rsl_rl PPO's env-steps/s through Isaac Lab's own training CLI (median over iterations)."""
    launcher = _isaaclab_cli()
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
    from meow.config import ConfigError
    from meow_isaac.assets import AssetError

    other_name, run_other = {
        "ppo": ("rsl_rl PPO", run_ppo),
        "rl_games": ("MEow via rl-games", run_meow_rl_games),
    }[args.against]
    results = []
    try:
        # Every setting is checked here, before the first of the training processes starts.
        from meow.config import check_device, load_config

        check_device(args.device)
        cfg = load_config(args.task, [*args.overrides, f"env.num_envs={args.num_envs}"])
        if cfg.env.kind != "isaaclab":
            raise ConfigError(f"--task {args.task} is invalid; valid: an Isaac task (e.g. Isaac-Ant)")
        if args.out is not None:
            from meow.utils.io import check_creatable_dir

            check_creatable_dir(Path(args.out).parent, "--out's folder")
        # Offline (no ISAACSIM_ASSET_ROOT, NVIDIA's server out of reach) the local asset root is
        # chosen and built here, before any contender starts: Isaac Lab's own CLI, which runs PPO
        # and the rl-games contender, does not choose it itself, and inherits it from this process.
        from meow_isaac.env import offline_first_env_cfg

        offline_first_env_cfg(cfg.env.id, args.num_envs, args.device, cfg.env.sim_overrides, cfg.seed)
        for r in range(args.repeats):
            with tempfile.TemporaryDirectory() as a, tempfile.TemporaryDirectory() as b:
                meow = run_meow(args, Path(a))
                other = run_other(args, Path(b))
            results.append({"meow_sps": meow, "other": other_name, "other_sps": other, "ratio": meow / other})
            print(
                f"[bench] round {r + 1}/{args.repeats}: MEow (core runner) {meow:,.0f} env-steps/s, "
                f"{other_name} {other:,.0f} env-steps/s, ratio {meow / other:.2f}",
                flush=True,
            )
    except (ConfigError, AssetError, ValueError, RuntimeError) as err:
        print(f"error: {' '.join(str(err).split())}", file=sys.stderr)
        return 2
    ratio = statistics.median(r["ratio"] for r in results)
    print(
        f"[bench] {args.task}, {args.num_envs} envs on {args.device}: median MEow (core) / {other_name} "
        f"env-steps/s = {ratio:.2f} over {len(results)} round(s)"
    )
    if args.out:
        report = {"args": vars(args), "rounds": results, "ratio": ratio}
        Path(args.out).write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

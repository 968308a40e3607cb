"""The multi-goal picture: MEow's samples and exact soft V next to Stable-Baselines3 SAC's samples.

    python tools/multigoal_picture.py                       # published budget: 4,000 env steps, seed 1
    python tools/multigoal_picture.py --steps 12000 --seed 2 --out /tmp/mg.png --json /tmp/mg.json

Trains MEow on the MultiGoal task with its published settings (tasks/multigoal.yaml, through the
OffPolicyRunner) and SB3 SAC on the same point mass (through the Gymnasium view
meow.envs.multigoal_gym, which runs the same dynamics, reward and horizon), one torch thread
each. SAC keeps SB3's defaults except for what must match the MEow run: the number of env
steps, the random warm-up (learning_starts = runner.warmup_steps instead of 100) and the discount
(gamma = algo.gamma, 0.9, instead of 0.99); its batch, 256, is SB3's default already.

The two trainings run side by side, SAC in a second process, so the whole script takes about as
long as one of them.

Then samples trajectories from the exact origin with each stochastic policy (100 steps each by
default, as the multi-goal learning test; the JSON also counts those that reached a goal within
the training horizon, 30 steps) and draws one PNG with two panels (MEow | SAC): the four goals,
the trajectories, and on MEow's panel the contours of its exact soft V (the smaller of the two
shift heads' values) over [-7, 7]^2. Writes the goal counts (per method: trajectories ending at
each goal, and at none) as JSON and prints them.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from meow.utils.cli import ArgumentParser, at_least

ROOT = Path(__file__).resolve().parents[1]
NONE = "none"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--steps", type=at_least(1), default=None, help="env steps per method (default: the task's 4,000)"
    )
    parser.add_argument("--seed", type=at_least(0), default=1, help="seed of both training runs (default 1)")
    parser.add_argument(
        "--trajectories", type=at_least(1), default=100, help="trajectories per method (default 100)"
    )
    parser.add_argument(
        "--horizon", type=at_least(1), default=100, help="steps per sampled trajectory (default 100)"
    )
    parser.add_argument(
        "--out", type=Path, default=ROOT / "docs" / "figures" / "multigoal.png", help="PNG to write"
    )
    parser.add_argument(
        "--json",
        type=Path,
        default=None,
        help="goal counts to write (default: docs/results/multigoal_<UTC date>.json)",
    )
    # internal: the second process that trains SAC and writes its rollouts here
    parser.add_argument("--sac-to", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.json is None:
        args.json = ROOT / "docs" / "results" / f"multigoal_{datetime.now(UTC):%Y-%m-%d}.json"
    for flag, path in (("--out", args.out), ("--json", args.json)):
        problem = unwritable(path)
        if problem:
            parser.error(
                f"argument {flag}: {path} is not writable ({problem}); "
                "valid: a file path in a writable directory"
            )
    if args.out.suffix.lower() != ".png":
        parser.error(f"argument --out: {args.out} does not end in .png; valid: a .png file path")
    return args


def unwritable(path: Path) -> str | None:
    """Why ``path`` cannot be written (None when it can): checked before any training runs.

    Probes with a temporary file (removed at once) in the nearest existing directory, so that
    the answer holds for any user, root included, and on read-only file systems.
    """
    import tempfile

    if path.exists() and not path.is_file():
        return "it exists and is not a file"
    parent = path.parent
    while not parent.exists():  # missing directories are created below the nearest existing one
        parent = parent.parent
    if not parent.is_dir():
        return f"{parent} is not a directory"
    try:
        with tempfile.NamedTemporaryFile(dir=parent, prefix=".probe-"):
            pass
    except OSError as err:
        return err.strerror or type(err).__name__
    if path.exists() and not os.access(path, os.W_OK):
        return "permission denied"
    return None


# ------------------------------------------------------------------------- training
def meow_config(steps: int | None, seed: int):
    """The MultiGoal task's published settings, one torch thread, no evaluation or logging."""
    from meow.config import load_config

    overrides = [f"seed={seed}", "torch_threads=1", "runner.progress=false", "env.eval_envs=0"]
    if steps is not None:
        overrides.append(f"runner.total_steps={steps}")
    return load_config("MultiGoal", overrides)


def train_meow(cfg):
    """Trains MEow with the real OffPolicyRunner on ``cfg``; returns the runner."""
    from meow.envs import make_env_from_config
    from meow.runners import OffPolicyRunner

    runner = OffPolicyRunner(cfg, make_env_from_config(cfg, cfg.env.num_envs))
    runner.learn()
    return runner


def sac_settings(cfg) -> dict[str, Any]:
    """SB3 SAC's keyword arguments for the MEow run ``cfg``; every other setting is SB3's default."""
    return {
        "learning_starts": int(cfg.runner.warmup_steps),  # SB3: 100; the same random warm-up as MEow
        "gamma": float(cfg.algo.gamma),  # SB3: 0.99; the task's discount
        "batch_size": int(cfg.algo.batch_size),  # 256, SB3's default too
        "seed": int(cfg.seed),
    }


def train_sac(cfg):
    """Trains SB3 SAC on the Gymnasium view of the same point mass for ``runner.total_steps``."""
    import torch
    from stable_baselines3 import SAC

    from meow.envs.multigoal_gym import MultiGoalGymEnv

    torch.set_num_threads(1)
    env = MultiGoalGymEnv(**cfg.env.kwargs)
    model = SAC("MlpPolicy", env, device="cpu", verbose=0, **sac_settings(cfg))
    model.learn(total_timesteps=int(cfg.runner.total_steps))
    return model


def sac_act(model):
    """SAC's stochastic policy as a map from observation tensors ``(N, 2)`` to action tensors."""
    import torch

    def act(obs):
        actions, _ = model.predict(obs.cpu().numpy(), deterministic=False)
        return torch.as_tensor(actions, dtype=torch.float32)

    return act


def start_sac(args: argparse.Namespace, to: Path) -> tuple[Any, Path]:
    """Starts this script as a second process that trains SAC and writes its rollouts to ``to``."""
    import subprocess

    argv = [sys.executable, str(Path(__file__).resolve()), "--seed", str(args.seed)]
    argv += ["--trajectories", str(args.trajectories), "--horizon", str(args.horizon)]
    argv += ["--out", str(args.out), "--json", str(args.json), "--sac-to", str(to)]
    if args.steps is not None:
        argv += ["--steps", str(args.steps)]
    log = to.with_suffix(".log")
    with log.open("w") as stream:
        proc = subprocess.Popen(
            argv, stdout=stream, stderr=subprocess.STDOUT, env={**os.environ, "OMP_NUM_THREADS": "1"}
        )
    return proc, log


def finish_sac(proc, log: Path, to: Path) -> dict[str, Any]:
    """Waits for :func:`start_sac`'s process; returns its paths, reached goals and training time."""
    import torch

    if proc.wait() != 0:
        lines = [line for line in log.read_text().splitlines() if line.strip()]
        raise RuntimeError(
            f"the SAC process failed (exit {proc.returncode}): {lines[-1] if lines else 'no output'}"
        )
    return torch.load(to)


def sac_process(args: argparse.Namespace) -> None:
    """The second process: trains SAC, samples its rollouts and saves them to ``args.sac_to``."""
    import torch

    cfg = meow_config(args.steps, args.seed)
    t0 = time.perf_counter()
    model = train_sac(cfg)
    seconds = time.perf_counter() - t0
    paths, reached = rollouts(sac_act(model), args.trajectories, args.horizon, args.seed)
    torch.save({"paths": paths, "reached": reached, "seconds": seconds}, args.sac_to)


# ------------------------------------------------------------------------ measuring
def rollouts(act, trajectories: int, horizon: int, seed: int):
    """Paths ``(horizon + 1, N, 2)`` and reached goals ``(N,)`` of ``act`` from the exact origin."""
    import torch

    from meow.envs.multigoal import origin_rollouts

    torch.manual_seed(seed)  # the policies draw from torch's global generator
    return origin_rollouts(act, trajectories, horizon, seed)


def coverage(paths, reached, within: int | None = None) -> dict[str, int]:
    """Trajectories per goal (``"(5, 0)"`` ...) and ``"none"``, from :func:`rollouts`.

    ``within``: count a goal only when it was reached within that many steps.
    """
    import torch

    from meow.envs.multigoal import MultiGoalEnv

    none = len(MultiGoalEnv.GOALS)
    if within is not None:
        # a trajectory stays where it reached its goal: its last move is its reach step
        moved = (paths[1:] != paths[:-1]).any(-1)  # (T, N)
        steps = torch.arange(1, paths.shape[0]).unsqueeze(-1)
        last_move = (moved * steps).max(0).values
        reached = torch.where(last_move <= within, reached, torch.full_like(reached, none))
    counts = torch.bincount(reached, minlength=none + 1).tolist()
    names = [f"({x:g}, {y:g})" for x, y in MultiGoalEnv.GOALS] + [NONE]
    return dict(zip(names, counts, strict=True))


def soft_values(runner, limit: float = 7.0, points: int = 141):
    """MEow's exact soft V on a ``points x points`` grid over ``[-limit, limit]^2``.

    The smaller of the shift heads' values (the clipped value the targets use). Returns the
    grid's x and y coordinates and V, each ``(points, points)``, as numpy arrays.
    """
    import torch

    axis = torch.linspace(-limit, limit, points)
    y, x = torch.meshgrid(axis, axis, indexing="ij")
    grid = torch.stack((x.reshape(-1), y.reshape(-1)), -1)
    alg = runner.alg
    alg.policy.eval()
    with torch.no_grad():
        v = alg.policy.values(alg.normalizer(grid)).min(0).values
    return x.numpy(), y.numpy(), v.reshape(points, points).numpy()


# ------------------------------------------------------------------------- drawing
def draw(path: Path, panels: list[dict[str, Any]], caption: str = "", limit: float = 7.0) -> None:
    """One PNG, one panel per method: goals, trajectories and, where given, soft-V contours.

    Each panel: ``title``, ``paths`` ``(T + 1, N, 2)``, ``reached`` ``(N,)``, optional ``values``
    (``x, y, v`` from :func:`soft_values`).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from meow.envs.multigoal import MultiGoalEnv

    goals = MultiGoalEnv.GOALS
    colors = ["tab:red", "tab:blue", "tab:green", "tab:orange", "0.45"]  # per goal, then none
    fig, axes = plt.subplots(1, len(panels), figsize=(5.2 * len(panels), 4.8), squeeze=False)
    for ax, panel in zip(axes[0], panels, strict=True):
        if panel.get("values") is not None:
            x, y, v = panel["values"]
            filled = ax.contourf(x, y, v, levels=20, cmap="Greys", alpha=0.55)
            ax.contour(x, y, v, levels=filled.levels[::2], colors="0.3", linewidths=0.4)
            fig.colorbar(filled, ax=ax, fraction=0.046, pad=0.04, label="soft V (min over shift heads)")
        paths, reached = panel["paths"].numpy(), panel["reached"].tolist()
        for i, end in enumerate(reached):
            ax.plot(paths[:, i, 0], paths[:, i, 1], color=colors[end], lw=0.6, alpha=0.6)
        for k, (gx, gy) in enumerate(goals):
            ax.add_patch(plt.Circle((gx, gy), 1.0, fill=False, color=colors[k], lw=1.5))
            ax.plot(gx, gy, marker="*", ms=11, color=colors[k], mec="k", mew=0.5)
        ax.plot(0, 0, marker="o", ms=4, color="k")
        ax.set_xlim(-limit, limit)
        ax.set_ylim(-limit, limit)
        ax.set_aspect("equal")
        ax.set_title(panel["title"], fontsize=10)
    if caption:
        fig.suptitle(caption, fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)
    plt.close(fig)


# ---------------------------------------------------------------------------- main
def versions() -> dict[str, str]:
    """Versions of what produced the numbers."""
    import gymnasium
    import matplotlib
    import numpy
    import stable_baselines3
    import torch

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "stable_baselines3": stable_baselines3.__version__,
        "gymnasium": gymnasium.__version__,
        "numpy": numpy.__version__,
        "matplotlib": matplotlib.__version__,
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Trains both methods, draws the picture and writes the JSON; returns what it wrote."""
    import tempfile

    cfg = meow_config(args.steps, args.seed)
    steps, horizon = int(cfg.runner.total_steps), args.horizon
    train_horizon = int(cfg.env.kwargs.get("horizon", 30))
    with tempfile.TemporaryDirectory() as tmp:
        to = Path(tmp) / "sac.pt"
        proc, log = start_sac(args, to)
        try:
            t0 = time.perf_counter()
            runner = train_meow(cfg)
            meow_s = time.perf_counter() - t0
            meow_paths, meow_reached = rollouts(runner.alg.act, args.trajectories, horizon, args.seed)
        except BaseException:
            proc.kill()
            proc.wait()
            raise
        sac = finish_sac(proc, log, to)

    def goals(paths, reached) -> dict[str, Any]:
        counts = {"goals": coverage(paths, reached)}
        if train_horizon < horizon:
            counts[f"goals_within_{train_horizon}_steps"] = coverage(paths, reached, within=train_horizon)
        return counts

    result = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip() + f", {os.cpu_count()} cores",
        "versions": versions(),
        "env_steps": steps,
        "warmup_steps": int(cfg.runner.warmup_steps),
        "seed": args.seed,
        "torch_threads": 1,
        "trajectories": args.trajectories,
        "horizon": horizon,
        "training_horizon": train_horizon,
        "meow": {**goals(meow_paths, meow_reached), "train_seconds": round(meow_s, 1)},
        "sac": {
            **goals(sac["paths"], sac["reached"]),
            "train_seconds": round(sac["seconds"], 1),
            "settings_changed_from_sb3_defaults": {
                k: v for k, v in sac_settings(cfg).items() if k in ("learning_starts", "gamma")
            },
        },
        "figure": _shown(args.out),
    }
    draw(
        args.out,
        [
            {
                "title": f"MEow, {steps:,} env steps: {_summary(result['meow']['goals'])}",
                "paths": meow_paths,
                "reached": meow_reached,
                "values": soft_values(runner),
            },
            {
                "title": f"SB3 SAC, {steps:,} env steps: {_summary(result['sac']['goals'])}",
                "paths": sac["paths"],
                "reached": sac["reached"],
            },
        ],
        caption=f"{args.trajectories} stochastic trajectories from the origin, up to {horizon} steps each "
        f"(seed {args.seed}); colour: the goal reached, grey: none; circles: goal regions",
    )
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2) + "\n")
    return result


def _shown(path: Path) -> str:
    """``path`` relative to the repository when inside it (results files name no home directories)."""
    try:
        return str(path.resolve().relative_to(ROOT))
    except ValueError:
        return str(path)


def _summary(goals: dict[str, int]) -> str:
    reached = sum(1 for k, n in goals.items() if k != NONE and n > 0)
    return f"{reached} goal{'s' if reached != 1 else ''} reached"


def main(argv: list[str] | None = None) -> dict[str, Any] | None:
    args = parse_args(argv)
    if args.sac_to is not None:
        sac_process(args)
        return None
    try:
        result = run(args)
    except OSError as err:
        print(f"error: cannot write the results: {' '.join(str(err).split())}", file=sys.stderr)
        raise SystemExit(2) from None
    for method in ("meow", "sac"):
        print(f"{method}: {json.dumps(result[method]['goals'])}")
    print(f"wrote {args.out} and {args.json}")
    return result


if __name__ == "__main__":
    main()

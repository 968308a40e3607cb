"""Where a trained MEow critic's soft values come from, on the run's own replay data.

    python tools/probe_critic.py logs/experiments/mujoco/Walker2d-v5/meow/seed1
    python tools/probe_critic.py RUN_A/model_100000.pt RUN_B --samples 8192 --json probe.json

MEow's soft Q of each shift head is ``alpha * (-|u|^2/2 + energy + b_k(s))`` and its soft V is
``alpha * (d/2 log 2pi - sum log sigma(s) + b_k(s))`` (docs/ALGORITHM.md): when the critic
overestimates (the value calibration's ``eval/value_error``), these terms say which part grew.
For each checkpoint (a file, or a run directory's newest) the script loads the learner and the
replay buffer saved beside it (runner.save_buffer), draws --samples transitions, and prints, in
eval mode (no dropout): the prior's log-sigma (mean, share within 0.1 of either bound); the
share of replay action components within 1e-3 of the action bounds; the Gaussian kernel
``-|u|^2/2`` and the non-linear layers' log-determinant (energy) of the replay actions; the
shift heads ``alpha * b_k(s)``; ``min_k Q_k`` of replay actions and of actions the policy samples,
``min_k V_k`` and the median ``log pi`` of the policy's own samples. The environment is built
(its sizes are checked against the checkpoint) but not stepped.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from meow.utils.cli import ArgumentParser, at_least

ROWS = (
    ("env_step", "env step", "{:,.0f}"),
    ("log_sigma", "prior log-sigma, mean", "{:.2f}"),
    ("log_sigma_at_min", "  share at its lower bound", "{:.2f}"),
    ("log_sigma_at_max", "  share at its upper bound", "{:.2f}"),
    ("saturated", "replay actions within 1e-3 of +-1", "{:.3f}"),
    ("kernel_median", "replay -|u|^2/2, median", "{:.1f}"),
    ("kernel_q10", "replay -|u|^2/2, 10% quantile", "{:.1f}"),
    ("energy_median", "replay energy log-det, median", "{:.1f}"),
    ("alpha_shift", "alpha * b_k(s), mean", "{:.1f}"),
    ("q_replay", "min_k Q_k(s, a replay), mean", "{:.1f}"),
    ("q_policy", "min_k Q_k(s, a ~ pi), mean", "{:.1f}"),
    ("v", "min_k V_k(s), mean", "{:.1f}"),
    ("alpha_log_pi_replay", "alpha * log pi(a replay), mean", "{:.1f}"),
    ("log_pi_policy", "log pi(a ~ pi), median", "{:.1f}"),
    ("reward", "replay reward, mean", "{:.2f}"),
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoints", nargs="+", metavar="CHECKPOINT", help="checkpoint or run directory")
    parser.add_argument("--samples", type=at_least(1), default=4096, help="replay transitions to draw")
    parser.add_argument("--seed", type=at_least(0), default=0, help="seed of the draw and of pi's samples")
    parser.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    return parser.parse_args(argv)


def probe(path: str, samples: int, seed: int) -> dict[str, float]:
    """The figures of one checkpoint (see the module docstring)."""
    import torch

    from meow.config import config_from_checkpoint, evaluation_overrides
    from meow.envs import make_env_from_config
    from meow.runners import CheckpointError, OffPolicyRunner, read_checkpoint

    ckpt = read_checkpoint(path)
    overrides = ["device=cpu", *evaluation_overrides(ckpt["config"], "cpu"), "env.eval_envs=0"]
    overrides += ["algo.capture=none", "runner.progress=false"]
    cfg = config_from_checkpoint(ckpt["config"], overrides)
    if not cfg.runner.save_buffer:
        raise CheckpointError(f"{ckpt['path']} was written with runner.save_buffer=false: no replay data")
    env = make_env_from_config(cfg, cfg.env.num_envs)
    try:
        runner = OffPolicyRunner(cfg, env, eval_env=None, log_dir=None)
        runner.load(ckpt)
        if len(runner.buffer) == 0:
            step = ckpt["global_step"]
            raise CheckpointError(f"no replay buffer of env step {step:,} beside {ckpt['path']}")
        torch.manual_seed(seed)
        batch = runner.buffer.sample(samples, generator=torch.Generator(device="cpu").manual_seed(seed))
        alg, policy = runner.alg, runner.alg.policy
        policy.eval()
        lo, hi = cfg.algo.log_sigma_min, cfg.algo.log_sigma_max
        with torch.no_grad():
            obs = alg.normalizer(batch.obs)
            log_sigma = policy.scaling.log_sigma(obs)
            u, energy, _ = policy._to_latent(batch.actions, obs)
            kernel = policy._gaussian_log_kernel(u)
            action, log_pi = policy.sample(obs)
            alpha = float(policy.alpha)
            figures = {
                "env_step": float(ckpt["global_step"]),
                "log_sigma": log_sigma.mean().item(),
                "log_sigma_at_min": (log_sigma < lo + 0.1).float().mean().item(),
                "log_sigma_at_max": (log_sigma > hi - 0.1).float().mean().item(),
                "saturated": (batch.actions.abs() > 1.0 - 1e-3).float().mean().item(),
                "kernel_median": kernel.median().item(),
                "kernel_q10": kernel.quantile(0.1).item(),
                "energy_median": energy.median().item(),
                "alpha_shift": alpha * policy.shift_values(obs).mean().item(),
                "q_replay": policy.q_values(obs, batch.actions).min(0).values.mean().item(),
                "q_policy": policy.q_values(obs, action).min(0).values.mean().item(),
                "v": policy.values(obs).min(0).values.mean().item(),
                "alpha_log_pi_replay": alpha * policy.log_prob(obs, batch.actions).mean().item(),
                "log_pi_policy": log_pi.median().item(),
                "reward": batch.rewards.mean().item(),
            }
        return {"checkpoint": ckpt["path"], "task": cfg.env.id, "alpha": alpha, **figures}
    finally:
        env.close()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from meow.config import ConfigError
    from meow.envs import EnvKindError
    from meow.runners import CheckpointError

    results = []
    try:
        for path in args.checkpoints:
            results.append(probe(path, args.samples, args.seed))
    except (ConfigError, CheckpointError, EnvKindError, ValueError, FileNotFoundError) as err:
        print(f"error: {' '.join(str(err).split())}", file=sys.stderr)
        return 2
    for i, res in enumerate(results, 1):
        print(f"[{i}] {res['checkpoint']} ({res['task']}, alpha {res['alpha']})")
    width = max(len(label) for _, label, _ in ROWS)
    print(f"{'':<{width}}" + "".join(f"{f'[{i}]':>14}" for i in range(1, len(results) + 1)))
    for key, label, fmt in ROWS:
        print(f"{label:<{width}}" + "".join(f"{fmt.format(res[key]):>14}" for res in results))
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2) + "\n")
        print(f"[probe] wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

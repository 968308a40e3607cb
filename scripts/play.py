"""Evaluate a trained MEow policy.

    python scripts/play.py logs/meow/Hopper-v5/<timestamp>            # latest checkpoint of a run
    python scripts/play.py logs/meow/Hopper-v5/<timestamp>/model_100000.pt --episodes 20
    python scripts/play.py <run> --video      # also record the first episode to <run>/videos/
    python scripts/play.py <run> --export     # also write <run>/exported/policy.pt and policy.onnx
    python scripts/play.py <run> --eval_mode stochastic --latent_scale 0.5   # the sampled policy's core
    ./isaaclab.sh -p scripts/play.py logs/meow/Isaac-Ant/<timestamp> --episodes 64 --export

Reports the mean and standard deviation of the return, one episode per evaluation environment,
of the deterministic action (the flow's image of the latent z = 0), of sampled actions (how the
paper measured its returns), or of both (--eval_mode, default both). With sampled actions it also
reports the value calibration: the flow's exact soft value V(s0) at the start states against the
discounted soft return the episodes earned (docs/ALGORITHM.md).

--latent_scale s < 1 is a diagnostic: sampled actions draw the flow's latent from N(0, s^2 I),
a policy narrowed around its mode (s = 0: the deterministic action). Comparing s = 1 with s = 0.5
tells whether the sampled policy loses its return in its tails or in its core.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from meow.utils.cli import ArgumentParser, at_least, scale_in


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint", help="checkpoint file (model_<step>.pt) or run directory")
    parser.add_argument("--episodes", type=at_least(1), default=10, help="evaluation episodes (one env each)")
    parser.add_argument("--seed", type=at_least(0), default=0, help="seed of the evaluation episodes")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    parser.add_argument(
        "--eval_mode",
        choices=("deterministic", "stochastic", "both"),
        help="evaluate the deterministic action, sampled actions, or both (default both; core runner)",
    )
    parser.add_argument(
        "--latent_scale",
        type=scale_in(0.0, 1.0),
        default=1.0,
        help="sampled actions draw the flow's latent at this scale (default 1: the policy; a diagnostic)",
    )
    parser.add_argument(
        "--video", action="store_true", help="record the first episode as MP4 (needs imageio-ffmpeg)"
    )
    parser.add_argument(
        "--export", action="store_true", help="export the deterministic policy to TorchScript and ONNX"
    )
    parser.add_argument(
        "--runner",
        default="core",
        choices=("core", "rl_games"),
        help="core (default) or rl_games: play through rl-games' player (MEow's rl-games algorithm)",
    )
    parser.add_argument(
        "--headless", action="store_true", help="accepted for Isaac Lab habits; play is always headless"
    )
    return parser.parse_args(argv)


def record_video(
    env_kind: str, env_id: str, kwargs: dict, policy, path: Path, max_steps: int = 10_000
) -> Path:
    """Runs one deterministic episode with ``rgb_array`` rendering and writes it to ``path``."""
    import torch

    from meow.envs import make_env

    try:
        import imageio.v2 as imageio
    except ImportError:
        raise RuntimeError(
            "--video needs imageio and imageio-ffmpeg: pip install imageio imageio-ffmpeg"
        ) from None
    if env_kind != "gymnasium":
        raise RuntimeError(f"--video supports Gymnasium tasks only, not env.kind={env_kind}")
    env = make_env(env_kind, env_id, 1, "cpu", kwargs, render_mode="rgb_array")
    frames = []
    obs = env.reset(seed=0)
    with torch.no_grad():
        for _ in range(max_steps):
            frames.append(env.render())
            result = env.step(policy(obs))
            obs = result.obs
            if bool(result.terminated[0] | result.truncated[0]):
                break
    env.close()
    path.parent.mkdir(parents=True, exist_ok=True)
    imageio.mimsave(path, frames, fps=int(env.env.metadata.get("render_fps", 30)))
    return path


def play_rl_games(cfg, checkpoint: str, episodes: int) -> int:
    """Runs ``episodes`` deterministic episodes through rl-games' player for MEow."""
    import tempfile

    from rl_games.torch_runner import Runner

    from meow.envs import make_env_from_config
    from meow.integrations.rl_games import register_algorithm, register_env, rl_games_params

    cfg.env.eval_envs = 0
    register_env("meow", lambda **_: make_env_from_config(cfg, episodes))
    with tempfile.TemporaryDirectory() as scratch:  # rl-games wants a train_dir even to play
        params = rl_games_params(cfg, scratch, "play")
        params["config"]["num_actors"] = episodes
        params["config"]["player"].update(games_num=episodes, print_stats=True)
        runner = register_algorithm(Runner())
        runner.load({"params": params})
        runner.run({"train": False, "play": True, "checkpoint": checkpoint})
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from meow.config import ConfigError, check_device, config_from_checkpoint, evaluation_overrides
    from meow.envs import EnvKindError, get_kind, make_env_from_config
    from meow.export import DeterministicPolicy, export_onnx, export_torchscript
    from meow.runners import CheckpointError, OffPolicyRunner, read_checkpoint
    from meow.runners.checkpoint import load_learner_state

    env = None
    try:
        check_device(args.device)
        ckpt = read_checkpoint(args.checkpoint, map_location=args.device)
        run_dir = Path(ckpt["path"]).parent
        overrides = [f"device={args.device}", f"seed={args.seed}", "runner.progress=false"]
        overrides += evaluation_overrides(ckpt["config"], args.device)
        overrides.append(f"runner.eval_mode={args.eval_mode or 'both'}")
        kind = get_kind(ckpt["config"]["env"]["kind"])
        # Kinds with one simulation per process evaluate in the environment they create (and
        # record video through it); the others get evaluation envs and record with record_video.
        in_env = not kind.eval_envs_allowed
        if not in_env:
            overrides.append(f"env.eval_envs={args.episodes}")
        cfg = config_from_checkpoint(ckpt["config"], overrides)
        if args.runner == "rl_games":
            if args.video or args.export:
                raise ConfigError("--video and --export belong to the core runner; drop --runner rl_games")
            if args.latent_scale != 1.0:
                raise ConfigError("--latent_scale belongs to the core runner; drop --runner rl_games")
            if args.eval_mode is not None:
                raise ConfigError(
                    f"--eval_mode {args.eval_mode} belongs to the core runner (rl-games' player runs its "
                    "own episodes); drop --runner rl_games or --eval_mode"
                )
            return play_rl_games(cfg, ckpt["path"], args.episodes)
        video = None
        if in_env and args.video and kind.training_video:
            video = {"dir": run_dir, "subdir": "play", "interval": 10**9, "length": 10_000}
        env = make_env_from_config(cfg, args.episodes, video=video)
        # The runner rebuilds the networks exactly as trained; a one-transition buffer is enough here.
        cfg.buffer.capacity = 1
        cfg.algo.batch_size = 1
        runner = OffPolicyRunner(cfg, env, eval_env=env)
        load_learner_state(runner.alg, ckpt)
    except (
        ConfigError,
        CheckpointError,
        EnvKindError,
        ValueError,
        RuntimeError,
        ImportError,
        FileNotFoundError,
    ) as err:
        if env is not None:
            env.close()
        print(f"error: {' '.join(str(err).split())}", file=sys.stderr)
        return 2
    tags = runner.evaluate_modes(latent_scale=args.latent_scale)
    at = f"[meow] {cfg.env.id} @ env step {ckpt['global_step']:,}:"
    sampled = "stochastic" if args.latent_scale == 1.0 else f"stochastic (latent scale {args.latent_scale:g})"
    for label, prefix in (("deterministic", "eval/"), (sampled, "eval/stochastic_")):
        if prefix + "return_mean" in tags:
            print(
                f"{at} {label} return {tags[prefix + 'return_mean']:.1f} ± {tags[prefix + 'return_std']:.1f} "
                f"over {args.episodes} episodes"
            )
    if "eval/value_v0" in tags:
        print(
            f"{at} the flow's V(s0) {tags['eval/value_v0']:.1f}, soft return earned "
            f"{tags['eval/soft_return']:.1f} (V - soft return: {tags['eval/value_error']:+.1f})"
        )
    if cfg.env.kind == "multigoal":
        from meow.envs.multigoal import MultiGoalEnv, goal_histogram

        counts = goal_histogram(lambda obs: runner.alg.act(obs), device=cfg.device).tolist()
        goals = ", ".join(f"{g}: {c}" for g, c in zip(MultiGoalEnv.GOALS, counts, strict=False))
        print(f"[meow] 500 sampled trajectories from the origin reach {goals}; none: {counts[-1]}")
    if args.export:
        policy, normalizer = runner.alg.policy, runner.alg.normalizer
        path = export_torchscript(policy, normalizer, run_dir / "exported" / "policy.pt")
        print(f"[meow] exported TorchScript policy to {path}")
        try:
            path = export_onnx(policy, normalizer, run_dir / "exported" / "policy.onnx")
            print(f"[meow] exported ONNX policy to {path}")
        except RuntimeError as err:
            print(f"warning: {err}; skipped the ONNX export", file=sys.stderr)
    if video is not None:
        print(f"[meow] video clips written to {run_dir / 'videos' / 'play'}")
    elif args.video:
        try:
            path = record_video(
                cfg.env.kind,
                cfg.env.id,
                dict(cfg.env.kwargs),
                DeterministicPolicy(runner.alg.policy, runner.alg.normalizer).eval().cpu(),
                run_dir / "videos" / f"step_{ckpt['global_step']}.mp4",
            )
        except Exception as err:
            first = str(err).strip().splitlines()[0] if str(err).strip() else ""
            print(
                f"error: video recording failed: {type(err).__name__}: {first} "
                "(headless MuJoCo rendering needs MUJOCO_GL=egl or MUJOCO_GL=osmesa and its libraries)",
                file=sys.stderr,
            )
            return 1
        print(f"[meow] video written to {path}")
    env.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())

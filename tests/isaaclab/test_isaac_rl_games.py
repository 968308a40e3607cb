"""MEow through rl-games on the real Isaac-Ant: Isaac Lab's own rl-games wrapper, env registration,
observer, and our rl-games agent config loaded through Isaac Lab's config registry."""

from __future__ import annotations

import math

import pytest
import torch

NUM_ENVS = 4


@pytest.fixture(scope="module")
def rlgpu():
    """Isaac-Ant wrapped by Isaac Lab's RlGamesVecEnvWrapper and registered as rl-games env 'rlgpu'."""
    from isaaclab_rl.rl_games import RlGamesVecEnvWrapper, register_rl_games_env

    from meow_isaac.env import make_isaaclab_env

    env = make_isaaclab_env("Isaac-Ant-v0", NUM_ENVS, "cpu", overrides=["env.episode_length_s=0.2"], seed=0)
    wrapped = RlGamesVecEnvWrapper(env.env, "cpu", math.inf, 1.0)
    register_rl_games_env(wrapped)
    yield wrapped
    env.close()


def test_bridge_keeps_time_outs_and_true_final_observations(rlgpu):
    from rl_games.common import vecenv

    from meow.integrations.rl_games import RlGamesEnvBridge

    vec = vecenv.create_vec_env("rlgpu", NUM_ENVS)
    bridge = RlGamesEnvBridge(vec, vec.get_env_info(), torch.device("cpu"))
    bridge.reset()
    for _ in range(12):  # 0.2 s episodes: 12 steps
        a = torch.rand(NUM_ENVS, 8) * 2 - 1
        r = bridge.step(a)
        torch.testing.assert_close(r.next_obs[:, -8:], a)  # last action, also in final observations
    assert r.truncated.all() and not r.terminated.any()
    assert (r.obs[:, -8:] == 0).all()


def test_rl_games_runner_trains_meow_on_isaac_ant(rlgpu, tmp_path):
    from isaaclab_tasks.utils.parse_cfg import load_cfg_from_registry
    from rl_games.common.algo_observer import IsaacAlgoObserver
    from rl_games.torch_runner import Runner
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from meow.integrations.rl_games import register_algorithm

    agent_cfg = load_cfg_from_registry("Isaac-Ant-v0", "rl_games_meow_cfg_entry_point")
    assert agent_cfg["params"]["algo"]["name"] == "meow"
    agent_cfg["params"]["config"].update(
        device="cpu",
        max_frames=40 * NUM_ENVS,
        num_warmup_frames=10 * NUM_ENVS,
        batch_size=64,
        train_dir=str(tmp_path),
        full_experiment_name="ant",
        meow_overrides=["runner.progress=false", f"runner.log_interval={5 * NUM_ENVS}", "torch_threads=1"],
    )
    runner = register_algorithm(Runner(IsaacAlgoObserver()))
    runner.load(agent_cfg)
    runner.run({"train": True, "play": False})  # rl-games' default torch_compile is on
    nn = tmp_path / "ant" / "nn"
    assert (nn / "Isaac-Ant.pth").is_file() and (nn / f"last_Isaac-Ant_frame_{40 * NUM_ENVS}.pth").is_file()
    events = EventAccumulator(str(tmp_path / "ant" / "summaries"))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert {"losses/loss", "charts/episodic_return"} <= tags
    assert any(t.startswith("Episode/Episode_Reward/") for t in tags)  # written by IsaacAlgoObserver

    # rl-games' player (on Isaac Lab's wrapped env) restores it with the core policy's actions
    from meow.algorithms import MEow
    from meow.config import config_from_checkpoint
    from meow.modules import EmpiricalNormalization, build_policy
    from meow.runners import read_checkpoint

    player = runner.create_player()
    player.restore(nn / "Isaac-Ant.pth")
    ckpt = read_checkpoint(nn / "Isaac-Ant.pth")
    policy = build_policy(config_from_checkpoint(ckpt["config"]), 60, 8)
    core = MEow(policy, EmpiricalNormalization(60))
    core.load_state_dict(ckpt["learner"])
    obs = player.env_reset(player.env)
    obs = obs["obs"] if isinstance(obs, dict) else obs
    expected = core.act(obs, deterministic=True)
    assert expected.abs().max() > 1e-3
    torch.testing.assert_close(player.get_action(obs, is_deterministic=True), expected)


def test_isaaclabs_own_rl_games_cli_trains_meow(tmp_path):
    """`isaaclab train --rl_library rl_games --agent rl_games_meow_cfg_entry_point` (Isaac Lab's CLI)."""
    import os
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    cli = shutil.which("isaaclab", path=str(Path(sys.executable).parent))
    assert cli is not None, "the isaaclab command comes with the isaaclab package"
    cmd = [cli, "train", "--rl_library", "rl_games", "--task", "Isaac-Ant-v0"]
    cmd += ["--agent", "rl_games_meow_cfg_entry_point", "--num_envs", "4", "--max_iterations", "30"]
    cmd += [
        "--device",
        "cpu",
        "physics=newton_mjwarp",
        "env.compute_final_obs=true",
        "env.episode_length_s=0.2",
    ]
    cmd += ["agent.params.config.device=cpu", "agent.params.config.batch_size=64"]
    cmd += ["agent.params.config.num_warmup_frames=40"]
    proc = subprocess.run(
        cmd, cwd=tmp_path, env=dict(os.environ), capture_output=True, text=True, timeout=900
    )
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    assert "no infos['final_obs']" not in proc.stdout  # true final observations reached the agent
    (run,) = (tmp_path / "logs" / "rl_games" / "Isaac-Ant").iterdir()
    assert (run / "nn" / "Isaac-Ant.pth").is_file() and (
        run / "nn" / "last_Isaac-Ant_frame_120.pth"
    ).is_file()

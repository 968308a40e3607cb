"""MEow as an rl-games algorithm: rl-games' Runner trains it, its player restores it, and
checkpoints move between the core runner and rl-games in both directions."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from script_loader import load_script

from meow.config import ConfigError

ROOT = Path(__file__).resolve().parents[2]


train, play = load_script("train"), load_script("play")
SMALL = [
    "--total_steps",
    "400",
    "runner.progress=false",
    "runner.warmup_steps=100",
    "algo.batch_size=32",
    "buffer.capacity=2000",
    "runner.log_interval=100",
    "torch_threads=1",
]


PRECISION_AFTER_RL_GAMES: list[str] = []


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """InvertedPendulum-v5 trained 400 steps by rl-games' Runner and by the core runner."""
    logs = tmp_path_factory.mktemp("rlg")
    assert (
        train.main(
            ["--task", "InvertedPendulum-v5", "--runner", "rl_games", f"runner.log_dir={logs}", *SMALL]
        )
        == 0
    )
    # rl-games' Runner turns TF32 on as it is built; the learner built after it sets MEow's own
    # algo.matmul_precision (float32 here), so both runners train with the same products
    PRECISION_AFTER_RL_GAMES.append(torch.get_float32_matmul_precision())
    assert (
        train.main(["--task", "InvertedPendulum-v5", f"runner.log_dir={logs}", "env.eval_envs=0", *SMALL])
        == 0
    )
    (rlg,) = (logs / "rl_games" / "InvertedPendulum-v5").iterdir()
    (core,) = (logs / "meow" / "InvertedPendulum-v5").iterdir()
    return rlg, core


def _player(checkpoint: Path, num_envs: int = 2):
    from rl_games.torch_runner import Runner

    from meow.config import config_from_checkpoint
    from meow.envs import make_env_from_config
    from meow.integrations.rl_games import register_algorithm, register_env, rl_games_params
    from meow.runners import read_checkpoint

    cfg = config_from_checkpoint(read_checkpoint(checkpoint)["config"], ["env.eval_envs=0"])
    register_env("meow", lambda **_: make_env_from_config(cfg, num_envs))
    runner = register_algorithm(Runner())
    runner.load({"params": rl_games_params(cfg, checkpoint.parent / "play", "p")})
    player = runner.create_player()
    player.restore(checkpoint)
    return player


def _core_actions(checkpoint: Path, obs: torch.Tensor) -> torch.Tensor:
    from meow.algorithms import MEow
    from meow.config import config_from_checkpoint
    from meow.modules import build_policy
    from meow.runners import read_checkpoint

    ckpt = read_checkpoint(checkpoint)
    cfg = config_from_checkpoint(ckpt["config"])
    alg = MEow(
        build_policy(cfg, ckpt["obs_dim"], ckpt["action_dim"]), None, lr=1e-3, gamma=0.9, tau=0.1, grad_clip=1
    )
    alg.load_state_dict(ckpt["learner"])
    return alg.act(obs, deterministic=True)


def test_meow_under_rl_games_keeps_its_own_matmul_precision(runs):
    from rl_games.torch_runner import Runner

    Runner()
    assert torch.get_float32_matmul_precision() == "high"  # what rl-games sets, were it left alone
    assert PRECISION_AFTER_RL_GAMES == ["highest"]


def test_rl_games_runner_writes_its_layout_with_meows_metrics(runs):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    rlg, _ = runs
    assert (rlg / "nn" / "InvertedPendulum-v5.pth").is_file()
    assert (rlg / "nn" / "last_InvertedPendulum-v5_frame_400.pth").is_file()
    events = EventAccumulator(str(rlg / "summaries"))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert {"losses/loss", "charts/SPS", "charts/episodic_return"} <= tags  # the core runner's names
    assert events.Scalars("losses/loss")[-1].step == 400


@pytest.mark.parametrize("which", ["rl_games", "core"])
def test_player_restores_either_checkpoint_with_the_core_policys_actions(runs, which):
    rlg, core = runs
    checkpoint = rlg / "nn" / "InvertedPendulum-v5.pth" if which == "rl_games" else core / "model_400.pt"
    obs = torch.randn(16, 4)
    player = _player(checkpoint)
    expected = _core_actions(checkpoint, obs)
    assert expected.abs().max() > 1e-3
    torch.testing.assert_close(player.get_action(obs, is_deterministic=True), expected)
    torch.testing.assert_close(player.get_action(obs[0], is_deterministic=True), expected[0])


def test_rl_games_checkpoint_resumes_in_the_core_runner_and_the_reverse(runs, tmp_path, capsys):
    rlg, core = runs
    logs = tmp_path / "logs"
    assert (
        train.main(
            [
                "--resume",
                str(rlg / "nn" / "InvertedPendulum-v5.pth"),
                "--total_steps",
                "500",
                f"runner.log_dir={logs}",
            ]
        )
        == 0
    )
    assert "resumed" in capsys.readouterr().out
    assert (next((logs / "meow" / "InvertedPendulum-v5").iterdir()) / "model_500.pt").is_file()
    args = [
        "--resume",
        str(core / "model_400.pt"),
        "--runner",
        "rl_games",
        "--total_steps",
        "500",
        f"runner.log_dir={logs}",
    ]
    assert train.main(args) == 0
    (run,) = (logs / "rl_games" / "InvertedPendulum-v5").iterdir()
    assert (run / "nn" / "last_InvertedPendulum-v5_frame_500.pth").is_file()


def test_play_through_rl_games_player(runs, capsys):
    rlg, _ = runs
    assert (
        play.main([str(rlg / "nn" / "InvertedPendulum-v5.pth"), "--runner", "rl_games", "--episodes", "2"])
        == 0
    )
    assert "av reward" in capsys.readouterr().out


def test_rl_games_sac_key_names_map_onto_meows_settings():
    from meow.integrations.rl_games import config_from_rl_games

    params = {
        "seed": 7,
        "config": {
            "meow_task": "Hopper-v5",
            "num_actors": 4,
            "device": "cpu",
            "gamma": 0.98,
            "critic_tau": 0.01,
            "init_alpha": 0.3,
            "learning_rate": 3e-4,
            "grad_norm": 10.0,
            "batch_size": 128,
            "replay_buffer_size": 10000,
            "num_warmup_frames": 1000,
            "max_frames": 50000,
            "normalize_input": True,
            "meow_overrides": ["algo.num_couplings=2"],
        },
    }
    cfg = config_from_rl_games(params)
    got = (cfg.seed, cfg.env.num_envs, cfg.algo.gamma, cfg.algo.tau, cfg.algo.alpha, cfg.algo.lr)
    assert got == (7, 4, 0.98, 0.01, 0.3, 3e-4)
    assert (cfg.algo.grad_clip, cfg.algo.batch_size, cfg.buffer.capacity) == (10.0, 128, 10000)
    assert (cfg.runner.warmup_steps, cfg.runner.total_steps, cfg.algo.normalize_obs) == (1000, 50000, True)
    assert cfg.algo.num_couplings == 2 and cfg.algo.log_sigma_max == -0.3  # the rest: the task file


def test_rl_games_epochs_are_vectorized_steps():
    """Isaac Lab's --max_iterations (max_epochs) and save_frequency count vectorized steps: env
    steps are epochs x num_actors, the rule of train.py's --max_iterations (meow.config.env_steps)."""
    from meow.integrations.rl_games import config_from_rl_games

    config = {"meow_task": "Hopper-v5", "num_actors": 4, "max_epochs": 30, "save_frequency": 5}
    cfg = config_from_rl_games({"config": config})
    assert (cfg.runner.total_steps, cfg.runner.checkpoint_interval) == (120, 20)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"meow_task": None}, "params.config.meow_task is missing"),
        ({"learnable_temperature": True}, "learnable_temperature=true is invalid; valid: false"),
        ({"reward_shaper": {"scale_value": 0.1}}, "reward_shaper scale_value=0.1, shift_value=0 is invalid"),
        ({"critic_tau": 2.0}, r"algo.tau=2.0 is invalid"),
    ],
)
def test_bad_rl_games_configs_are_one_line_errors(change, message):
    from meow.integrations.rl_games import config_from_rl_games

    config = {"meow_task": "Hopper-v5", **change}
    config = {k: v for k, v in config.items() if v is not None}
    with pytest.raises(ConfigError, match=message):
        config_from_rl_games({"config": config})

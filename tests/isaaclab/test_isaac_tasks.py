"""Task registration, config resolution through Isaac Lab, declared sizes, and clear errors."""

from __future__ import annotations

import importlib.metadata
import shutil
from pathlib import Path

import gymnasium as gym
import pytest
import torch
from omegaconf import OmegaConf

from meow.config import ROOT, ConfigError, load_config
from meow_isaac.task_configs import TASK_DIR

ISAAC_TASK_FILES = sorted(TASK_DIR.glob("*.yaml"))
# Isaac Lab's direct-workflow twin of each task: the same robot and observation design, with
# the observation and action sizes written in its config.
DIRECT_TWIN = {
    "Isaac-Ant": "Isaac-Ant-Direct",
    "Isaac-Humanoid": "Isaac-Humanoid-Direct",
    "IsaacContrib-Velocity-Flat-AnymalC": "IsaacContrib-Velocity-Flat-AnymalC-Direct",
    "IsaacContrib-Velocity-Rough-AnymalC": "IsaacContrib-Velocity-Rough-AnymalC-Direct",
    "Isaac-Reorient-Cube-Allegro": "Isaac-Reorient-Cube-Allegro-Direct",
}
ANYMAL_D_LIKE_C = {
    "Isaac-Velocity-Flat-AnymalD": "IsaacContrib-Velocity-Flat-AnymalC",
    "Isaac-Velocity-Rough-AnymalD": "IsaacContrib-Velocity-Rough-AnymalC",
}


@pytest.fixture(scope="module")
def registered():
    import meow_isaac.tasks

    return meow_isaac.tasks


def test_every_requested_robot_has_a_task_file():
    ids = {OmegaConf.load(p).env.id for p in ISAAC_TASK_FILES}
    assert ids == set(DIRECT_TWIN) | set(ANYMAL_D_LIKE_C)


def test_the_task_files_are_package_data_of_the_extension():
    assert all(OmegaConf.load(p).env.kind == "isaaclab" for p in ISAAC_TASK_FILES)
    assert not any(OmegaConf.load(p).env.get("kind") == "isaaclab" for p in (ROOT / "tasks").glob("*.yaml"))
    assert load_config("Isaac-Ant-v0").task == "isaac_ant"  # found through the meow.envs entry point


def test_isaaclab_discovers_the_extension_through_its_entry_point_group():
    points = {ep.name: ep.value for ep in importlib.metadata.entry_points(group="isaaclab.tasks")}
    assert points.get("meow_isaac") == "meow_isaac.tasks"
    from isaaclab.cli import load_external_tasks

    load_external_tasks()
    assert "meow_cfg_entry_point" in gym.spec("Isaac-Ant-v0").kwargs


BATCH_SPLIT = {"isaac_ant": 2}


@pytest.mark.parametrize("path", ISAAC_TASK_FILES, ids=lambda p: p.stem)
def test_ids_and_aliases_resolve_to_the_task_settings(registered, path):
    from isaaclab_tasks.utils.parse_cfg import load_cfg_from_registry

    env = OmegaConf.load(path).env
    assert env.aliases, "every Isaac task accepts its Isaac Lab 2.x id"
    for name in [env.id, *env.aliases]:
        spec = gym.spec(name)
        assert spec.entry_point == gym.spec(env.id).entry_point
        assert spec.kwargs["env_cfg_entry_point"] == gym.spec(env.id).kwargs["env_cfg_entry_point"]
        # Isaac Lab's own loader returns our task file for the MEow entry point
        assert load_cfg_from_registry(name, "meow_cfg_entry_point") == OmegaConf.to_container(
            OmegaConf.load(path)
        )
        cfg = load_config(name, ["env.num_envs=64"])
        assert (cfg.task, cfg.env.id, cfg.env.kind) == (path.stem, env.id, "isaaclab")
        # the paper's Isaac rules, applied to the chosen env count
        assert cfg.buffer.capacity == 15000 * 64
        # (Isaac-Ant splits the rule's batch in two updates: tests/isaaclab/test_isaac_learner_settings.py)
        assert cfg.algo.batch_size == 131072 // 64 // BATCH_SPLIT.get(path.stem, 1)
        assert cfg.runner.warmup_steps == 100 * 64
        assert cfg.runner.total_steps == 1_000_000 * 64  # 1M vectorized steps
        assert cfg.algo.normalize_obs and cfg.env.eval_envs == 0
        assert cfg.device == ("cuda:0" if torch.cuda.is_available() else "cpu")  # device: auto
        agent = load_cfg_from_registry(name, "rl_games_meow_cfg_entry_point")
        assert agent["params"]["algo"]["name"] == "meow" and agent["params"]["config"]["meow_task"] == env.id
    # small env counts (CPU): the batch is capped so that it fits the smaller buffer
    assert load_config(env.id, ["env.num_envs=2"]).algo.batch_size == 4096 // BATCH_SPLIT.get(path.stem, 1)


@pytest.mark.parametrize("path", ISAAC_TASK_FILES, ids=lambda p: p.stem)
def test_declared_sizes_match_isaaclab_configs(registered, path):
    from isaaclab_tasks.utils import resolve_task_config
    from isaaclab_tasks.utils.parse_cfg import load_cfg_from_registry

    env = OmegaConf.load(path).env
    alias = env.aliases[0]
    # the manager-based config resolves through Isaac Lab's Hydra path under the 2.x id
    env_cfg, _ = resolve_task_config(alias, None, overrides=["env.scene.num_envs=3"])
    assert env_cfg.scene.num_envs == 3
    twin_of = ANYMAL_D_LIKE_C.get(env.id, env.id)
    if twin_of != env.id:
        # ANYmal-D has no direct twin: its policy observations are ANYmal-C's, term for term
        c_cfg, _ = resolve_task_config(twin_of, None, overrides=[])
        names = lambda cfg: [k for k, v in vars(cfg.observations.policy).items() if hasattr(v, "func")]  # noqa: E731
        assert names(env_cfg) == names(c_cfg)
    direct = load_cfg_from_registry(DIRECT_TWIN[twin_of], "env_cfg_entry_point")
    assert (env.obs_dim, env.action_dim) == (direct.observation_space, direct.action_space)


def test_a_bad_task_id_names_the_close_matches():
    with pytest.raises(ConfigError, match=r"unknown task 'Isaac-Ant-v9'; did you mean .*Isaac-Ant-v0"):
        load_config("Isaac-Ant-v9")


def test_a_task_file_with_a_wrong_key_is_a_one_line_error(tmp_path):
    shutil.copytree(ROOT / "config", tmp_path / "config")
    (tmp_path / "tasks").mkdir()
    text = (TASK_DIR / "isaac_ant.yaml").read_text().replace("  alpha: 0.00125", "  alfa: 0.00125")
    (tmp_path / "tasks" / "isaac_ant.yaml").write_text(text)
    with pytest.raises(
        ConfigError, match=r"unknown key 'algo.alfa' in .*isaac_ant.yaml; did you mean algo.alpha"
    ):
        load_config("Isaac-Ant-v0", root=tmp_path)


def test_a_missing_asset_names_the_file_and_the_asset_root(registered):
    from meow_isaac.assets import AssetError, check_assets, missing_assets
    from meow_isaac.env import resolve_env_cfg

    assert missing_assets(resolve_env_cfg("Isaac-Ant", 2, "cpu")) == []  # built by conftest
    cfg = resolve_env_cfg("Isaac-Velocity-Flat-Anymal-D-v0", 2, "cpu")
    (first, *_) = missing_assets(cfg)
    assert "ANYmal-D" in first and Path(first).suffix == ".usd"
    with pytest.raises(AssetError) as err:
        check_assets(cfg, "Isaac-Velocity-Flat-Anymal-D-v0")
    msg = str(err.value)
    assert "\n" not in msg and first in msg and "ISAACSIM_ASSET_ROOT=" in msg


# The paper's Isaac temperatures (ALGORITHM.md section 6) and whether the OIGE task it used
# multiplied its rewards by the step dt, as Isaac Lab's reward manager always does.
PAPER_ALPHA = {
    "Ant": (0.075, False),
    "Humanoid": (0.25, False),
    "ANYmal": (0.00075, True),
    "Allegro": (0.1, False),
}


@pytest.mark.parametrize("path", ISAAC_TASK_FILES, ids=lambda p: p.stem)
def test_alpha_is_the_papers_on_isaaclab_reward_scale(registered, path):
    from isaaclab_tasks.utils import resolve_task_config

    env = OmegaConf.load(path).env
    robot = next(r for r in PAPER_ALPHA if r.lower() in path.stem)
    alpha, already_dt_scaled = PAPER_ALPHA[robot]
    env_cfg, _ = resolve_task_config(env.id, None, overrides=[])
    step_dt = env_cfg.sim.dt * env_cfg.decimation
    expected = alpha if already_dt_scaled else alpha * step_dt
    assert load_config(env.id).algo.alpha == pytest.approx(expected, rel=1e-4)

"""Config loading: precedence, task lookup, and one-line errors for bad input."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf
from paper_settings import resolved, tasks

from meow.config import ROOT, ConfigError, config_from_checkpoint, find_task, load_config, presets, task_files


def test_precedence_defaults_task_command_line():
    cfg = load_config("Hopper-v5", ["algo.tau=0.01"])
    assert cfg.algo.lr == 0.001  # config/meow.yaml
    assert cfg.algo.alpha == 0.25  # tasks/hopper.yaml overrides the default 0.2
    assert cfg.algo.tau == 0.01  # command line overrides the task's 0.005
    assert cfg.task == "hopper" and cfg.env.id == "Hopper-v5"


@pytest.mark.parametrize(
    ("task", "tau", "alpha", "warmup", "sigma"),
    [
        ("Hopper-v5", 0.005, 0.25, 5000, (-5.0, -0.3)),
        ("HalfCheetah-v5", 0.003, 0.25, 10000, (-5.0, 2.0)),
        ("Walker2d-v5", 0.005, 0.1, 10000, (-5.0, -0.3)),
        ("Ant-v5", 0.0001, 0.025, 5000, (-5.0, -0.3)),  # the paper's 0.05 under algo.preset=paper
        ("Humanoid-v5", 0.0005, 0.125, 5000, (-5.0, -0.3)),
    ],
)
def test_published_mujoco_settings(task, tau, alpha, warmup, sigma):
    """The task files carry the paper's per-task settings (ALGORITHM.md section 6), but where they
    name a departure (the preset's task sections restore the paper's value)."""
    cfg = load_config(task)
    assert (cfg.algo.tau, cfg.algo.alpha, cfg.runner.warmup_steps) == (tau, alpha, warmup)
    assert (cfg.algo.log_sigma_min, cfg.algo.log_sigma_max) == sigma
    assert (cfg.algo.batch_size, cfg.buffer.capacity, cfg.algo.lr, cfg.algo.gamma) == (
        256,
        1_000_000,
        1e-3,
        0.99,
    )


def test_v4_aliases_resolve_to_the_same_task_and_keep_the_typed_id():
    cfg = load_config("Walker2d-v4")
    assert cfg.task == "walker2d" and cfg.env.id == "Walker2d-v4"
    assert find_task("Walker2d-v4") == find_task("Walker2d-v5")


def test_every_task_file_loads():
    for name in task_files():
        load_config(name)


@pytest.mark.parametrize(
    ("task", "overrides", "message"),
    [
        ("Hoper-v5", [], "unknown task 'Hoper-v5'; did you mean Hopper-v5"),
        ("Hopper-v5", ["algo.lrr=0.1"], "unknown key 'algo.lrr'.*did you mean algo.lr"),
        ("Hopper-v5", ["algo.lr=-1"], r"algo.lr=-1.0 is invalid; valid: a number > 0"),
        ("Hopper-v5", ["algo.lr=fast"], "bad value for 'algo.lr'"),
        ("Hopper-v5", ["algo.log_sigma_min=0"], "log_sigma_min=0.0 is invalid; valid: a number below"),
        (
            "Hopper-v5",
            ["buffer.capacity=100"],
            "algo.batch_size=256 is invalid; valid: at most buffer.capacity=100",
        ),
        ("Hopper-v5", ["algo.gamma=1.0"], r"algo.gamma=1.0 is invalid; valid: a number in \[0, 1\)"),
        ("Hopper-v5", ["device=tpu"], "device=tpu is invalid"),
        ("Hopper-v5", ["env.kind=isaac"], "env.kind cannot be overridden"),
        ("Hopper-v5", ["env.num_envs=0"], r"env.num_envs=0 is invalid; valid: an integer >= 1"),
        ("Hopper-v5", ["env.id=Ant-v5"], "env.id cannot be overridden"),
        ("Hopper-v5", ["lr"], "not of the form key=value"),
        ("Hopper-v5", ["algo.capture=graph"], "algo.capture=graph is invalid; valid: auto | none | compile"),
        (
            "Hopper-v5",
            ["algo.matmul_precision=bf16"],
            "algo.matmul_precision=bf16 is invalid; valid: float32 | tf32",
        ),
        ("Hopper-v5", ["algo.n_step=0"], r"algo.n_step=0 is invalid; valid: an integer >= 1"),
        (
            "Hopper-v5",
            ["buffer.capacity=1000", "algo.n_step=2000"],
            "algo.n_step=2000 is invalid; valid: an integer >= 1 .* at most the replay's steps per env",
        ),
        (
            "Hopper-v5",
            ["algo.compile=true"],
            "algo.compile .* was replaced by algo.capture; write algo.capture=",
        ),
    ],
)
def test_bad_input_is_a_one_line_error_naming_the_value(task, overrides, message):
    with pytest.raises(ConfigError, match=message) as info:
        load_config(task, overrides)
    assert "\n" not in str(info.value)


def test_every_float_setting_must_be_finite():
    """inf passes most bounds (alpha > 0) and NaN fails late in training: both are refused up front,
    for every float of the schema."""
    from meow.config import _float_keys

    keys = _float_keys()
    assert {"algo.lr", "algo.tau", "algo.alpha", "algo.grad_clip", "runner.max_minutes"} <= set(keys)
    for key in keys:
        for text, shown in ((".inf", "inf"), ("-.inf", "-inf"), (".nan", "nan")):
            with pytest.raises(ConfigError, match=rf"^{key}={shown} is invalid; valid: a finite number$"):
                load_config("Hopper-v5", [f"{key}={text}"])


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without CUDA")
def test_cudagraph_capture_without_cuda_names_cuda():
    with pytest.raises(ConfigError, match="algo.capture=cudagraph needs CUDA, but device=cpu") as info:
        load_config("Hopper-v5", ["algo.capture=cudagraph"])
    assert "\n" not in str(info.value)
    assert load_config("Hopper-v5", ["algo.capture=compile"]).algo.capture == "compile"


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without CUDA")
def test_tf32_without_cuda_names_cuda():
    with pytest.raises(ConfigError, match="algo.matmul_precision=tf32 needs CUDA .* device=cpu") as info:
        load_config("Hopper-v5", ["algo.matmul_precision=tf32"])
    assert "\n" not in str(info.value)
    assert load_config("Hopper-v5").algo.matmul_precision == "float32"


def test_a_checkpoint_config_with_the_old_compile_key_resumes():
    saved = OmegaConf.to_container(load_config("Hopper-v5"))
    del saved["algo"]["capture"], saved["algo"]["n_step"]
    for old, new in ((True, "compile"), (False, "auto")):
        saved["algo"]["compile"] = old
        cfg = config_from_checkpoint(saved)
        assert cfg.algo.capture == new and cfg.algo.n_step == 1 and "compile" not in cfg.algo


def test_a_checkpoint_config_from_before_matmul_precision_resumes_in_float32():
    saved = OmegaConf.to_container(load_config("Hopper-v5"))
    del saved["algo"]["matmul_precision"]
    assert config_from_checkpoint(saved).algo.matmul_precision == "float32"


REMEDY_KEYS = {  # the paper's values
    "shift_scale": "alpha",
    "head_norm": "none",
    "alpha_autotune": False,
    "target_entropy": -1.0,
    "alpha_lr": 3e-4,
    "log_prob_floor": None,
}


@pytest.mark.parametrize("task", tasks())
def test_the_default_remedy_is_the_floor_scoped_to_v_and_the_others_are_off(task):
    """The measurements picked one remedy (docs/RESULTS.md, "Stable MEow"): every task gets the
    -5 nats per dimension floor on what V learns; the rest stay at the paper's values."""
    algo = load_config(task).algo
    chosen = {"log_prob_floor": -5.0}
    assert {k: algo[k] for k in REMEDY_KEYS} == {**REMEDY_KEYS, **chosen}
    paper = load_config(task, ["algo.preset=paper"]).algo
    assert {k: paper[k] for k in REMEDY_KEYS} == REMEDY_KEYS


def test_a_checkpoint_config_from_before_the_remedies_resumes_with_them_off():
    saved = OmegaConf.to_container(load_config("Walker2d-v5", ["algo.head_norm=layer"]))
    for key in REMEDY_KEYS:
        del saved["algo"][key]
    algo = config_from_checkpoint(saved).algo
    assert {k: algo[k] for k in REMEDY_KEYS} == REMEDY_KEYS


REMOVED_OFF = {"coupling_shift_bound": 0.0, "weight_decay": 0.0, "target_bound": False}


@pytest.mark.parametrize("scope", ["fit", "value"])
def test_a_checkpoint_config_with_a_removed_remedy_off_resumes_without_the_key(scope):
    """Checkpoints up to commit 195055e hold the removed remedies' keys; off, they are dropped (the
    paper's ``fit`` scope of the floor is off where no floor is set, and ``value`` is today's floor)."""
    floor = None if scope == "fit" else -5.0
    saved = OmegaConf.to_container(load_config("Hopper-v5", [f"algo.log_prob_floor={floor or 'null'}"]))
    saved["algo"].update(REMOVED_OFF, log_prob_floor_scope=scope)
    algo = config_from_checkpoint(saved).algo
    assert algo.log_prob_floor == floor and not set(REMOVED_OFF) & set(algo)
    assert "log_prob_floor_scope" not in algo


@pytest.mark.parametrize(
    "key, value",
    [
        ("target_bound", True),
        ("weight_decay", 0.01),
        ("coupling_shift_bound", 1.0),
        ("log_prob_floor_scope", "mask"),
        ("log_prob_floor_scope", "fit"),  # with a floor set: the floor on the whole fit
    ],
)
def test_a_checkpoint_config_with_a_removed_remedy_on_is_a_one_line_error(key, value):
    saved = OmegaConf.to_container(load_config("Hopper-v5"))
    saved["algo"][key] = value
    with pytest.raises(ConfigError) as err:
        config_from_checkpoint(saved)
    message = str(err.value)
    assert message.startswith(f"algo.{key}={value} (in the checkpoint's config) was removed")
    assert "commit 195055e" in message and "\n" not in message


PAPER = json.loads((Path(__file__).parent / "data" / "paper_settings.json").read_text())


@pytest.mark.parametrize("task", sorted(PAPER))
def test_the_paper_preset_resolves_to_the_recorded_paper_settings(task):
    """``algo.preset=paper`` gives every task exactly the settings it had before any remedy could
    become a default (tests/data/paper_settings.json, recorded at d47dd8f)."""
    assert resolved(task, ["algo.preset=paper"]) == PAPER[task]


def test_every_task_file_has_recorded_paper_settings():
    assert sorted(PAPER) == tasks()


@pytest.mark.parametrize("order", [0, 1])
def test_command_line_overrides_win_over_the_preset_in_either_order(order):
    overrides = ["algo.preset=paper", "algo.log_prob_floor=-1.5", "algo.n_step=3"]
    cfg = load_config("Walker2d-v5", overrides if order == 0 else overrides[::-1])
    assert cfg.algo.log_prob_floor == -1.5 and cfg.algo.n_step == 3 and cfg.algo.preset == "paper"
    assert cfg.algo.head_norm == "none" and cfg.algo.alpha == 0.1  # the preset's and the task's


def test_the_preset_wins_over_the_task_file(tmp_path):
    shutil.copytree(ROOT / "config", tmp_path / "config")
    shutil.copytree(ROOT / "tasks", tmp_path / "tasks")
    task = OmegaConf.load(tmp_path / "tasks" / "hopper.yaml")  # a task file that turns remedies on
    task.algo.head_norm, task.algo.log_prob_floor = "layer", -3.0
    OmegaConf.save(task, tmp_path / "tasks" / "hopper.yaml")
    plain = load_config("Hopper-v5", root=tmp_path).algo
    assert plain.head_norm == "layer" and plain.log_prob_floor == -3.0
    paper = load_config("Hopper-v5", ["algo.preset=paper"], root=tmp_path).algo
    assert paper.head_norm == "none" and paper.log_prob_floor is None and paper.alpha == 0.25


def test_a_presets_task_section_applies_to_that_task_only(tmp_path):
    shutil.copytree(ROOT / "config", tmp_path / "config")
    shutil.copytree(ROOT / "tasks", tmp_path / "tasks")
    preset = OmegaConf.load(tmp_path / "config" / "presets" / "paper.yaml")
    preset.tasks = {"Hopper-v5": {"algo": {"log_sigma_max": 1.5}}}
    OmegaConf.save(preset, tmp_path / "config" / "presets" / "paper.yaml")
    hopper = load_config("Hopper-v5", ["algo.preset=paper"], root=tmp_path).algo
    walker = load_config("Walker2d-v5", ["algo.preset=paper"], root=tmp_path).algo
    assert hopper.log_sigma_max == 1.5 and walker.log_sigma_max == -0.3  # walker2d.yaml's
    assert hopper.log_prob_floor is None  # the rest of the preset still applies
    again = load_config("Hopper-v5", ["algo.preset=paper", "algo.log_sigma_max=0.5"], root=tmp_path)
    assert again.algo.log_sigma_max == 0.5  # the command line still wins


def _flat(tree: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out |= _flat(value, f"{prefix}{key}.")
        else:
            out[f"{prefix}{key}"] = value
    return out


@pytest.mark.parametrize("task", tasks())
def test_a_task_departs_from_the_paper_only_where_the_paper_preset_names_it(task):
    """Every difference between a task's defaults and its ``algo.preset=paper`` settings is a
    remedy of config/meow.yaml or a key of the preset's section for that task: a task file cannot
    drift from the paper without the preset restoring it."""
    ours, paper = _flat(resolved(task)), _flat(resolved(task, ["algo.preset=paper"]))
    assert set(ours) == set(paper)
    differ = {key for key in ours if ours[key] != paper[key]}
    sections = OmegaConf.to_container(OmegaConf.load(ROOT / "config" / "presets" / "paper.yaml").tasks)
    named = {
        f"{part}.{key}"
        for tid, section in sections.items()
        if find_task(tid) == find_task(task)
        for part, keys in section.items()
        for key in keys
    }
    # equality also makes each named key a real departure: the preset changes it
    assert differ - {f"algo.{key}" for key in REMEDY_KEYS} == named


@pytest.mark.parametrize("name", [p for p in presets() if p != "none"])
def test_every_task_a_preset_names_is_a_known_task(name):
    preset = OmegaConf.load(ROOT / "config" / "presets" / f"{name}.yaml")
    for task in preset.get("tasks", {}):
        assert find_task(str(task)).is_file()  # an unknown id raises a ConfigError


def test_an_unknown_preset_is_a_one_line_error():
    with pytest.raises(ConfigError, match=r"^algo.preset=fast is invalid; valid: none \| paper$"):
        load_config("Hopper-v5", ["algo.preset=fast"])


def test_a_checkpoint_config_from_before_presets_resumes_without_one():
    saved = OmegaConf.to_container(load_config("Hopper-v5"))
    del saved["algo"]["preset"]
    assert config_from_checkpoint(saved).algo.preset == "none"


def test_checkpoint_config_round_trip_and_frozen_task():
    saved = OmegaConf.to_container(load_config("Hopper-v5"))
    cfg = config_from_checkpoint(saved, ["runner.total_steps=10"])
    assert cfg.runner.total_steps == 10 and cfg.algo.alpha == 0.25
    with pytest.raises(ConfigError, match="env.id cannot be overridden"):
        config_from_checkpoint(saved, ["env.id=Ant-v5"])


def test_missing_defaults_file_is_reported(tmp_path):
    (tmp_path / "tasks").mkdir()
    with pytest.raises(ConfigError, match="meow.yaml not found"):
        load_config("Hopper-v5", root=tmp_path)
    assert (ROOT / "config" / "meow.yaml").is_file()


def test_device_auto_picks_the_gpu_when_there_is_one():
    cfg = load_config("Hopper-v5", ["device=auto"])
    assert cfg.device == ("cuda:0" if torch.cuda.is_available() else "cpu")

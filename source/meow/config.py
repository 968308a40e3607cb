"""Configuration: typed schema, loading (defaults < task file < command line) and validation.

The default values live in ``config/meow.yaml`` and the per-task settings in ``tasks/*.yaml``
at the repository root, plus the task files that installed env kinds ship
(:meth:`meow.envs.EnvKind.task_dirs`); this module holds only their types and the rules they must obey.
"""

from __future__ import annotations

import difflib
import inspect
import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field, is_dataclass
from pathlib import Path
from typing import Any, get_type_hints

import torch
from omegaconf import MISSING, DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from meow.algorithms.capture import CAPTURE_MODES, MATMUL_PRECISIONS
from meow.envs.registry import EnvKindError, all_task_dirs, get_kind
from meow.modules.flow_policy import COUPLING_BIASES, Q_DROPOUTS, SHIFT_SCALES
from meow.nn.layers import HIDDEN_NORMS
from meow.runners.evaluation import EVAL_MODES
from meow.utils.checks import check_choice, invalid

ROOT = Path(os.environ.get("MEOW_ROOT", Path(__file__).resolve().parents[2]))
"""Repository root holding ``config/`` and ``tasks/`` (override with ``MEOW_ROOT``)."""


def register_resolver(name: str, resolver: Callable[..., Any]) -> None:
    """Makes ``${name:args}`` usable in config and task files (replacing any resolver of that name).

    Packages that ship task files register the rules those files use this way (the Isaac Lab
    extension: ``meow.isaac_batch`` and the like) when they are imported.
    """
    # omegaconf 2.4 renamed register_new_resolver to register_resolver (which in 2.3 is the legacy API).
    if "replace" in inspect.signature(OmegaConf.register_resolver).parameters:
        OmegaConf.register_resolver(name, resolver, replace=True)
    else:
        OmegaConf.register_new_resolver(name, resolver, replace=True)


# Task files scale settings with the env count, e.g. ``capacity: ${meow.mul:15000,${env.num_envs}}``.
register_resolver("meow.mul", lambda a, b: int(a) * int(b))
register_resolver("meow.floordiv", lambda a, b: max(1, int(a) // int(b)))
register_resolver("meow.min", lambda a, b: min(int(a), int(b)))


class ConfigError(ValueError):
    """A bad setting: the message names the key, its value and what would be valid."""


@dataclass
class EnvConfig:
    id: str = MISSING
    kind: str = MISSING
    aliases: list[str] = field(default_factory=list)
    num_envs: int = MISSING
    eval_envs: int = MISSING
    obs_dim: int = MISSING
    action_dim: int = MISSING
    kwargs: dict[str, Any] = field(default_factory=dict)
    sim_overrides: list[str] = field(default_factory=list)


@dataclass
class AlgoConfig:
    lr: float = MISSING
    gamma: float = MISSING
    tau: float = MISSING
    alpha: float = MISSING
    grad_clip: float = MISSING
    batch_size: int = MISSING
    updates_per_step: int = MISSING
    log_sigma_min: float = MISSING
    log_sigma_max: float = MISSING
    num_couplings: int = MISSING
    coupling_hidden: list[int] = MISSING
    scale_hidden: list[int] = MISSING
    shift_hidden: list[int] = MISSING
    num_shift_heads: int = MISSING
    reward_shifting: bool = MISSING
    dropout: float = MISSING
    layer_norm: bool = MISSING
    coupling_bias: str = MISSING
    q_dropout: str = MISSING
    normalize_obs: bool = MISSING
    n_step: int = MISSING
    capture: str = MISSING
    matmul_precision: str = MISSING
    shift_scale: str = MISSING
    head_norm: str = MISSING
    alpha_autotune: bool = MISSING
    target_entropy: float = MISSING
    alpha_lr: float = MISSING
    reward_norm: bool = MISSING
    reward_norm_max: float = MISSING
    log_prob_floor: float | None = MISSING
    preset: str = MISSING


@dataclass
class BufferConfig:
    capacity: int = MISSING


@dataclass
class RunnerConfig:
    total_steps: int = MISSING
    warmup_steps: int = MISSING
    eval_interval: int = MISSING
    eval_mode: str = MISSING
    log_interval: int = MISSING
    checkpoint_interval: int = MISSING
    keep_checkpoints: int = MISSING
    save_buffer: bool = MISSING
    save_buffer_max_gib: float = MISSING
    log_dir: str = MISSING
    progress: bool = MISSING
    max_minutes: float = MISSING


@dataclass
class Config:
    task: str = MISSING
    seed: int = MISSING
    device: str = MISSING
    torch_threads: int = MISSING
    env: EnvConfig = field(default_factory=EnvConfig)
    algo: AlgoConfig = field(default_factory=AlgoConfig)
    buffer: BufferConfig = field(default_factory=BufferConfig)
    runner: RunnerConfig = field(default_factory=RunnerConfig)


def task_files(root: Path = ROOT) -> dict[str, Path]:
    """Maps every task id and alias in ``<root>/tasks/*.yaml`` and in the installed env kinds'
    task directories to its file."""
    index: dict[str, Path] = {}
    # The repository's own tasks/ come last, so that a file there overrides a kind's task of the same id.
    paths = [p for d in [*all_task_dirs(), root / "tasks"] for p in sorted(Path(d).glob("*.yaml"))]
    for path in paths:
        env = OmegaConf.load(path).get("env", {})
        for name in [env.get("id"), *env.get("aliases", [])]:
            if name:
                index[name] = path
    return index


def find_task(name: str, root: Path = ROOT) -> Path:
    """The task file for an id or alias, or a ConfigError with the closest known ids."""
    index = task_files(root)
    if name in index:
        return index[name]
    close = difflib.get_close_matches(name, index, n=3, cutoff=0.6)
    hint = f"did you mean {', '.join(close)}? " if close else ""
    raise ConfigError(f"unknown task '{name}'; {hint}known: {', '.join(sorted(index))}")


def _flat_keys(node: Any, prefix: str = "") -> list[str]:
    keys = []
    for key, value in node.items_ex(resolve=False) if isinstance(node, DictConfig) else []:
        path = f"{prefix}{key}"
        keys.append(path)
        if isinstance(value, DictConfig) and path != "env.kwargs":
            keys += _flat_keys(value, path + ".")
    return keys


def _merge(cfg: DictConfig, other: DictConfig | dict, source: str, key: str = "?") -> DictConfig:
    try:
        return OmegaConf.merge(cfg, other)
    except OmegaConfBaseException as err:
        key = getattr(err, "full_key", None) or key
        if key in REMOVED_ALGO_KEYS:
            raise ConfigError(removed_setting(key, source)) from None
        if key == "algo.compile":
            raise ConfigError(
                f"algo.compile (in {source}) was replaced by algo.capture; write algo.capture=compile "
                "for algo.compile=true, or algo.capture=auto (cudagraph on CUDA; on the CPU compile for "
                "long runs)"
            ) from None
        if "Key" in type(err).__name__ or "not in struct" in str(err):
            close = difflib.get_close_matches(key, _flat_keys(cfg), n=3, cutoff=0.5)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise ConfigError(f"unknown key '{key}' in {source}{hint}") from None
        reason = (getattr(err, "msg", None) or str(err) or type(err).__name__).splitlines()[0]
        raise ConfigError(f"bad value for '{key}' in {source}: {reason}") from None


def load_config(task: str, overrides: list[str] | tuple[str, ...] = (), root: Path = ROOT) -> DictConfig:
    """Builds the run's config: ``config/meow.yaml`` < ``tasks/<task>.yaml`` < the preset that
    ``algo.preset`` names (``config/presets/``) < ``overrides``.

    Args:
        task: a task id or alias (see ``tasks/``).
        overrides: ``key=value`` strings, e.g. ``algo.lr=3e-4``.
        root: repository root holding ``config/`` and ``tasks/``.

    Raises:
        ConfigError: unknown task or key, a value of the wrong type, or one that breaks a rule.
    """
    defaults_path = root / "config" / "meow.yaml"
    if not defaults_path.is_file():
        raise ConfigError(f"defaults file {defaults_path} not found; set MEOW_ROOT to the repository root")
    cfg = OmegaConf.structured(Config)
    cfg = _merge(cfg, OmegaConf.load(defaults_path), str(defaults_path))
    task_path = find_task(task, root)
    cfg = _merge(cfg, OmegaConf.load(task_path), str(task_path))
    cfg.task = task_path.stem
    if _kind(cfg).aliases_are_ids:
        # Gymnasium's v4 and v5 ids are different environments; other kinds' aliases (Isaac
        # Lab's 2.x ids) name the same environment as the task's id.
        cfg.env.id = task
    return _finish(cfg, overrides, root)


def presets(root: Path = ROOT) -> list[str]:
    """The values ``algo.preset`` takes: ``none`` and the names of ``config/presets/*.yaml``."""
    return ["none", *sorted(p.stem for p in (root / "config" / "presets").glob("*.yaml"))]


def _apply_preset(cfg: DictConfig, ours: list[str], root: Path) -> DictConfig:
    """``cfg`` with ``config/presets/<algo.preset>.yaml`` merged in, and ``ours`` applied again after
    it: defaults < task file < preset < command line. The preset's ``tasks.<task id>`` section, if
    any, is merged only into the config of the task with that id or alias (where a task file departs
    from the preset)."""
    name = cfg.algo.preset
    if name == "none":
        return cfg
    _check(name in presets(root), "algo.preset", name, " | ".join(presets(root)))
    path = root / "config" / "presets" / f"{name}.yaml"
    preset = OmegaConf.load(path)
    per_task = preset.pop("tasks", None) or {}  # the preset's values for one task, by id
    cfg = _merge(cfg, preset, str(path))
    names = {cfg.env.id, *cfg.env.aliases}
    for task, values in per_task.items():
        if task in names:
            cfg = _merge(cfg, values, f"{path} (tasks.{task})")
    return _apply_overrides(cfg, ours, frozen=("task", "env.id", "env.kind"))


def _finish(cfg: DictConfig, overrides: list[str] | tuple[str, ...], root: Path = ROOT) -> DictConfig:
    """Applies overrides (the env kind's own go to ``env.sim_overrides``) and the preset they
    choose, completes and validates."""
    kind = _kind(cfg)
    ours, native = kind.split_overrides(overrides)
    cfg = _apply_overrides(cfg, ours, frozen=("task", "env.id", "env.kind"))
    cfg = _apply_preset(cfg, ours, root)
    cfg.env.sim_overrides = [*cfg.env.sim_overrides, *native]
    kind.configure(cfg)
    _resolve_auto_device(cfg)
    validate(cfg)
    return cfg


def _kind(cfg: DictConfig):
    try:
        return get_kind(cfg.env.kind)
    except EnvKindError as err:
        raise ConfigError(str(err)) from None


def _apply_overrides(
    cfg: DictConfig, overrides: list[str] | tuple[str, ...], frozen: tuple[str, ...]
) -> DictConfig:
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override '{item}' is not of the form key=value")
        key = item.split("=", 1)[0].strip()
        if key in frozen:
            raise ConfigError(f"{key} cannot be overridden here; choose the task with --task")
        try:
            parsed = OmegaConf.from_dotlist([item])
        except Exception as err:  # YAML's scanner and parser errors span several lines
            reason = " ".join(str(err).split())
            raise ConfigError(
                f"override '{item}' is not a valid value: {reason[:120]}; valid: key=value with a YAML "
                "value, e.g. algo.coupling_hidden=[64,64]"
            ) from None
        cfg = _merge(cfg, parsed, f"override '{item}'", key)
    return cfg


def config_from_checkpoint(saved: dict, overrides: list[str] | tuple[str, ...] = ()) -> DictConfig:
    """Rebuilds a run's config from the copy stored in its checkpoint, then applies ``overrides``."""
    saved = _upgrade(saved)
    cfg = _merge(OmegaConf.structured(Config), saved, "the checkpoint's config")
    return _finish(cfg, overrides)


def env_steps(iterations: int, num_envs: int, world_size: int = 1) -> int:
    """Env steps in ``iterations`` vectorized steps of ``num_envs`` envs on each of ``world_size`` ranks.

    The one rule by which an iteration count becomes ``runner.total_steps`` (or another step
    count): ``scripts/train.py --max_iterations``, and rl-games' ``max_epochs`` and
    ``save_frequency`` (one rl-games epoch of MEow is one vectorized step).
    """
    return int(iterations) * int(num_envs) * int(world_size)


CUDA_ONLY_ALGO = {
    "capture": (
        "cudagraph",
        "",
        "auto",
        "auto | none | compile (auto picks cudagraph on CUDA; on the CPU compile for long runs, else none)",
    ),
    "matmul_precision": ("tf32", " (TF32 runs on its tensor cores)", "float32", "float32"),
}
"""``algo`` settings with a value that needs CUDA: key -> (that value, why, what evaluating
elsewhere uses instead, what is valid on the CPU). :func:`validate` refuses them off CUDA;
:func:`evaluation_overrides` replaces them there."""


def evaluation_overrides(saved: dict, device: str) -> list[str]:
    """Overrides that let a checkpoint's config run on ``device`` without training it.

    How the update ran is the training machine's business: a run trained with a CUDA-only
    setting (:data:`CUDA_ONLY_ALGO`) on a GPU is evaluated on a CPU with eager execution and
    float32 products. (Resuming training on another device keeps the one-line errors: there the
    user says what the update should do.)
    """
    if torch.device(device).type == "cuda":
        return []
    algo = saved.get("algo", {})
    return [
        f"algo.{key}={instead}"
        for key, (cuda_only, _, instead, _) in CUDA_ONLY_ALGO.items()
        if algo.get(key) == cuda_only
    ]


# Settings added since the first checkpoint format, with the value that keeps an older run's behaviour.
_ADDED_RUNNER_KEYS = {
    "keep_checkpoints": 0,
    "save_buffer_max_gib": 4.0,
    "eval_mode": "deterministic",
    "max_minutes": 0.0,
}
_ADDED_ALGO_KEYS = {
    "coupling_bias": "zeros",
    "q_dropout": "shared",
    "matmul_precision": "float32",
    "shift_scale": "alpha",
    "head_norm": "none",
    "alpha_autotune": False,
    "target_entropy": -1.0,
    "alpha_lr": 3e-4,
    "reward_norm": False,
    "reward_norm_max": 5.0,
    "log_prob_floor": None,
    "preset": "none",
}

REMOVED_IN = "195055e"
"""The last commit with the divergence remedies the screens rejected (docs/ALGORITHM.md section 11)."""

REMOVED_ALGO_KEYS: dict[str, tuple[Any, ...]] = {
    "algo.coupling_shift_bound": (0.0,),
    "algo.weight_decay": (0.0,),
    "algo.target_bound": (False,),
    "algo.log_prob_floor_scope": ("value",),
}
"""Settings removed after :data:`REMOVED_IN`, with the values that behave as today's code does:
a saved config holding one of those loses the key; any other value (the remedy turned on) is a
one-line error. ``log_prob_floor_scope: fit`` also behaves as today's code where no floor is set."""


def removed_setting(key: str, source: str, value: Any = None) -> str:
    """The one-line error for a setting of :data:`REMOVED_ALGO_KEYS` in ``source``."""
    what = f"{key}={value}" if value is not None else key
    return (
        f"{what} (in {source}) was removed: the screens rejected it (docs/ALGORITHM.md section 11); "
        f"valid: no {key} (commit {REMOVED_IN} still has it)"
    )


def _upgrade(saved: dict) -> dict:
    """A saved config in today's schema: renamed keys moved, added keys given their defaults."""
    saved = {k: (dict(v) if isinstance(v, dict) else v) for k, v in saved.items()}
    env = saved.get("env", {})
    if "isaaclab_overrides" in env:
        env["sim_overrides"] = env.pop("isaaclab_overrides")
    runner = saved.get("runner", {})
    for key, value in _ADDED_RUNNER_KEYS.items():
        runner.setdefault(key, value)
    algo = saved.get("algo", {})
    for key, value in _ADDED_ALGO_KEYS.items():
        algo.setdefault(key, value)
    for dotted, inert in REMOVED_ALGO_KEYS.items():
        key = dotted.removeprefix("algo.")
        if key not in algo:
            continue
        value = algo.pop(key)
        unfloored = key == "log_prob_floor_scope" and algo.get("log_prob_floor") is None
        if value not in inert and not unfloored:
            raise ConfigError(removed_setting(dotted, "the checkpoint's config", value))
    if "compile" in algo:  # algo.capture replaced it
        algo.setdefault("capture", "compile" if algo.pop("compile") else "auto")
        algo.setdefault("n_step", 1)
    return saved


def _check(ok: bool, key: str, value: Any, valid: str) -> None:
    if not ok:
        raise ConfigError(invalid(key, value, valid))


CHOICES: dict[str, tuple[str, ...]] = {
    "algo.capture": CAPTURE_MODES,
    "algo.matmul_precision": MATMUL_PRECISIONS,
    "algo.coupling_bias": COUPLING_BIASES,
    "algo.q_dropout": Q_DROPOUTS,
    "algo.shift_scale": SHIFT_SCALES,
    "algo.head_norm": HIDDEN_NORMS,
    "runner.eval_mode": EVAL_MODES,
}
"""The settings with a fixed set of values, each set declared once beside the code that acts on it
(and checked there too, :func:`meow.utils.checks.check_choice`)."""


def _float_keys(schema: type = Config, prefix: str = "") -> list[str]:
    """Every ``float`` (or ``float | None``) setting of the schema, as a dotted key (``algo.alpha``)."""
    keys = []
    for name, hint in get_type_hints(schema).items():
        if is_dataclass(hint):
            keys += _float_keys(hint, f"{prefix}{name}.")
        elif hint in (float, float | None):
            keys.append(f"{prefix}{name}")
    return keys


def validate(cfg: DictConfig) -> None:
    """Checks every rule a setting must obey; raises ConfigError naming the first broken one."""
    missing = sorted(OmegaConf.missing_keys(cfg))
    if missing:
        raise ConfigError(f"settings without a value: {', '.join(missing)}")
    # an infinite or NaN number passes most bounds below (inf > 0) and fails much later, in training
    for key in _float_keys():
        value = OmegaConf.select(cfg, key)
        _check(value is None or math.isfinite(value), key, value, "a finite number")
    a, r, e = cfg.algo, cfg.runner, cfg.env
    kind = _kind(cfg)  # an unknown env.kind is a ConfigError here
    device = check_device(cfg.device)
    _check(cfg.seed >= 0, "seed", cfg.seed, "an integer >= 0")
    _check(e.num_envs >= 1, "env.num_envs", e.num_envs, "an integer >= 1")
    _check(e.eval_envs >= 0, "env.eval_envs", e.eval_envs, "an integer >= 0 (0 disables evaluation)")
    if not kind.eval_envs_allowed:
        _check(
            e.eval_envs == 0,
            "env.eval_envs",
            e.eval_envs,
            f"0 for {e.kind} tasks (one simulation per process; evaluate with scripts/play.py)",
        )
    if e.sim_overrides and not kind.takes_sim_overrides:
        raise ConfigError(
            f"override '{e.sim_overrides[0]}' is invalid for {e.id}, a {e.kind} task; valid: MEow's "
            "settings (config/meow.yaml), e.g. env.num_envs, env.eval_envs, env.kwargs.*"
        )
    for key in ("obs_dim", "action_dim"):
        _check(e[key] >= 0, f"env.{key}", e[key], "an integer >= 0 (0: taken from the environment)")
    _check(a.lr > 0, "algo.lr", a.lr, "a number > 0")
    _check(0 <= a.gamma < 1, "algo.gamma", a.gamma, "a number in [0, 1)")
    _check(0 < a.tau <= 1, "algo.tau", a.tau, "a number in (0, 1]")
    _check(a.alpha > 0, "algo.alpha", a.alpha, "a number > 0")
    _check(a.grad_clip > 0, "algo.grad_clip", a.grad_clip, "a number > 0")
    _check(a.batch_size >= 1, "algo.batch_size", a.batch_size, "an integer >= 1")
    _check(a.updates_per_step >= 1, "algo.updates_per_step", a.updates_per_step, "an integer >= 1")
    _check(
        a.log_sigma_min < a.log_sigma_max,
        "algo.log_sigma_min",
        a.log_sigma_min,
        f"a number below algo.log_sigma_max={a.log_sigma_max}",
    )
    _check(a.num_couplings >= 1, "algo.num_couplings", a.num_couplings, "an integer >= 1")
    for key in ("coupling_hidden", "scale_hidden", "shift_hidden"):
        sizes = list(a[key])
        _check(all(s >= 1 for s in sizes), f"algo.{key}", sizes, "a list of positive layer sizes")
    _check(a.num_shift_heads >= 1, "algo.num_shift_heads", a.num_shift_heads, "an integer >= 1")
    for key, choices in CHOICES.items():
        check_choice(key, OmegaConf.select(cfg, key), choices, ConfigError)
    for key in CUDA_ONLY_ALGO:
        cuda_only, why, _, valid = CUDA_ONLY_ALGO[key]
        if a[key] == cuda_only and device.type != "cuda":
            raise ConfigError(
                f"algo.{key}={cuda_only} needs CUDA{why}, but device={cfg.device}; valid on the CPU: {valid}"
            )
    _check(0 <= a.dropout < 1, "algo.dropout", a.dropout, "a number in [0, 1)")
    _check(a.alpha_lr > 0, "algo.alpha_lr", a.alpha_lr, "a number > 0")
    _check(a.reward_norm_max > 0, "algo.reward_norm_max", a.reward_norm_max, "a number > 0 (SimbaV2's: 5)")
    _check(cfg.buffer.capacity >= 1, "buffer.capacity", cfg.buffer.capacity, "an integer >= 1")
    _check(
        a.batch_size <= cfg.buffer.capacity,
        "algo.batch_size",
        a.batch_size,
        f"at most buffer.capacity={cfg.buffer.capacity}",
    )
    _check(r.total_steps >= 1, "runner.total_steps", r.total_steps, "an integer >= 1")
    _check(r.warmup_steps >= 0, "runner.warmup_steps", r.warmup_steps, "an integer >= 0")
    for key in ("eval_interval", "log_interval", "checkpoint_interval"):
        _check(r[key] >= 1, f"runner.{key}", r[key], "an integer >= 1 (env steps)")
    _check(
        r.max_minutes >= 0,
        "runner.max_minutes",
        r.max_minutes,
        "a number of minutes >= 0 (0: no wall-clock budget)",
    )
    _check(
        r.keep_checkpoints >= 0,
        "runner.keep_checkpoints",
        r.keep_checkpoints,
        "an integer >= 0 (0 keeps all)",
    )
    _check(
        r.save_buffer_max_gib >= 0,
        "runner.save_buffer_max_gib",
        r.save_buffer_max_gib,
        "a number >= 0 (GiB; 0 never saves the buffer)",
    )
    _check(bool(str(r.log_dir).strip()), "runner.log_dir", repr(r.log_dir), "a directory path")
    _check(cfg.torch_threads >= 0, "torch_threads", cfg.torch_threads, "an integer >= 0 (0 keeps torch's)")
    per_env = -(-cfg.buffer.capacity // e.num_envs)
    _check(
        1 <= a.n_step <= per_env,
        "algo.n_step",
        a.n_step,
        "an integer >= 1 (1: the paper's one-step target) and at most the replay's steps per env, "
        f"buffer.capacity / env.num_envs = {per_env}",
    )


def _resolve_auto_device(cfg: DictConfig) -> None:
    """``device=auto``: the first GPU when this machine has one, else the CPU."""
    if cfg.device == "auto":
        cfg.device = "cuda:0" if torch.cuda.is_available() else "cpu"


def check_device(device: str) -> torch.device:
    """Parses ``device`` and checks that this machine has it."""
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise ConfigError(f"device={device} is invalid; valid: auto, cpu, cuda, cuda:N") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"device={device} is invalid: no CUDA device is visible; valid here: cpu")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ConfigError(
                f"device={device} is invalid; valid: cuda:0..cuda:{torch.cuda.device_count() - 1}"
            )
    elif dev.type != "cpu":
        raise ConfigError(f"device={device} is invalid; valid: auto, cpu, cuda, cuda:N")
    return dev

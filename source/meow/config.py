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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from omegaconf import MISSING, DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from meow.algorithms.meow import CAPTURE_MODES, MATMUL_PRECISIONS
from meow.envs.registry import EnvKindError, all_task_dirs, get_kind, kind_names
from meow.modules.flow_policy import COUPLING_BIASES, Q_DROPOUTS
from meow.runners.evaluation import EVAL_MODES

ROOT = Path(os.environ.get("MEOW_ROOT", Path(__file__).resolve().parents[2]))
"""Repository root holding ``config/`` and ``tasks/`` (override with ``MEOW_ROOT``)."""


# Task files scale Isaac settings with the env count, e.g. ``capacity: ${meow.mul:15000,${env.num_envs}}``.
# omegaconf 2.4 renamed register_new_resolver to register_resolver (which in 2.3 is the legacy API).
_register = (
    OmegaConf.register_resolver
    if "replace" in inspect.signature(OmegaConf.register_resolver).parameters
    else OmegaConf.register_new_resolver
)
_register("meow.mul", lambda a, b: int(a) * int(b), replace=True)
_register("meow.floordiv", lambda a, b: max(1, int(a) // int(b)), replace=True)
_register("meow.min", lambda a, b: min(int(a), int(b)), replace=True)

PAPER_MAX_ENVS = 512
"""The largest env count the paper published Isaac settings for (Allegro; the others used 128)."""
LARGE_ENV_SAMPLES_PER_ENV_STEP = 8
"""Samples drawn per env step above :data:`PAPER_MAX_ENVS`: the paper's replay ratio at 128 envs."""
LARGE_ENV_MAX_BATCH = 16384
"""Largest update batch above :data:`PAPER_MAX_ENVS`; more samples per step become more updates."""
LARGE_ENV_REPLAY_BYTES = 8 * 2**30
"""Replay memory above :data:`PAPER_MAX_ENVS`: fits a 24 GB GPU beside the simulation."""


def isaac_learner_settings(num_envs: int, obs_dim: int, action_dim: int) -> dict[str, int]:
    """``batch_size``, ``updates_per_step`` and replay ``capacity`` of the Isaac tasks for an env count.

    Up to :data:`PAPER_MAX_ENVS` envs, the paper's rule: batch ``131072 / num_envs`` (capped at
    4096 for small env counts, which the paper did not use), one update per vectorized step,
    15000 transitions per env. Above it that rule starves the learner (batch 32 at 4096 envs:
    0.008 samples per env step), so the learner draws :data:`LARGE_ENV_SAMPLES_PER_ENV_STEP`
    samples per env step (the paper's ratio at 128 envs), in updates of at most
    :data:`LARGE_ENV_MAX_BATCH`, from a replay of at most 15000 transitions per env and
    :data:`LARGE_ENV_REPLAY_BYTES` in all. docs/ISAACLAB.md compares these with other methods.
    """
    from meow.storage import ReplayBuffer

    n = max(1, int(num_envs))
    if n <= PAPER_MAX_ENVS:
        return {"batch_size": max(1, min(131072 // n, 4096)), "updates_per_step": 1, "capacity": 15000 * n}
    samples = LARGE_ENV_SAMPLES_PER_ENV_STEP * n
    updates = -(-samples // LARGE_ENV_MAX_BATCH)
    # an undeclared observation size (0) is budgeted as a large one
    per_transition = ReplayBuffer.nbytes_for(1, int(obs_dim) or 256, int(action_dim) or 32)
    capacity = min(15000 * n, LARGE_ENV_REPLAY_BYTES // per_transition)
    return {"batch_size": samples // updates, "updates_per_step": updates, "capacity": capacity}


_register("meow.isaac_batch", lambda n: isaac_learner_settings(n, 0, 0)["batch_size"], replace=True)
_register("meow.isaac_updates", lambda n: isaac_learner_settings(n, 0, 0)["updates_per_step"], replace=True)
_register("meow.isaac_capacity", lambda n, o, a: isaac_learner_settings(n, o, a)["capacity"], replace=True)


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
        if key == "algo.compile":
            raise ConfigError(
                f"algo.compile (in {source}) was replaced by algo.capture; write algo.capture=compile "
                "for algo.compile=true, or algo.capture=auto (cudagraph on CUDA, none on the CPU)"
            ) from None
        if "Key" in type(err).__name__ or "not in struct" in str(err):
            close = difflib.get_close_matches(key, _flat_keys(cfg), n=3, cutoff=0.5)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise ConfigError(f"unknown key '{key}' in {source}{hint}") from None
        reason = (getattr(err, "msg", None) or str(err) or type(err).__name__).splitlines()[0]
        raise ConfigError(f"bad value for '{key}' in {source}: {reason}") from None


def load_config(task: str, overrides: list[str] | tuple[str, ...] = (), root: Path = ROOT) -> DictConfig:
    """Builds the run's config: ``config/meow.yaml`` < ``tasks/<task>.yaml`` < ``overrides``.

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
    return _finish(cfg, overrides)


def _finish(cfg: DictConfig, overrides: list[str] | tuple[str, ...]) -> DictConfig:
    """Applies overrides (the env kind's own go to ``env.sim_overrides``), completes and validates."""
    kind = _kind(cfg)
    ours, native = kind.split_overrides(overrides)
    cfg = _apply_overrides(cfg, ours, frozen=("task", "env.id", "env.kind"))
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


CUDA_ONLY_ALGO = {
    "capture": (
        "cudagraph",
        "",
        "auto",
        "auto | none | compile (auto picks cudagraph on CUDA, none on the CPU)",
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
_ADDED_ALGO_KEYS = {"coupling_bias": "zeros", "q_dropout": "shared", "matmul_precision": "float32"}


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
    if "compile" in algo:  # algo.capture replaced it
        algo.setdefault("capture", "compile" if algo.pop("compile") else "auto")
        algo.setdefault("n_step", 1)
    return saved


def _check(ok: bool, key: str, value: Any, valid: str) -> None:
    if not ok:
        raise ConfigError(f"{key}={value} is invalid; valid: {valid}")


def validate(cfg: DictConfig) -> None:
    """Checks every rule a setting must obey; raises ConfigError naming the first broken one."""
    missing = sorted(OmegaConf.missing_keys(cfg))
    if missing:
        raise ConfigError(f"settings without a value: {', '.join(missing)}")
    a, r, e = cfg.algo, cfg.runner, cfg.env
    _check(e.kind in kind_names(), "env.kind", e.kind, " | ".join(kind_names()))
    kind = _kind(cfg)
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
    _check(a.n_step >= 1, "algo.n_step", a.n_step, "an integer >= 1 (1: the paper's one-step target)")
    _check(a.capture in CAPTURE_MODES, "algo.capture", a.capture, " | ".join(CAPTURE_MODES))
    _check(
        a.matmul_precision in MATMUL_PRECISIONS,
        "algo.matmul_precision",
        a.matmul_precision,
        " | ".join(MATMUL_PRECISIONS),
    )
    _check(0 <= a.dropout < 1, "algo.dropout", a.dropout, "a number in [0, 1)")
    _check(
        a.coupling_bias in COUPLING_BIASES, "algo.coupling_bias", a.coupling_bias, " | ".join(COUPLING_BIASES)
    )
    _check(a.q_dropout in Q_DROPOUTS, "algo.q_dropout", a.q_dropout, " | ".join(Q_DROPOUTS))
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
    _check(r.eval_mode in EVAL_MODES, "runner.eval_mode", r.eval_mode, " | ".join(EVAL_MODES))
    _check(
        r.max_minutes >= 0 and math.isfinite(r.max_minutes),
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
        a.n_step <= per_env,
        "algo.n_step",
        a.n_step,
        f"at most the replay's steps per env, buffer.capacity / env.num_envs = {per_env}",
    )
    device = check_device(cfg.device)
    for key, (cuda_only, why, _, valid) in CUDA_ONLY_ALGO.items():
        if a[key] == cuda_only and device.type != "cuda":
            raise ConfigError(
                f"algo.{key}={cuda_only} needs CUDA{why}, but device={cfg.device}; valid on the CPU: {valid}"
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

"""Baselines from the real libraries, started by ``scripts/train.py --algo sac|ppo``.

- ``--algo sac`` on Gymnasium tasks: Stable-Baselines3's SAC (its defaults: [256, 256] networks,
  lr 3e-4, buffer 1e6, learned temperature), logging MEow's metric names live.
- packages add the baselines of their env kinds through the ``meow.baselines`` entry points
  (:data:`ENTRY_POINT_GROUP`); the Isaac Lab extension runs rl-games' SAC and rsl_rl's PPO
  (``meow_isaac.baselines``).

Baselines are kept apart from the env kinds (:mod:`meow.envs`): a kind only makes environments,
and this module needs nothing of the env registry, so neither imports the other.

Baselines that write their library's own log layout are read through :func:`library_layout`:
``scripts/compare.py`` and ``tools/experiments.py`` see the return and throughput those
libraries log live under MEow's names (``charts/episodic_return``, ``charts/SPS``, x axis in env
steps), so every run reads alike, a stopped one included.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any


class BaselineError(ValueError):
    """A baseline that does not exist for this task, or a library run that failed."""


ENTRY_POINT_GROUP = "meow.baselines"
"""Python entry point group of the baselines packages add: the entry's name is an ``env.kind``,
its object a mapping ``{--algo value: trainer}`` (:data:`Trainer`), e.g.::

    [project.entry-points."meow.baselines"]
    mysim = "mysim_meow.baselines:BASELINES"
"""

Trainer = Callable[[Any, int | None, float | None], Path]
"""``trainer(cfg, max_iterations, deadline)``: trains on the task of ``cfg`` and returns the run
directory. ``max_iterations``: ``--max_iterations`` as given (None: ``runner.total_steps`` decides),
for libraries that count iterations of their own; ``deadline``: ``time.monotonic()`` at which
training ends as if it had reached its steps (``runner.max_minutes``)."""


LIBRARY_TAGS = {
    "rsl_rl": {"Train/mean_reward": "charts/episodic_return", "Perf/total_fps": "charts/SPS"},
    "rl_games": {
        "rewards/step": "charts/episodic_return",
        "performance/step_inference_rl_update_fps": "charts/SPS",
    },
}
"""The scalars each library writes live (its own names) that mean MEow's training return and
throughput."""


def _setting(path: Path, key: str) -> int | None:
    """The first integer ``key: N`` of a YAML file Isaac Lab dumped (read as text: its dumps hold
    Python-specific tags that a safe YAML loader rejects)."""
    try:
        text = path.read_text()
    except OSError:
        return None
    match = re.search(rf"^\s*{re.escape(key)}:\s*(\d+)\s*$", text, flags=re.MULTILINE)
    return int(match.group(1)) if match else None


def library_layout(run: Path) -> tuple[dict[str, str], int | None] | None:
    """For a folder of TensorBoard files that rsl_rl or rl-games wrote under Isaac Lab's
    ``isaaclab train``: ``({library tag: MEow tag}, env steps per logged step)`` (None: its steps
    are env steps already); None for any other run.

    rsl_rl logs per iteration; iteration ``i`` ends at ``(i + 1) x num_steps_per_env x num_envs``
    env steps (both read from the ``params/`` Isaac Lab saves beside the logs). rl-games logs
    ``summaries/`` with env steps as x. The libraries write these while they train, so a run
    stopped at any point has its curve.
    """
    if (run / "params" / "agent.yaml").is_file():
        per_env = _setting(run / "params" / "agent.yaml", "num_steps_per_env")
        envs = _setting(run / "params" / "env.yaml", "num_envs")
        if per_env and envs:
            return LIBRARY_TAGS["rsl_rl"], per_env * envs
    if run.name == "summaries" and (run.parent / "params" / "agent.yaml").is_file():
        return LIBRARY_TAGS["rl_games"], None
    return None


# ------------------------------------------------------------------ Gymnasium: SB3 SAC
SAC_FORMAT = "meow-sb3-sac/1"
"""``format`` of an SB3 SAC checkpoint (``model_<step>.pt`` of a ``--algo sac`` run)."""

_SAC_BUFFER_FIELDS = ("observations", "next_observations", "actions", "rewards", "dones", "timeouts")


class BaselineInterrupted(Exception):
    """SIGINT/SIGTERM stopped a baseline run after it saved a checkpoint (``path``, ``step``)."""

    def __init__(self, path: Path, step: int) -> None:
        super().__init__(f"interrupted at env step {step:,}; saved {path}")
        self.path, self.step = path, step


def train_sb3_sac(cfg, run_dir: Path, resume: dict | None = None, deadline: float | None = None) -> Path:
    """SB3 SAC on ``cfg.env.id`` up to ``runner.total_steps`` env steps; returns the final checkpoint.

    SB3's defaults ([256, 256] networks, lr 3e-4, batch 256, learned temperature), a warm-up of
    ``runner.warmup_steps`` random steps and a replay buffer of ``min(buffer.capacity,
    runner.total_steps)`` transitions (the same samples as SB3's 1e6 for runs up to that long).
    Logged live under MEow's names, env steps as x: ``charts/episodic_return``, ``charts/SPS``
    every ``runner.log_interval``; every ``runner.eval_interval``, ``env.eval_envs`` episodes of
    the deterministic policy (``eval/return_mean``, ``eval/return_std``) and of the sampled one
    (``eval/stochastic_return_mean``, ``eval/stochastic_return_std``), as ``runner.eval_mode``
    says when the config has that key, both otherwise.

    Every ``runner.checkpoint_interval`` env steps and at the end it writes ``model_<step>.pt``
    (networks, optimizers, temperature, counters, RNG: data only, read with ``weights_only``) and
    ``replay_buffer.pt``, each atomically; SIGINT/SIGTERM save one at the current step and raise
    :class:`BaselineInterrupted`. ``resume``: a checkpoint dict (:func:`read_sac_checkpoint`) to
    continue from; the step count and the curves go on, and MuJoCo starts fresh episodes. The
    final model is also written as SB3's own ``model.zip`` (``SAC.load``). ``deadline``:
    ``time.monotonic()`` after which training ends at the next env step as if it had reached
    ``runner.total_steps`` (the final checkpoint, ``model.zip``; no exception).
    """
    import signal

    import gymnasium as gym
    import numpy as np
    import torch
    from omegaconf import OmegaConf
    from stable_baselines3 import SAC
    from stable_baselines3.common.callbacks import BaseCallback
    from torch.utils.tensorboard import SummaryWriter

    from meow.runners.checkpoint import prune_checkpoints
    from meow.utils.io import atomic_torch_save
    from meow.utils.seeding import get_rng_state, set_rng_state

    r = cfg.runner
    if cfg.torch_threads > 0:
        torch.set_num_threads(cfg.torch_threads)
    modes = _sac_eval_modes(cfg)
    run_dir.mkdir(parents=True, exist_ok=True)
    OmegaConf.save(cfg, run_dir / "config.yaml")
    env = gym.wrappers.RecordEpisodeStatistics(gym.make(cfg.env.id, **cfg.env.kwargs))
    eval_env = gym.make(cfg.env.id, **cfg.env.kwargs) if cfg.env.eval_envs > 0 else None
    torch.manual_seed(cfg.seed)
    model = SAC(
        "MlpPolicy",
        env,
        buffer_size=max(1, min(cfg.buffer.capacity, r.total_steps)),
        learning_starts=r.warmup_steps,
        seed=cfg.seed,
        device=cfg.device,
        verbose=0,
    )
    if resume is not None:
        _load_sac(model, resume, Path(resume["path"]).parent / "replay_buffer.pt", set_rng_state)
        print(f"[meow] resumed {resume['path']} at env step {model.num_timesteps:,}")
    writer = SummaryWriter(str(run_dir))

    def save(step: int) -> Path:
        path = run_dir / f"model_{step}.pt"
        atomic_torch_save(
            {
                "format": SAC_FORMAT,
                "task": cfg.task,
                "env_id": cfg.env.id,
                "config": OmegaConf.to_container(cfg, resolve=True),
                "global_step": step,
                "params": model.get_parameters(),
                "log_ent_coef": getattr(model, "log_ent_coef", None),
                "n_updates": model._n_updates,
                "episode_num": model._episode_num,
                "rng": get_rng_state(),
            },
            path,
        )
        buffer = model.replay_buffer
        filled = buffer.buffer_size if buffer.full else buffer.pos
        fields = {k: torch.from_numpy(getattr(buffer, k)[:filled]) for k in _SAC_BUFFER_FIELDS}
        atomic_torch_save(
            {"global_step": step, "pos": buffer.pos, "full": buffer.full, **fields},
            run_dir / "replay_buffer.pt",
        )
        prune_checkpoints(run_dir, r.keep_checkpoints)
        return path

    def evaluate(step: int, deterministic: bool) -> list[float]:
        returns = []
        index = step // r.eval_interval  # the same seeds whether or not the run was resumed
        base = cfg.seed + (10_000 if deterministic else 20_000) + index * 1000
        # Sampled actions draw from a generator of their own: evaluation leaves training's stream alone.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(base)
            for k in range(cfg.env.eval_envs):
                obs, _ = eval_env.reset(seed=base + k)
                total, done = 0.0, False
                while not done:
                    action, _ = model.predict(obs, deterministic=deterministic)
                    obs, reward, terminated, truncated, _ = eval_env.step(action)
                    total, done = total + float(reward), terminated or truncated
                returns.append(total)
        return returns

    stop = {"signal": None}
    budget = {"spent": False}

    def request_stop(signum, frame) -> None:
        stop["signal"] = signum  # acted on at the next env step: no update is cut in half

    class Metrics(BaseCallback):
        """Logs MEow's names, evaluates, writes checkpoints; stops the run on a signal."""

        def _on_training_start(self) -> None:
            self.t, self.steps, self.returns = time.perf_counter(), self.num_timesteps, []

        def _on_step(self) -> bool:
            step = self.num_timesteps
            for info in self.locals.get("infos", []):
                if "episode" in info:
                    self.returns.append(float(info["episode"]["r"]))
            if step % r.log_interval == 0:
                now = time.perf_counter()
                writer.add_scalar("charts/SPS", (step - self.steps) / max(now - self.t, 1e-9), step)
                self.t, self.steps = now, step
                if self.returns:
                    writer.add_scalar("charts/episodic_return", float(np.mean(self.returns)), step)
                    self.returns.clear()
            if eval_env is not None and step % r.eval_interval == 0:
                for deterministic, name in ((True, "return"), (False, "stochastic_return")):
                    if ("deterministic" if deterministic else "stochastic") in modes:
                        returns = evaluate(step, deterministic)
                        writer.add_scalar(f"eval/{name}_mean", float(np.mean(returns)), step)
                        writer.add_scalar(f"eval/{name}_std", float(np.std(returns)), step)
                writer.flush()
            if step % r.checkpoint_interval == 0 and step < r.total_steps:
                writer.flush()
                save(step)
            if deadline is not None and time.monotonic() >= deadline:
                budget["spent"] = True
                return False
            return stop["signal"] is None

    previous = {s: signal.signal(s, request_stop) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        remaining = r.total_steps - model.num_timesteps
        if remaining > 0:
            model.learn(total_timesteps=remaining, callback=Metrics(), reset_num_timesteps=resume is None)
        for s in previous:  # a second signal must not cut the last checkpoint short
            signal.signal(s, signal.SIG_IGN)
        writer.close()
        path = save(model.num_timesteps)
        if stop["signal"] is not None and model.num_timesteps < r.total_steps:
            raise BaselineInterrupted(path, model.num_timesteps)
        model.save(str(run_dir / "model.zip"))
        if budget["spent"]:
            print(
                f"[meow] wall-clock budget spent (runner.max_minutes={r.max_minutes:g}): SAC stopped at "
                f"env step {model.num_timesteps:,} of {r.total_steps:,}"
            )
        return path
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        env.close()
        if eval_env is not None:
            eval_env.close()


def _sac_eval_modes(cfg) -> set[str]:
    """The policies SAC evaluates: ``runner.eval_mode`` where the config has it, else both."""
    mode = cfg.runner.get("eval_mode", "both")
    return {"deterministic", "stochastic"} if mode == "both" else {mode}


def read_sac_checkpoint(data: dict, path: Path) -> dict:
    """``data`` (a loaded ``model_<step>.pt``) checked as an SB3 SAC checkpoint, with ``path`` added."""
    if not isinstance(data, dict) or data.get("format") != SAC_FORMAT:
        raise BaselineError(f"{path} is not an SB3 SAC checkpoint (expected format '{SAC_FORMAT}')")
    return {**data, "path": str(path)}


def _load_sac(model, ckpt: dict, buffer_path: Path, set_rng_state) -> None:
    """Restores a SAC checkpoint into ``model``, and the replay buffer saved with it when it matches."""
    import torch

    from meow.runners.checkpoint import CheckpointError, safe_load

    src = ckpt["path"]
    try:
        model.set_parameters(ckpt["params"], exact_match=True)
    except (RuntimeError, KeyError, ValueError) as err:
        first = str(err).strip().splitlines()[0]
        raise BaselineError(f"{src} holds networks that do not match this SAC run: {first}") from None
    if ckpt["log_ent_coef"] is not None:
        with torch.no_grad():
            model.log_ent_coef.copy_(ckpt["log_ent_coef"])
    model.num_timesteps = ckpt["global_step"]
    model._n_updates, model._episode_num = ckpt["n_updates"], ckpt["episode_num"]
    set_rng_state(ckpt["rng"])
    refill = "it refills from here"
    if not buffer_path.is_file():
        print(f"[meow] no replay buffer saved beside {src}; {refill}")
        return
    try:
        data = safe_load(buffer_path, "cpu")
    except CheckpointError as err:
        print(f"[meow] replay buffer {buffer_path} is damaged ({err}); {refill}")
        return
    if not isinstance(data, dict) or data.get("global_step") != model.num_timesteps:
        step = data.get("global_step") if isinstance(data, dict) else None
        print(f"[meow] {buffer_path} holds env step {step}, not {model.num_timesteps:,}; {refill}")
        return
    buffer = model.replay_buffer
    filled = len(data["observations"])
    if filled > buffer.buffer_size:  # a run resumed with fewer steps than it was started with
        print(f"[meow] {buffer_path} holds {filled:,} transitions, more than this run keeps; {refill}")
        return
    for key in _SAC_BUFFER_FIELDS:
        getattr(buffer, key)[:filled] = data[key].numpy()
    # A buffer larger than the saved one (more total steps than before) fills on after it.
    buffer.full = bool(data["full"]) and filled == buffer.buffer_size
    buffer.pos = int(data["pos"]) if buffer.full else filled


def train_gymnasium_sac(
    cfg, max_iterations: int | None = None, deadline: float | None = None, run_dir=None, resume=None
) -> Path:
    """The core's baseline (:data:`Trainer`): SB3 SAC for ``runner.total_steps`` env steps on one
    environment; returns the run directory (``<log_dir>/sac/<task>/<timestamp>`` unless ``run_dir``).

    ``max_iterations`` is not read: SB3 steps one environment, so ``--max_iterations`` has already
    become ``runner.total_steps`` (:func:`meow.config.env_steps`). ``resume``: a checkpoint from
    :func:`read_sac_checkpoint`.
    """
    if cfg.env.num_envs != 1:
        raise BaselineError(
            f"env.num_envs={cfg.env.num_envs} is invalid for --algo sac on {cfg.env.id}: SB3's SAC steps "
            "one environment; valid: 1"
        )
    if run_dir is None:
        from datetime import datetime

        stamp = datetime.now().strftime("%Y-%m-%d_%H-%M-%S")
        run_dir = Path(cfg.runner.log_dir) / "sac" / cfg.env.id / stamp
    return train_sb3_sac(cfg, Path(run_dir), resume, deadline=deadline).parent


_CORE_BASELINES: dict[str, dict[str, Trainer]] = {"gymnasium": {"sac": train_gymnasium_sac}}
"""The baselines the core itself offers, by env kind."""


def baselines_of(kind: str) -> Mapping[str, Trainer]:
    """``{algo: trainer}`` for tasks of ``env.kind`` ``kind``: the core's, or an installed package's."""
    if kind in _CORE_BASELINES:
        return _CORE_BASELINES[kind]
    found = [ep for ep in entry_points(group=ENTRY_POINT_GROUP) if ep.name == kind]
    if not found:
        return {}
    try:
        return found[0].load()
    except ImportError as err:
        raise BaselineError(
            f"the baselines of env.kind={kind} ({found[0].value}) cannot be imported: {err}"
        ) from None


def offered_baselines() -> list[str]:
    """``"<algo> (<kind> tasks)"`` for every baseline this process can run (a package that fails
    to import adds none)."""
    kinds = sorted({*_CORE_BASELINES, *(ep.name for ep in entry_points(group=ENTRY_POINT_GROUP))})
    offered = []
    for kind in kinds:
        try:
            offered += [f"{algo} ({kind} tasks)" for algo in baselines_of(kind)]
        except BaselineError:
            continue
    return offered


def run_baseline(
    algo: str,
    cfg,
    max_iterations: int | None = None,
    run_dir: Path | None = None,
    resume: dict | None = None,
    deadline: float | None = None,
) -> Path:
    """Trains baseline ``algo`` on the task of ``cfg``; returns its run directory.

    ``cfg.runner.total_steps`` is used as it is (``scripts/train.py`` sets it, from
    ``--max_iterations`` too); ``max_iterations`` is passed on to the trainer (:data:`Trainer`).
    ``run_dir`` (instead of ``<log_dir>/sac/<task>/<timestamp>``) and ``resume`` (a checkpoint
    from :func:`read_sac_checkpoint`) are for SB3 SAC on Gymnasium tasks, the baseline that
    writes checkpoints. ``deadline``: ``time.monotonic()`` at which training ends as if it had
    reached its steps (the wall-clock budget ``runner.max_minutes``).
    """
    trainer = baselines_of(cfg.env.kind).get(algo)
    if trainer is None:
        raise BaselineError(
            f"--algo {algo} is not available for {cfg.env.id} ({cfg.env.kind} task); "
            f"valid: {', '.join(offered_baselines()) or 'none installed'}"
        )
    if trainer is train_gymnasium_sac:
        return train_gymnasium_sac(cfg, max_iterations, deadline, run_dir=run_dir, resume=resume)
    if run_dir is not None or resume is not None:
        raise BaselineError(
            f"--run_dir and --resume are not available for --algo {algo} on {cfg.env.id}; "
            "valid: MEow, or --algo sac on Gymnasium tasks"
        )
    return trainer(cfg, max_iterations, deadline)

"""``--algo sac`` on Gymnasium tasks: Stable-Baselines3's SAC (its defaults: [256, 256] networks,
lr 3e-4, buffer 1e6, learned temperature), logging MEow's metric names live, with checkpoints that
``scripts/train.py --resume`` continues.

Stable-Baselines3 is imported when a run starts, not with this module: ``scripts/train.py`` reads
:data:`SAC_FORMAT` from it to tell a SAC checkpoint given to ``--resume`` (the ``baselines``
extra installs the library).
"""

from __future__ import annotations

import time
from pathlib import Path

from meow_baselines import BaselineError, BaselineInterrupted

SAC_FORMAT = "meow-sb3-sac/1"
"""``format`` of an SB3 SAC checkpoint (``model_<step>.pt`` of a ``--algo sac`` run)."""

_SAC_BUFFER_FIELDS = ("observations", "next_observations", "actions", "rewards", "dones", "timeouts")


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
    """The baseline of Gymnasium tasks (:data:`meow_baselines.registry.Trainer`): SB3 SAC for
    ``runner.total_steps`` env steps on one environment; returns the run directory
    (``<log_dir>/sac/<task>/<timestamp>`` unless ``run_dir``).

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

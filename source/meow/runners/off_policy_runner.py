"""The off-policy training loop: collect, store, update, evaluate, log, checkpoint."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from omegaconf import DictConfig, OmegaConf
from torch import Tensor

from meow.algorithms import MEow
from meow.envs.protocol import StepResult, VecEnv
from meow.modules import build_policy
from meow.runners.checkpoint import (
    BUFFER_FILE,
    FORMAT,
    CheckpointError,
    load_learner_state,
    load_replay_buffer,
    prune_checkpoints,
    run_checkpoints,
    save_replay_buffer,
    write_checkpoint,
)
from meow.runners.evaluation import Episodes, StochasticEvaluation, eval_passes, run_episodes
from meow.runners.progress import Progress
from meow.storage import ReplayBuffer
from meow.utils.seeding import get_rng_state, seed_everything, set_rng_state

if TYPE_CHECKING:
    from meow.distributed import DistContext

__all__ = ["OffPolicyRunner", "StopRequested", "budget_deadline", "build_policy"]


def planned_updates(cfg: DictConfig, steps_per_iteration: int) -> int:
    """Updates a run of ``cfg`` takes from its start: one vectorized step per iteration
    (``steps_per_iteration`` env steps, over all envs and ranks), ``algo.updates_per_step`` after
    each one past the warm-up."""
    r = cfg.runner
    iterations = -(-max(0, r.total_steps - r.warmup_steps) // max(1, steps_per_iteration))
    return iterations * cfg.algo.updates_per_step


def budget_deadline(max_minutes: float, start: float | None = None) -> float | None:
    """``time.monotonic()`` at which ``runner.max_minutes`` counted from ``start`` (default: now)
    is spent; None for no budget (0)."""
    if max_minutes <= 0:
        return None
    return (time.monotonic() if start is None else start) + 60.0 * max_minutes


SATURATED = 0.99
"""``|a|`` from which an action component counts as on the tanh bounds (``policy/saturated``)."""


class StopRequested(KeyboardInterrupt):
    """:meth:`OffPolicyRunner.learn` stopped at an iteration's start because :attr:`stop_requested`
    was set (in a data-parallel run: on some rank, and every rank stops at the same iteration)."""


@dataclass
class _Loop:
    """What :meth:`OffPolicyRunner.learn` carries from one iteration to the next."""

    min_stored: int
    """Transitions stored on the emptiest rank, so that all ranks start updating together."""
    window: Tensor
    """Return sum, length sum and count of the episodes finished since the last log (on the device)."""
    t_window: float
    """``time.perf_counter()`` at the last log."""
    steps_window: int
    """Env steps at the last log."""
    deadline: float | None
    """``time.monotonic()`` at which the wall-clock budget is spent; None: no budget."""
    progress: Progress
    iteration: int = 0
    """Iterations started; the data-parallel stop checks run every ``dist.check_every`` of them."""
    acted_on: Tensor | None = None
    """The observations the latest actions were chosen for (the entropy is estimated at them)."""
    metrics: dict[str, Tensor] = field(default_factory=dict)
    """The latest update's losses, on the device until they are logged."""
    logged: dict[str, float] = field(default_factory=dict)
    """The latest log interval's scalars, with the evaluations since."""


class OffPolicyRunner:
    """Trains MEow on a :class:`~meow.envs.VecEnv`.

    Each iteration steps all envs once (uniform random actions during warm-up, then
    samples of the flow), stores the transitions with their true next observations, and
    runs ``algo.updates_per_step`` updates. Every ``runner.*_interval`` env steps it logs,
    evaluates on the eval envs (the deterministic policy, the sampled one or both:
    ``runner.eval_mode``), and writes a checkpoint.

    Args:
        cfg: the validated run config (:func:`meow.config.load_config`).
        env: training environments.
        eval_env: evaluation environments (one episode each per evaluated policy), or None.
        log_dir: run directory for TensorBoard events, the config dump and checkpoints;
            None keeps everything in memory.
        writer_dir: where TensorBoard events go instead of ``log_dir`` (rl-games' ``summaries/``).
        checkpoint_name: file name of the checkpoint at an env step (default ``model_<step>.pt``).
        dist: this process's rank in a data-parallel run (:func:`meow.distributed.init_from_env`,
            with ``cfg`` already passed through its ``configure``); None for a single process.
            Ranks other than 0 write nothing; env steps are counted over all ranks, so
            ``runner.total_steps`` and the intervals are totals over ranks.
    """

    def __init__(
        self,
        cfg: DictConfig,
        env: VecEnv,
        eval_env: VecEnv | None = None,
        log_dir: str | Path | None = None,
        writer_dir: str | Path | None = None,
        checkpoint_name: Callable[[int], str] | None = None,
        *,
        dist: DistContext | None = None,
    ) -> None:
        self.cfg = cfg
        self.dist = dist
        self.world_size = dist.world_size if dist is not None else 1
        self.is_main = dist is None or dist.is_main
        self._saves_checkpoints = log_dir is not None
        """Whether :meth:`learn` writes checkpoints; in a data-parallel run every rank takes part
        (rank 0 writes, the others wait for it), so that all ranks pass the same points."""
        self.stop_requested = False
        """Set (e.g. by a signal handler) to stop :meth:`learn` at the start of its next iteration
        with :class:`StopRequested` (in a data-parallel run: every rank, at the next stop check):
        an evaluation or checkpoint under way completes first, so a run resumed from the
        checkpoint written then misses none of its points."""
        self.interruptible = False
        """True while the first compiled ``act`` or update of the run executes (and compiles): until
        that update's optimizer step nothing of the learner's state changes, so a signal handler
        may interrupt there at once (``KeyboardInterrupt``) instead of waiting for the compile."""
        self.deadline: float | None = None
        """``time.monotonic()`` at which :meth:`learn` ends as if ``runner.total_steps`` were
        reached (e.g. set by scripts/train.py from its start and ``runner.max_minutes``); when
        None, ``runner.max_minutes`` counts from the start of :meth:`learn`."""
        self.budget_spent = False
        """True once :meth:`learn` ended at the wall-clock budget rather than at total_steps."""
        if not self.is_main:
            log_dir = writer_dir = None
        self.device = torch.device(cfg.device)
        if cfg.torch_threads > 0:
            torch.set_num_threads(cfg.torch_threads)
        seed_everything(cfg.seed)
        self.env = env
        self.eval_env = eval_env
        self.log_dir = Path(log_dir) if log_dir is not None else None
        self.writer_dir = Path(writer_dir) if writer_dir is not None else self.log_dir
        self.checkpoint_name = checkpoint_name or (lambda step: f"model_{step}.pt")
        for key, got in (("obs_dim", env.obs_dim), ("action_dim", env.action_dim)):
            want = cfg.env[key]
            if want and want != got:
                raise ValueError(
                    f"env.{key}={want} in the task settings, but {cfg.env.id} has {got}; "
                    f"a different task version? set env.{key}={got} (or 0) if that is intended"
                )
        # auto: how long the run is decides whether compiling pays on the CPU
        updates = planned_updates(cfg, env.num_envs * self.world_size)
        self.alg = MEow.from_config(
            cfg, env.obs_dim, env.action_dim, env.num_envs, planned_updates=updates, dist=dist
        )
        self._reward_scale = self.alg.reward_scale if cfg.algo.reward_norm else None
        """The learner's :class:`~meow.modules.RewardScale`, which each step updates; None without one."""
        self.buffer = ReplayBuffer(
            cfg.buffer.capacity,
            env.num_envs,
            env.obs_dim,
            env.action_dim,
            self.device,
            verbose=cfg.runner.progress and self.is_main,
        )
        self.global_step = 0
        """Environment steps taken so far, summed over the parallel envs (and over ranks)."""
        self.num_updates = 0
        self.num_evals = 0
        self._obs: Tensor | None = None
        n = env.num_envs
        self._episode_return = torch.zeros(n, device=self.device)
        self._episode_length = torch.zeros(n, device=self.device)
        self._writer = None
        # Env step of the first non-finite reward / observation the env returned (-1: none yet),
        # kept on the device so that checking every step costs no host synchronisation.
        self._env_fault = torch.full((2,), -1, dtype=torch.long, device=self.device)
        self._buffer_skip_noted = False
        self._compile_noted = False
        self.evaluations: list[tuple[int, float, float]] = []
        """``(env step, mean return, std)`` of every deterministic evaluation in this process."""
        self.stochastic_evaluations: list[StochasticEvaluation] = []
        """Every stochastic evaluation in this process, with its value calibration."""

    # ------------------------------------------------------------------ logging
    @property
    def writer(self):
        """TensorBoard writer, created on first use (None without a log directory)."""
        if self._writer is None and self.writer_dir is not None:
            from torch.utils.tensorboard import SummaryWriter

            self._writer = SummaryWriter(str(self.writer_dir))
        return self._writer

    def _scalar(self, tag: str, value: float) -> None:
        if self.writer is not None:
            self.writer.add_scalar(tag, value, self.global_step)

    # --------------------------------------------------------------- evaluation
    def _episodes(
        self, deterministic: bool, seed: int, max_steps: int, latent_scale: float = 1.0
    ) -> Episodes:
        if self.eval_env is None:
            raise RuntimeError("no evaluation environment was given")
        return run_episodes(
            self.eval_env,
            self.alg.policy,
            self.alg.normalizer,
            deterministic=deterministic,
            seed=seed,
            gamma=self.cfg.algo.gamma,
            device=self.device,
            act=lambda obs: self.alg.act(obs, deterministic=True),
            max_steps=max_steps,
            latent_scale=latent_scale,
            value_scale=self._reward_scale.scale if self._reward_scale is not None else 1.0,
        )

    def _eval_seed(self) -> int:
        return self.cfg.seed + 10_000 + self.num_evals

    def _record(self, deterministic: bool, episodes: Episodes) -> dict[str, float]:
        """Appends one pass to :attr:`evaluations` or :attr:`stochastic_evaluations`; its tags."""
        returns = episodes.returns
        mean, std = returns.mean().item(), returns.std(unbiased=False).item()
        if deterministic:
            self.evaluations.append((self.global_step, mean, std))
            return {"eval/return_mean": mean, "eval/return_std": std}
        record = StochasticEvaluation(
            self.global_step, mean, std, episodes.value_v0.mean().item(), episodes.soft_return.mean().item()
        )
        self.stochastic_evaluations.append(record)
        return {
            "eval/stochastic_return_mean": mean,
            "eval/stochastic_return_std": std,
            "eval/value_v0": record.value_v0,
            "eval/soft_return": record.soft_return,
            "eval/value_error": record.value_error,
        }

    def evaluate(self, max_steps: int = 100_000, deterministic: bool = True) -> tuple[float, float]:
        """Runs one episode in each eval env; returns mean and std of the returns.

        ``deterministic``: the latent-zero action (recorded in :attr:`evaluations`); otherwise
        sampled actions, with the value calibration (recorded in :attr:`stochastic_evaluations`).
        Seeded by the run's seed and the evaluation count; the training run's random stream is
        left where it was.
        """
        episodes = self._episodes(deterministic, self._eval_seed(), max_steps)
        self.num_evals += 1
        tags = self._record(deterministic, episodes)
        prefix = "eval/" if deterministic else "eval/stochastic_"
        return tags[prefix + "return_mean"], tags[prefix + "return_std"]

    def evaluate_modes(self, max_steps: int = 100_000, latent_scale: float = 1.0) -> dict[str, float]:
        """Runs the evaluations that ``runner.eval_mode`` asks for, from the same start states;
        returns their scalars by TensorBoard tag (``eval/return_*`` for the deterministic
        policy, ``eval/stochastic_return_*`` and ``eval/value_v0``, ``eval/soft_return``,
        ``eval/value_error`` for the sampled one, whose latent is drawn at ``latent_scale``)."""
        seed, tags = self._eval_seed(), {}
        for deterministic in eval_passes(self.cfg.runner.eval_mode):
            episodes = self._episodes(deterministic, seed, max_steps, latent_scale)
            tags.update(self._record(deterministic, episodes))
        self.num_evals += 1
        return tags

    @property
    def last_eval(self) -> tuple[float, float] | None:
        """Mean and standard deviation of the latest evaluation's returns: the deterministic
        policy's, or the sampled policy's when only that one was evaluated."""
        history = self.evaluations or self.stochastic_evaluations
        return tuple(history[-1][1:3]) if history else None

    # ----------------------------------------------------------------- training
    def _crossed(self, before: int, interval: int) -> bool:
        return self.global_step // interval > before // interval

    def _raise_env_fault(self) -> None:
        reward_step, obs_step = self._env_fault.tolist()
        newest = run_checkpoints(self.log_dir)[-1][1] if self.log_dir is not None else None
        kept = (
            f"the newest checkpoint, {newest}, is the last good one"
            if newest is not None and newest.exists()
            else "no checkpoint was written"
        )
        if reward_step < 0 and obs_step < 0:  # another rank's environment
            raise FloatingPointError(
                f"another rank's {self.cfg.env.id} returned a non-finite (NaN or inf) value; "
                f"stopped without writing a checkpoint: {kept}"
            )
        what, step = (
            ("reward", reward_step)
            if obs_step < 0 or 0 <= reward_step <= obs_step
            else ("observation", obs_step)
        )
        raise FloatingPointError(
            f"{self.cfg.env.id} returned a non-finite (NaN or inf) {what} at env step {step:,}; "
            f"stopped without writing a checkpoint: {kept}"
        )

    def _check_finite(self, collective: bool = False) -> None:
        """Raises FloatingPointError after a non-finite environment output or update;
        ``collective``: on every rank when any rank had one (every rank must call it at the same
        point)."""
        env_bad = bool((self._env_fault >= 0).any().item())
        bad = bool(self.alg.nonfinite.item())
        if collective and self.dist is not None:
            env_bad = self.dist.any(env_bad, "the non-finite environment check")
            bad = self.dist.any(bad, "the non-finite loss check")
        if env_bad:
            self._raise_env_fault()
        if bad:
            raise FloatingPointError(
                f"non-finite loss or gradient norm in the updates up to env step {self.global_step:,}; "
                "stopped without writing a checkpoint (earlier ones are kept). Lower algo.lr or "
                "algo.alpha, or turn on algo.normalize_obs"
            )

    def learn(
        self,
        on_step: Callable[[StepResult], None] | None = None,
        on_log: Callable[[dict[str, float]], None] | None = None,
    ) -> dict[str, float]:
        """Trains until ``runner.total_steps`` env steps, or until the wall-clock budget
        (:attr:`deadline`, ``runner.max_minutes``) is spent; returns the last logged scalars.

        Args:
            on_step: called with every vectorized step's result (e.g. an rl-games observer).
            on_log: called with the scalars of every log interval, after they are written.

        Raises:
            StopRequested: :attr:`stop_requested` was set (in a data-parallel run: on any rank).
            FloatingPointError: the environment or the learner produced NaN or inf.
        """
        r = self.cfg.runner
        loop = self._begin()
        while not self._should_stop(loop):
            before = self.global_step
            self._collect(loop, on_step)
            self._update(loop)
            if self._crossed(before, r.log_interval):
                self._log(loop, on_log)
            if self._crossed(before, r.eval_interval):
                self._evaluate(loop)
            if self._crossed(before, r.checkpoint_interval):
                self._checkpoint()
        return self._end(loop)

    def _begin(self) -> _Loop:
        """Writes the config, resets the envs (unless resumed) and, in a data-parallel run, hands
        every rank rank 0's learner and the emptiest rank's replay fill level."""
        cfg, r = self.cfg, self.cfg.runner
        if self.log_dir is not None:
            self.log_dir.mkdir(parents=True, exist_ok=True)
            OmegaConf.save(cfg, self.log_dir / "config.yaml")
        if self._obs is None:
            self._obs = self.env.reset(seed=cfg.seed).to(self.device)
        # Ranks must agree on when updates start; after a resume only rank 0 has its replay buffer
        # back, so follow the emptiest rank's fill level.
        min_stored = len(self.buffer)
        if self.dist is not None:
            self.dist.broadcast_(self._learner_tensors())
            min_stored = self.dist.min_int(min_stored)
        return _Loop(
            min_stored=min_stored,
            window=torch.zeros(3, device=self.device),
            t_window=time.perf_counter(),
            steps_window=self.global_step,
            deadline=self.deadline if self.deadline is not None else budget_deadline(r.max_minutes),
            progress=Progress(
                r.total_steps, self.global_step, f"meow {cfg.env.id}", enabled=r.progress and self.is_main
            ),
        )

    def _should_stop(self, loop: _Loop) -> bool:
        """Every stop decision, taken before each iteration: True at ``runner.total_steps`` and
        once the wall-clock budget is spent (then :attr:`budget_spent` is set).

        In a data-parallel run the stop request and the budget are agreed on by all ranks every
        ``dist.check_every`` iterations, so that all of them stop at the same iteration; these are
        collectives, which every rank reaches at the same iterations.

        Raises:
            StopRequested: :attr:`stop_requested` was set (in a data-parallel run: a stop was
                requested on any rank).
        """
        if self.global_step >= self.cfg.runner.total_steps:
            return True
        dist = self.dist
        on_cadence = dist is None or loop.iteration % dist.check_every == 0
        if on_cadence and (self.stop_requested if dist is None else dist.any(self.stop_requested)):
            raise StopRequested("stop requested")
        if loop.deadline is not None and on_cadence:
            spent = time.monotonic() >= loop.deadline
            if dist is not None:  # ranks stop at the same iteration: spent when it is on any
                spent = dist.any(spent, "the wall-clock budget check")
            if spent:
                self.budget_spent = True
                return True
        loop.iteration += 1
        return False

    def _collect(self, loop: _Loop, on_step: Callable[[StepResult], None] | None) -> None:
        """Steps every env once (uniform random actions during warm-up, then samples of the flow),
        stores the transitions and adds finished episodes to the log window, all on the device."""
        env, n = self.env, self.env.num_envs
        obs = self._obs
        if self.global_step < self.cfg.runner.warmup_steps:
            actions = torch.rand(n, env.action_dim, device=self.device) * 2.0 - 1.0
        else:
            with self._first_compiled_calls():
                actions = self.alg.act(obs)
        result = env.step(actions)
        bad = torch.stack(
            (
                ~torch.isfinite(result.rewards).all(),
                ~(torch.isfinite(result.obs).all() & torch.isfinite(result.next_obs).all()),
            )
        ).to(self.device)
        self._env_fault = torch.where(bad & (self._env_fault < 0), self.global_step + n, self._env_fault)
        if self.cfg.algo.normalize_obs:
            self.alg.normalizer.update(obs)
        self.buffer.add(obs, actions, result.rewards, result.next_obs, result.terminated, result.truncated)
        self._obs, loop.acted_on = result.obs, obs
        if on_step is not None:
            on_step(result)

        done = result.terminated | result.truncated
        if self._reward_scale is not None:
            self._reward_scale.update(result.rewards, done)
        self._episode_return += result.rewards
        self._episode_length += 1
        # Masked sums, not boolean indexing: no host synchronisation on GPU.
        loop.window += torch.stack(
            ((self._episode_return * done).sum(), (self._episode_length * done).sum(), done.sum().float())
        )
        self._episode_return.masked_fill_(done, 0.0)
        self._episode_length.masked_fill_(done, 0.0)

        self.global_step += n * self.world_size
        loop.progress.update(n * self.world_size)
        loop.min_stored += n  # len(self.buffer) alone, except that it stops growing at capacity

    @contextmanager
    def _first_compiled_calls(self) -> Iterator[None]:
        """Sets :attr:`interruptible` for the calls that compile (those before the first update)."""
        self.interruptible = self.alg.capture.mode == "compile" and self.num_updates == 0
        if self.interruptible and not self._compile_noted and self.is_main:
            print(f"[meow] compiling the action and the update at env step {self.global_step:,}", flush=True)
            self._compile_noted = True
        try:
            yield
        finally:
            self.interruptible = False

    def _update(self, loop: _Loop) -> None:
        """``algo.updates_per_step`` updates, once warm-up is over and every rank holds a batch."""
        a = self.cfg.algo
        if self.global_step > self.cfg.runner.warmup_steps and loop.min_stored >= a.batch_size:
            for _ in range(a.updates_per_step):
                with self._first_compiled_calls():
                    loop.metrics = self.alg.update_from(self.buffer, a.batch_size)
                self.num_updates += 1

    def _log(self, loop: _Loop, on_log: Callable[[dict[str, float]], None] | None) -> None:
        """Stops at a non-finite value (on every rank), then writes the interval's scalars: losses,
        SPS, the mean return and length of the episodes finished on all ranks, the policy's entropy
        and the env's own episode terms."""
        self._check_finite(collective=True)
        if self.dist is not None:
            self.dist.sum_(loop.window)  # episodes finished on every rank
        now = time.perf_counter()
        sps = (self.global_step - loop.steps_window) / max(now - loop.t_window, 1e-9)
        loop.t_window, loop.steps_window = now, self.global_step
        logged = {f"losses/{k}": v.item() for k, v in loop.metrics.items()}
        logged["charts/SPS"] = sps
        ret_sum, len_sum, count = loop.window.tolist()
        if count > 0:
            logged["charts/episodic_return"] = ret_sum / count
            logged["charts/episodic_length"] = len_sum / count
        loop.window.zero_()
        if loop.metrics:
            logged.update(self._policy_stats(loop.acted_on))
        if self._reward_scale is not None:
            logged["charts/reward_scale"] = self._reward_scale.scale.item()
        # Per-episode reward terms and termination causes that Isaac Lab reports.
        for tag, value in getattr(self.env, "episode_log", {}).items():
            logged[tag] = float(value)
        for tag, value in logged.items():
            self._scalar(tag, value)
        loop.logged = logged
        if on_log is not None:
            on_log(logged)
        loop.progress.show(self._postfix(logged))

    def _evaluate(self, loop: _Loop) -> None:
        """Runs the evaluations of ``runner.eval_mode`` (when there are eval envs) and logs them."""
        if self.eval_env is None:
            return
        for tag, value in self.evaluate_modes().items():
            self._scalar(tag, value)
            loop.logged[tag] = value
        loop.progress.show(self._postfix(loop.logged), force=True)

    def _checkpoint(self) -> None:
        """Writes the interval's checkpoint, unless this is the last iteration (:meth:`_end` writes
        that one)."""
        if self._saves_checkpoints and self.global_step < self.cfg.runner.total_steps:
            self.save()

    def _end(self, loop: _Loop) -> dict[str, float]:
        """Checks that all is finite, writes the final checkpoint; the last logged scalars."""
        loop.progress.close()
        self._check_finite(collective=True)
        if self._saves_checkpoints:
            self.save()
        if self._writer is not None:
            self._writer.flush()
        return loop.logged

    @torch.no_grad()
    def _policy_stats(self, obs: Tensor) -> dict[str, float]:
        """From one sample of the policy at the current observations: its entropy (Monte Carlo) and
        the share of action components on the tanh bounds (``|a| >= SATURATED``), where a task that
        clips its actions at the unit box gets bang-bang control."""
        self.alg.policy.eval()
        actions, log_prob = self.alg.policy.sample(self.alg.normalizer(obs))
        entropy, saturated = torch.stack(
            (-log_prob.mean(), (actions.abs() >= SATURATED).float().mean())
        ).tolist()
        return {"policy/entropy": entropy, "policy/saturated": saturated}

    @staticmethod
    def _postfix(logged: dict[str, float]) -> dict[str, str]:
        names = {
            "charts/episodic_return": "return",
            "eval/return_mean": "eval",
            "eval/stochastic_return_mean": "eval_stoch",
            "charts/SPS": "sps",
        }
        return {short: f"{logged[k]:.1f}" for k, short in names.items() if k in logged}

    def _learner_tensors(self) -> list[Tensor]:
        from meow.distributed import learner_tensors

        return learner_tensors([self.alg.policy, self.alg.target, self.alg.normalizer], self.alg.optimizer)

    # -------------------------------------------------------------- checkpoints
    def state_dict(self) -> dict:
        """Everything needed to resume: weights, optimizer, normalizer, counters, RNG, env."""
        env_state = self.env.state_dict() if hasattr(self.env, "state_dict") else None
        return {
            "format": FORMAT,
            "task": self.cfg.task,
            "env_id": self.cfg.env.id,
            "obs_dim": self.env.obs_dim,
            "action_dim": self.env.action_dim,
            "config": OmegaConf.to_container(self.cfg, resolve=True),
            "global_step": self.global_step,
            "world_size": self.world_size,
            "num_updates": self.num_updates,
            "num_evals": self.num_evals,
            "learner": self.alg.state_dict(),
            "rng": get_rng_state(),
            "obs": self._obs,
            "episode_return": self._episode_return,
            "episode_length": self._episode_length,
            "env_state": env_state,
        }

    def save(self, path: str | Path | None = None) -> Path | None:
        """Writes a checkpoint (``model_<step>.pt`` in the run directory by default).

        With ``runner.save_buffer`` the replay buffer goes to ``replay_buffer.pt`` beside it (when
        it is at most ``runner.save_buffer_max_gib``; in a data-parallel run, rank 0's).
        ``runner.keep_checkpoints`` > 0 then deletes all but the newest that many
        ``model_<step>.pt`` of the directory. In a data-parallel run every rank calls this: rank 0
        writes, the others write nothing, wait until it is written and return None.

        Raises:
            FloatingPointError: the environment or the learner produced NaN or inf since the last
                check; nothing is written, so the newest checkpoint on disk stays the last good one.
            CheckpointWriteError: the checkpoint could not be written (e.g. the disk is full); the
                previous checkpoint is left as it was.
        """
        if self.dist is not None:
            self._check_finite(collective=True)  # never a NaN checkpoint, and no rank left waiting
            path = self._save_main(path) if self.is_main else None
            self.dist.barrier("the wait for rank 0's checkpoint")
            return path
        return self._save_main(path)

    def _save_main(self, path: str | Path | None) -> Path:
        self._check_finite()
        if self._writer is not None:
            # Whatever a checkpoint resumes from is on disk: a run stopped now and resumed later
            # loses none of the points (evaluations included) it logged up to this step.
            self._writer.flush()
        if path is None:
            if self.log_dir is None:
                raise ValueError("no path given and the runner has no log directory")
            path = self.log_dir / self.checkpoint_name(self.global_step)
        path = Path(path)
        write_checkpoint(self.state_dict(), path)
        r = self.cfg.runner
        if r.save_buffer:
            self._buffer_skip_noted = save_replay_buffer(
                self.buffer,
                path.parent / BUFFER_FILE,
                self.global_step,
                r.save_buffer_max_gib,
                quiet=self._buffer_skip_noted,
            )
        if path.parent == self.log_dir:
            prune_checkpoints(path.parent, r.keep_checkpoints)
        return path

    def load(self, ckpt: dict) -> None:
        """Restores a checkpoint read by :func:`meow.runners.read_checkpoint` into this runner."""
        src = ckpt.get("path", "checkpoint")
        if ckpt["task"] != self.cfg.task or (ckpt["obs_dim"], ckpt["action_dim"]) != (
            self.env.obs_dim,
            self.env.action_dim,
        ):
            raise CheckpointError(
                f"{src} was trained on {ckpt['env_id']} (obs {ckpt['obs_dim']}, act {ckpt['action_dim']}) "
                f"but this run is {self.cfg.env.id} (obs {self.env.obs_dim}, act {self.env.action_dim})"
            )
        load_learner_state(self.alg, ckpt)
        self.global_step = ckpt["global_step"]
        self.num_updates = ckpt["num_updates"]
        self.num_evals = ckpt["num_evals"]
        saved_world = ckpt.get("world_size", 1)
        if saved_world != self.world_size and self.is_main and self.cfg.runner.progress:
            print(f"[meow] {src} was written by {saved_world} rank(s); continuing on {self.world_size}")
        if not self.is_main:
            # The checkpoint holds rank 0's generators, environments and replay buffer; this rank
            # keeps its own seed (moved on by the step count) and starts fresh episodes.
            seed_everything(self.cfg.seed + self.global_step)
            self._obs = self.env.reset(seed=self.cfg.seed + self.global_step).to(self.device)
            return
        set_rng_state(ckpt["rng"])
        restorable = ckpt["env_state"] is not None and hasattr(self.env, "load_state_dict")
        if restorable:
            self.env.load_state_dict(ckpt["env_state"])
            self._obs = ckpt["obs"].to(self.device)
            self._episode_return.copy_(ckpt["episode_return"])
            self._episode_length.copy_(ckpt["episode_length"])
        else:
            # Simulator state is not saved: start fresh episodes from here.
            self._obs = self.env.reset(seed=self.cfg.seed + self.global_step).to(self.device)
        load_replay_buffer(self.buffer, Path(src).parent / BUFFER_FILE, src, self.global_step)

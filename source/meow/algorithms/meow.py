"""MEow's learner: one soft Bellman loss trains the flow as policy and critic at once."""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Protocol

import torch
from torch import Tensor, nn

from meow.algorithms.capture import (
    CAPTURE_MODES,
    MATMUL_PRECISIONS,
    Capture,
    bind_flat_grad,
    flat_optimizer_state,
    flatten_parameters,
    over_flat_parameters,
    resolve_capture,
    set_matmul_precision,
)
from meow.modules import EmpiricalNormalization, FlowPolicy, RewardScale, build_policy
from meow.storage import TransitionBatch

if TYPE_CHECKING:
    from omegaconf import DictConfig

    from meow.distributed import DistContext

__all__ = ["CAPTURE_MODES", "MATMUL_PRECISIONS", "GradientSync", "MEow", "WindowSampler"]


class GradientSync(Protocol):
    """Averages the learner's flat gradient over data-parallel ranks (one all-reduce per update)."""

    def attach(self, flat: Tensor, params: list[Tensor]) -> None:
        """Called once with the flat parameter and the parameters that are views of it."""

    def begin(self, overlap: bool = True) -> None:
        """Called before each backward pass (``overlap``: whether collectives may start during it;
        False inside a CUDA graph)."""

    def end(self, grad: Tensor) -> None:
        """Called after it with the flat gradient, which it leaves averaged."""


class WindowSampler(Protocol):
    """What :meth:`MEow.update_from` samples from (:class:`~meow.storage.ReplayBuffer`)."""

    def sample_windows(self, batch_size: int, n: int) -> TransitionBatch: ...


class MEow:
    """Soft Bellman regression of the flow's soft Q onto a target built from its exact soft V.

    With ``n_step = 1`` (the paper):

        y = r + gamma * (1 - terminated) * min_k V_k^target(s')
        L = mean_k,batch 0.5 * (Q_k(s, a) - y)^2

    With ``n_step = n`` the target is the n-step soft return of the stored window
    ``(s_0, a_0, r_0, ..., s_{m-1}, a_{m-1}, r_{m-1}, s'_{m-1})``, cut after ``m <= n`` steps at
    the first termination, time-out, or the newest stored step:

        y = sum_{t<m} gamma^t r_t - alpha * sum_{0<t<m} gamma^t log pi^target(a_t|s_t)
            + gamma^m * (1 - terminated_{m-1}) * min_k V_k^target(s'_{m-1})

    The intermediate entropy terms are exact: ``alpha * log pi = Q - V`` is the flow's own
    log-density, computed with the target flow. With them the n-step target has the same fixed
    point as the one-step soft Bellman target (without them it counts the entropy bonus only
    every n steps). Time-outs and the newest step bootstrap from the true final observation;
    terminations do not bootstrap.

    One Adam over all parameters, global grad-norm clipping, Polyak averaging of the target
    after every step. The file reads in the paper's order: :meth:`loss` and :meth:`soft_target`,
    then one update step (:meth:`update`, :meth:`update_from`), then acting and state. How the
    step executes (eagerly, compiled, or as one CUDA graph, ``capture``) is
    :class:`~meow.algorithms.capture.Capture`'s business. The update is a pure tensor program: no
    host synchronisation and no Python branching on tensor values. Non-finite losses are recorded
    in :attr:`nonfinite` and reported by the runner at its next check.

    Args:
        policy: the flow (online network); the target is a copy of it.
        normalizer: applied to observations before the flow (``nn.Identity`` for none).
        lr: Adam learning rate.
        gamma: discount.
        tau: Polyak coefficient of the target update.
        grad_clip: maximum global gradient norm.
        n_step: length of the target's reward window (1 = the paper).
        capture: ``auto | none | compile | cudagraph`` (see :data:`CAPTURE_MODES`).
        compile_mode: ``torch.compile``'s ``mode`` under ``capture="compile"`` (None: its default;
            benchmarks/benchmark_update.py measures the others).
        matmul_precision: ``float32 | tf32`` (see :data:`MATMUL_PRECISIONS`), set process-wide
            by :func:`set_matmul_precision` when the learner is built.
        grad_sync: averages the gradient over data-parallel ranks between the backward pass and
            clipping (a :class:`GradientSync`, e.g.
            :meth:`meow.distributed.DistContext.gradient_sync`); it is attached to the flat
            parameter here.
        target_entropy: with a number, ``alpha`` is tuned towards it (nats of the sampled
            policy; docs/ALGORITHM.md, "Automatic temperature"); None: ``alpha`` stays fixed (the paper).
        alpha_lr: Adam learning rate of ``log alpha`` when it is tuned.
        reward_scale: divides the rewards of every target (a :class:`~meow.modules.RewardScale`,
            whose statistics the runner updates); None: raw rewards (the paper). With it the soft
            values, and ``alpha``, are in units of the scaled rewards.
        log_prob_floor: with a number ``f``, what V learns counts replay actions less probable
            than ``f * d`` nats as that probable, while ``log pi(a|s)`` keeps the true residual
            ``Q - y`` (docs/ALGORITHM.md section 11); None: no floor (the paper).
    """

    def __init__(
        self,
        policy: FlowPolicy,
        normalizer: nn.Module | None = None,
        *,
        lr: float = 1e-3,
        gamma: float = 0.99,
        tau: float = 0.005,
        grad_clip: float = 30.0,
        n_step: int = 1,
        capture: str = "none",
        compile_mode: str | None = None,
        grad_sync: GradientSync | None = None,
        matmul_precision: str = "float32",
        target_entropy: float | None = None,
        alpha_lr: float = 3e-4,
        reward_scale: nn.Module | None = None,
        log_prob_floor: float | None = None,
    ) -> None:
        if n_step < 1:
            raise ValueError(f"algo.n_step={n_step} is invalid; valid: an integer >= 1")
        self.device = policy.alpha.device
        self.capture = Capture(capture, self.device, compile_mode)
        set_matmul_precision(matmul_precision, self.device)
        self.policy = policy
        self.target = copy.deepcopy(policy).requires_grad_(False).eval()
        self.normalizer = normalizer if normalizer is not None else nn.Identity()
        self.reward_scale = reward_scale if reward_scale is not None else nn.Identity()
        self.gamma = gamma
        self.tau = tau
        self.grad_clip = grad_clip
        self.n_step = n_step
        self.log_prob_floor = None if log_prob_floor is None else float(log_prob_floor) * policy.action_dim
        self._discounts = gamma ** torch.arange(n_step + 1, dtype=torch.float32, device=self.device)
        self.nonfinite = torch.zeros((), dtype=torch.bool, device=self.device)
        """True once any update produced a non-finite loss or gradient norm."""

        # Every parameter is a view of one flat tensor (and every gradient of one flat gradient),
        # so that Adam, the grad-norm clip, the Polyak step and zeroing are one operation each
        # rather than one per parameter tensor: on the CPU those loops cost more than the
        # arithmetic, on a GPU more kernel launches. capturable keeps Adam's step counters on the
        # GPU so that a CUDA graph can replay it.
        self._params = list(policy.parameters())
        self._flat = flatten_parameters(self._params)
        self._target_flat = flatten_parameters(list(self.target.parameters()))
        self._grad_views = bind_flat_grad(self._flat, self._params)
        self.grad_sync = grad_sync
        if grad_sync is not None:
            grad_sync.attach(self._flat, self._params)
        fused = self.device.type in ("cpu", "cuda")
        capturable = self.device.type == "cuda" and self.capture.mode != "none"
        self.optimizer = torch.optim.Adam([self._flat], lr=lr, fused=fused, capturable=capturable)

        # The automatic temperature: its own parameter and optimizer, not part of the flow.
        self.target_entropy = target_entropy
        self.log_alpha: nn.Parameter | None = None
        self.alpha_optimizer: torch.optim.Optimizer | None = None
        if target_entropy is not None:
            self.log_alpha = nn.Parameter(policy.alpha.detach().log().clone())
            self.alpha_optimizer = torch.optim.Adam(
                [self.log_alpha], lr=alpha_lr, fused=fused, capturable=capturable
            )

        # How the loss runs inside an update. Compiled, it takes the flow's parameters as pieces of
        # the flat parameter (one gradient out of backward); the optimizer part is a handful of
        # fused operations that gain nothing from tracing, so it runs eagerly in every mode.
        self._flat_loss = over_flat_parameters(policy, self._flat, self._sampled_loss)
        compiled = self.capture.mode == "compile"
        self._update_loss = self.capture.compile(self._flat_loss) if compiled else self._sampled_loss
        # On the CPU, sampling one env's action is a few hundred tiny operations whose dispatch
        # costs more than their arithmetic; compiled it is a few calls.
        self._act_fn = (
            self.capture.compile(self._act) if compiled and self.device.type == "cpu" else self._act
        )

    @classmethod
    def from_config(
        cls,
        cfg: DictConfig,
        obs_dim: int,
        action_dim: int,
        num_envs: int,
        *,
        planned_updates: int,
        dist: DistContext | None = None,
    ) -> MEow:
        """The learner ``cfg.algo`` describes, on ``cfg.device``, for ``num_envs`` envs of this rank.

        Args:
            planned_updates: updates the run will take (``algo.capture=auto`` compiles long CPU runs).
            dist: this process's rank of a data-parallel run: statistics and gradients are merged
                over ranks; None for a single process.
        """
        a, device = cfg.algo, torch.device(cfg.device)
        reduce_moments = dist.reduce_moments if dist is not None else None
        normalizer = (
            EmpiricalNormalization(obs_dim, reduce_moments=reduce_moments).to(device)
            if a.normalize_obs
            else None
        )
        reward_scale = (
            RewardScale(
                num_envs,
                a.gamma,
                a.reward_norm_max,
                reduce_moments=reduce_moments,
                reduce_max=dist.max_ if dist is not None else None,
            ).to(device)
            if a.reward_norm
            else None
        )
        return cls(
            build_policy(cfg, obs_dim, action_dim).to(device),
            normalizer,
            lr=a.lr,
            gamma=a.gamma,
            tau=a.tau,
            grad_clip=a.grad_clip,
            n_step=a.n_step,
            capture=resolve_capture(a.capture, device, planned_updates),
            matmul_precision=a.matmul_precision,
            grad_sync=dist.gradient_sync() if dist is not None else None,
            target_entropy=a.target_entropy * action_dim if a.alpha_autotune else None,
            alpha_lr=a.alpha_lr,
            reward_scale=reward_scale,
            log_prob_floor=a.log_prob_floor,
        )

    # ------------------------------------------------------------------- the loss (the paper)
    def loss(self, batch: TransitionBatch) -> tuple[Tensor, dict[str, Tensor]]:
        """The loss of a batch of transitions ``(B, ...)`` or of n-step windows ``(B, n, ...)``."""
        if batch.rewards.dim() == 1:
            batch = TransitionBatch(*(x.unsqueeze(1) for x in batch))
        obs, actions = batch.obs, batch.actions
        with torch.no_grad():
            target = self.soft_target(batch)
        states = self.normalizer(obs[:, 0])
        y = target["target"]
        stats = {}
        if self.log_prob_floor is None:
            q = self.policy.q_values(states, actions[:, 0])
            squares = (q - y).square()
        else:
            # V learns from the floored fit, log pi from the true fit: the two halves' gradients
            # add up to the unfloored fit's wherever log pi >= floor
            v, log_pi = self.policy.values_and_log_prob(states, actions[:, 0])
            alpha = self.policy.alpha
            q = v + alpha * log_pi
            stats["below_floor"] = (log_pi.detach() < self.log_prob_floor).to(v.dtype).mean()
            value_fit = (v + alpha * torch.clamp(log_pi, min=self.log_prob_floor).detach() - y).square()
            squares = value_fit + (v.detach() + alpha * log_pi - y).square()
        loss = 0.5 * squares.sum(0).mean()
        stats.update(q=q.detach().mean(), **{k: v.mean() for k, v in target.items()})
        if self.log_alpha is not None:
            # for the temperature's step, which samples there outside the (possibly compiled) loss:
            # compiled code may reorder random draws, and the sample would differ from eager's
            stats["states"] = states.detach()
        return loss, stats

    def soft_target(self, batch: TransitionBatch) -> dict[str, Tensor]:
        """The n-step soft Bellman target of windows ``(B, n, ...)`` (see the class docstring)."""
        size, n = batch.rewards.shape
        terminated = batch.terminated
        not_done = (1.0 - terminated) * (~batch.truncated).float()
        # alive[:, t] = 1 where step t belongs to the window: no termination, time-out or the
        # newest stored step before it. Float masks throughout (inductor's CPU code generator
        # mishandles boolean masks of mixed width here).
        alive = torch.cat([torch.ones_like(not_done[:, :1]), torch.cumprod(not_done[:, :-1], dim=1)], 1)
        disc = self._discounts
        soft_return = (alive * self.reward_scale(batch.rewards)) @ disc[:n]
        if n > 1:
            obs_dim, act_dim = batch.obs.shape[-1], batch.actions.shape[-1]
            log_pi = self.target.log_prob(
                self.normalizer(batch.obs[:, 1:].reshape(-1, obs_dim)),
                batch.actions[:, 1:].reshape(-1, act_dim),
            ).view(size, n - 1)
            # steps outside the window may hold another episode's data: masked, never multiplied
            entropy = torch.where(alive[:, 1:] > 0, log_pi, torch.zeros_like(log_pi)) @ disc[1:n]
            soft_return = soft_return - self.target.alpha * entropy
        # The window's last step m - 1: the number of alive steps, less one.
        m = alive.sum(1).long() - 1
        rows = torch.arange(size, device=m.device)
        next_v = self.target.values(self.normalizer(batch.next_obs[rows, m])).min(0).values
        bootstrap = disc[m + 1] * (1.0 - terminated[rows, m]) * next_v
        return {"target": soft_return + bootstrap, "next_v": next_v}

    # --------------------------------------------------------------------- one update step
    def update(self, batch: TransitionBatch) -> dict[str, Tensor]:
        """One gradient step on a given batch (eager) and one Polyak step; detached scalars."""
        self._rebind_grads()
        self.policy.train()
        return self._step(*self.loss(batch))

    def update_from(self, buffer: WindowSampler, batch_size: int) -> dict[str, Tensor]:
        """Samples ``batch_size`` windows of ``n_step`` transitions from ``buffer`` and takes one
        update step, run as ``capture`` says. Returns detached scalar tensors (recorded as a CUDA
        graph: the same tensors every call, overwritten by the next update)."""
        if self._rebind_grads():
            self.capture.forget("update")  # a recorded graph writes the old gradient
        if not self.capture.graphed:
            return self._update_step(buffer, batch_size)
        state = [self._flat, self._target_flat, self.nonfinite]
        optimizers = [self.optimizer]
        if self.log_alpha is not None:
            state += [self.log_alpha, self.policy.alpha, self.target.alpha]
            optimizers.append(self.alpha_optimizer)
        return self.capture.replay(
            "update",
            (buffer, batch_size),
            lambda: self._update_step(buffer, batch_size),
            warmup=3,
            state=state,
            optimizers=optimizers,
        )

    def _sampled_loss(self, buffer: WindowSampler, batch_size: int) -> tuple[Tensor, dict[str, Tensor]]:
        return self.loss(buffer.sample_windows(batch_size, self.n_step))

    def _update_step(self, buffer: WindowSampler, batch_size: int) -> dict[str, Tensor]:
        self.policy.train()
        return self._step(*self._update_loss(buffer, batch_size))

    def _step(self, loss: Tensor, stats: dict[str, Tensor]) -> dict[str, Tensor]:
        """Backward, gradient sync, clip, Adam and Polyak for a loss (one fused kernel each where
        possible), then the temperature's step when it is tuned."""
        if self.log_alpha is not None:
            with torch.no_grad():  # the sampled policy's log-density at the batch's states
                sample_log_prob = self.policy.sample(stats.pop("states"))[1].mean()
        grad = self._flat.grad
        grad.zero_()  # the parameters' gradients are views of it: backward accumulates in place
        sync = self.grad_sync
        if sync is not None:
            # inside a CUDA graph no collective may start from autograd's hooks
            sync.begin(overlap=not self.capture.graphed)
        loss.backward()
        if sync is not None:
            sync.end(grad)
        # clip_grad_norm_'s arithmetic on the one flat gradient, without its per-tensor bookkeeping
        grad_norm = torch.linalg.vector_norm(grad)
        grad.mul_(torch.clamp(self.grad_clip / (grad_norm + 1e-6), max=1.0))
        self.optimizer.step()
        with torch.no_grad():
            self._target_flat.lerp_(self._flat, self.tau)
            self.nonfinite |= ~(torch.isfinite(loss) & torch.isfinite(grad_norm))
        if self.log_alpha is not None:
            stats["sample_log_prob"] = sample_log_prob
            stats["alpha"] = self._temperature_step(sample_log_prob)
        return {"loss": loss.detach(), "grad_norm": grad_norm, **stats}

    def _temperature_step(self, sample_log_prob: Tensor) -> Tensor:
        """One step of the dual problem ``min_alpha alpha * (H(pi) - target_entropy)`` in ``log alpha``:
        ``alpha`` rises while the policy's entropy ``-E log pi`` is below the target, falls while it
        is above. The online and target flows both use the new value from the next update on."""
        self.alpha_optimizer.zero_grad(set_to_none=False)
        # d/d(log alpha) of -log_alpha * (log pi + target): the (detached) entropy gap
        loss = -(self.log_alpha * (sample_log_prob.detach() + self.target_entropy))
        loss.backward()
        self.alpha_optimizer.step()
        with torch.no_grad():
            alpha = self.log_alpha.exp()
            self.policy.alpha.copy_(alpha)
            self.target.alpha.copy_(alpha)
        return alpha.detach()

    def _rebind_grads(self) -> bool:
        """Makes the gradients views of the flat gradient again if someone replaced them (e.g.
        ``module.zero_grad()`` sets them to None); returns whether it had to."""
        if self._flat.grad is not None and all(
            p.grad is g for p, g in zip(self._params, self._grad_views, strict=True)
        ):
            return False
        self._grad_views = bind_flat_grad(self._flat, self._params)
        return True

    # -------------------------------------------------------------------------------- acting
    @torch.no_grad()
    def act(self, obs: Tensor, deterministic: bool = False) -> Tensor:
        """Actions in ``[-1, 1]`` for raw observations; sampled with the online flow in eval mode."""
        if self.capture.graphed and obs.is_cuda:
            key = ("act", tuple(obs.shape), deterministic)

            def record(o: Tensor) -> Tensor:  # runs only while the graph is recorded
                self.policy.eval()
                return self._act(o, deterministic)

            action = self.capture.replay(key, key, record, (obs,))
            return action.clone()  # the graph's output is overwritten by the next replay
        self.policy.eval()
        return self._act_fn(obs, deterministic)

    def _act(self, obs: Tensor, deterministic: bool) -> Tensor:
        obs = self.normalizer(obs)
        return self.policy.deterministic(obs) if deterministic else self.policy.sample(obs)[0]

    # --------------------------------------------------------------------------- checkpoints
    def state_dict(self) -> dict:
        """Online and target weights, optimizer and normalizer state (plain modules, no graphs)."""
        state = {
            "policy": self.policy.state_dict(),
            "target": self.target.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "normalizer": self.normalizer.state_dict(),
            "reward_scale": self.reward_scale.state_dict(),
        }
        if self.log_alpha is not None:
            state["log_alpha"] = self.log_alpha.detach().clone()
            state["alpha_optimizer"] = self.alpha_optimizer.state_dict()
        return state

    def load_state_dict(self, state: dict) -> None:
        """Restores :meth:`state_dict`; captured graphs are recorded again at the next call."""
        self.policy.load_state_dict(state["policy"])
        self.target.load_state_dict(state["target"])
        self.optimizer.load_state_dict(flat_optimizer_state(state["optimizer"], self._params))
        self.normalizer.load_state_dict(state["normalizer"])
        if state.get("reward_scale") and not isinstance(self.reward_scale, nn.Identity):
            # absent before reward normalisation, and empty in runs without it
            self.reward_scale.load_state_dict(state["reward_scale"])
        if self.log_alpha is not None:
            with torch.no_grad():
                # a run that starts tuning from a fixed-alpha checkpoint starts from its alpha
                self.log_alpha.copy_(state.get("log_alpha", self.policy.alpha.log()))
            if "alpha_optimizer" in state:
                self.alpha_optimizer.load_state_dict(state["alpha_optimizer"])
        self.capture.forget()

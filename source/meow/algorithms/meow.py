"""MEow's learner: one soft Bellman loss trains the flow as policy and critic at once."""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from typing import Protocol

import torch
from torch import Tensor, nn

from meow.modules import FlowPolicy
from meow.storage import TransitionBatch

CAPTURE_MODES = ("auto", "none", "compile", "cudagraph")
"""``algo.capture``: how the update (and ``act``) run. ``auto`` = cudagraph on CUDA, none on CPU."""

MATMUL_PRECISIONS = ("float32", "tf32")
"""``algo.matmul_precision``: float32 matrix products in full float32 (the paper), or as TF32 on a
CUDA GPU's tensor cores (inputs rounded to a 10-bit mantissa, sums in float32)."""


class GradientSync(Protocol):
    """Averages the learner's flat gradient over data-parallel ranks, overlapped with backward."""

    def attach(self, flat: Tensor, params: list[Tensor]) -> None:
        """Called once with the flat parameter and the parameters that are views of it."""

    def begin(self, overlap: bool = True) -> None:
        """Called before each backward pass."""

    def end(self, grad: Tensor) -> None:
        """Called after it with the flat gradient, which it leaves averaged."""


class WindowSampler(Protocol):
    """What :meth:`MEow.update_from` samples from (:class:`~meow.storage.ReplayBuffer`)."""

    def sample_windows(self, batch_size: int, n: int) -> TransitionBatch: ...


def resolve_capture(capture: str, device: torch.device | str) -> str:
    """The capture mode that ``capture`` means on ``device``; a one-line ValueError if it cannot run."""
    device = torch.device(device)
    if capture not in CAPTURE_MODES:
        raise ValueError(f"algo.capture={capture} is invalid; valid: {' | '.join(CAPTURE_MODES)}")
    if capture == "auto":
        return "cudagraph" if device.type == "cuda" else "none"
    if capture == "cudagraph" and device.type != "cuda":
        raise ValueError(
            f"algo.capture=cudagraph needs a CUDA device, but the learner is on {device}; "
            "valid here: none | compile (auto picks none on the CPU)"
        )
    return capture


def set_matmul_precision(precision: str, device: torch.device | str) -> None:
    """Makes this process's float32 matrix products run as ``precision`` says.

    PyTorch's setting is process-wide, and libraries change it: rl-games' ``Runner`` turns TF32 on
    when it is constructed. The learner sets it once it is built (after any such library), so a
    run's matrix products follow its config whichever runner drives it. A one-line ValueError if
    ``precision`` is unknown, or is ``tf32`` off CUDA.
    """
    device = torch.device(device)
    if precision not in MATMUL_PRECISIONS:
        raise ValueError(
            f"algo.matmul_precision={precision} is invalid; valid: {' | '.join(MATMUL_PRECISIONS)}"
        )
    if precision == "tf32" and device.type != "cuda":
        raise ValueError(
            f"algo.matmul_precision=tf32 needs a CUDA device (TF32 runs on its tensor cores), but the "
            f"learner is on {device}; valid here: float32"
        )
    # the one call that sets CUDA's and oneDNN's float32 precision together (setting one of them
    # alone leaves torch.get_float32_matmul_precision(), which torch.compile reads, raising)
    torch.set_float32_matmul_precision("high" if precision == "tf32" else "highest")


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
    after every step. :meth:`update_from` samples the batch from a device-resident replay
    buffer and runs as one step that ``capture`` records as one CUDA graph (``cudagraph``),
    compiles with ``torch.compile`` (``compile``; on CUDA the compiled kernels are then recorded
    as one graph too), or runs eagerly (``none``); :meth:`act` is recorded as well on CUDA. The
    update is a pure tensor program: no host synchronisation and no Python branching on tensor
    values. Non-finite losses are
    recorded in :attr:`nonfinite` and reported by the runner at its next check.

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
            scripts/benchmark_update.py measures the others).
        matmul_precision: ``float32 | tf32`` (see :data:`MATMUL_PRECISIONS`), set process-wide
            by :func:`set_matmul_precision` when the learner is built.
        grad_sync: averages the gradient over data-parallel ranks between the backward pass and
            clipping, overlapped with the backward pass where it can (a :class:`GradientSync`,
            e.g. :meth:`meow.distributed.DistContext.gradient_sync`); it is attached to the
            flat parameter here.
        weight_decay: decoupled weight decay (AdamW) of all the flow's parameters; 0: Adam (the paper).
        target_entropy: with a number, ``alpha`` is tuned towards it (nats of the sampled
            policy; docs/ALGORITHM.md, "Automatic temperature"); None: ``alpha`` stays fixed (the paper).
        alpha_lr: Adam learning rate of ``log alpha`` when it is tuned.
        target_bound: clamp the bootstrapped soft value from above at what the rewards seen allow,
            ``(r_max + alpha * d * log 2) / (1 - gamma)`` (docs/ALGORITHM.md, "Bounded target").
        log_prob_floor: with a number ``f``, the fit's ``log pi(a|s)`` of replay actions is
            floored at ``f * d`` nats (:meth:`FlowPolicy.q_values_floored`); None: no floor (the paper).
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
        weight_decay: float = 0.0,
        target_entropy: float | None = None,
        alpha_lr: float = 3e-4,
        target_bound: bool = False,
        log_prob_floor: float | None = None,
    ) -> None:
        if n_step < 1:
            raise ValueError(f"algo.n_step={n_step} is invalid; valid: an integer >= 1")
        self.device = policy.alpha.device
        self.capture = resolve_capture(capture, self.device)
        set_matmul_precision(matmul_precision, self.device)
        # On CUDA the update also runs as one CUDA graph under compile (of the compiled kernels:
        # compiled but launched one by one it stays launch-bound), unless torch.compile's own
        # CUDA-graph mode is asked for.
        self._graphed = self.device.type == "cuda" and (
            self.capture == "cudagraph" or (self.capture == "compile" and compile_mode != "reduce-overhead")
        )
        self.policy = policy
        self.target = copy.deepcopy(policy).requires_grad_(False).eval()
        self.normalizer = normalizer if normalizer is not None else nn.Identity()
        self.gamma = gamma
        self.tau = tau
        self.grad_clip = grad_clip
        self.n_step = n_step
        self.target_bound = target_bound
        self.log_prob_floor = None if log_prob_floor is None else float(log_prob_floor) * policy.action_dim
        # Every parameter is a view of one flat tensor (and every gradient of one flat gradient),
        # so that Adam, the grad-norm clip, the Polyak step and zeroing are one operation each
        # rather than one per parameter tensor: on the CPU those loops cost more than the
        # arithmetic, on a GPU more kernel launches. The fused kernel is several times faster
        # than the per-tensor loop on CPU and GPU; capturable keeps Adam's step counters on the
        # GPU so that a CUDA graph can replay it.
        self._params = list(policy.parameters())
        self._flat = flatten_parameters(self._params)
        self._target_flat = flatten_parameters(list(self.target.parameters()))
        self._grad_views = bind_flat_grad(self._flat, self._params)
        self.grad_sync = grad_sync
        if grad_sync is not None:
            grad_sync.attach(self._flat, self._params)
        fused = self.device.type in ("cpu", "cuda")
        capturable = self.device.type == "cuda" and self.capture != "none"
        if weight_decay > 0.0:
            self.optimizer = torch.optim.AdamW(
                [self._flat], lr=lr, weight_decay=weight_decay, fused=fused, capturable=capturable
            )
        else:
            self.optimizer = torch.optim.Adam([self._flat], lr=lr, fused=fused, capturable=capturable)
        self.target_entropy = target_entropy
        self.log_alpha: nn.Parameter | None = None
        self.alpha_optimizer: torch.optim.Optimizer | None = None
        if target_entropy is not None:
            # the temperature's own parameter and optimizer: it is not part of the flow
            self.log_alpha = nn.Parameter(policy.alpha.detach().log().clone())
            self.alpha_optimizer = torch.optim.Adam(
                [self.log_alpha], lr=alpha_lr, fused=fused, capturable=capturable
            )
        # the largest reward sampled so far (for target_bound), kept on the device
        self.reward_max = torch.full((), -math.inf, device=self.device)
        self.nonfinite = torch.zeros((), dtype=torch.bool, device=self.device)
        """True once any update produced a non-finite loss or gradient norm."""
        self._discounts = gamma ** torch.arange(n_step + 1, dtype=torch.float32, device=self.device)
        self._loss_fn = self._sampled_loss
        self._act_fn = self._act
        if self.capture == "compile":
            from torch._inductor import config as inductor_config

            # Inductor bakes the thread count into its CPU kernels but, left implicit, keeps it out
            # of its on-disk cache key: a kernel cached by a run with another thread count would
            # be reused (and run several times slower; pytorch/pytorch#160812). An explicit setting
            # is part of the key.
            inductor_config.cpp.threads = torch.get_num_threads()
            # Random numbers from aten's generators rather than inductor's own: a compiled
            # update then draws the same samples and dropout masks as an eager one from the
            # same seed (and aten's are the faster ones on the CPU).
            inductor_config.fallback_random = True
            # Sampling and the loss are compiled (forward and backward); the optimizer part is a
            # handful of fused operations that gain nothing from tracing (torch.optim breaks
            # the graph into many small ones, each with its own guard checks).
            # The compiled loss takes the flow's parameters as pieces of the flat parameter, so its
            # backward returns one gradient (the pieces' gradients concatenated in one kernel)
            # instead of 64 that autograd then adds into the flat gradient one by one.
            self._loss_module = _LossOfFlow(self.policy, self._sampled_loss)
            self._layout = [(name, p.shape, p.numel()) for name, p in policy.named_parameters()]
            self._loss_fn = torch.compile(self._flat_loss, mode=compile_mode, dynamic=False)
            if self.device.type == "cpu":
                # On the CPU, sampling one env's action is a few hundred tiny operations whose
                # dispatch costs more than their arithmetic; compiled it is a few calls.
                self._act_fn = torch.compile(self._act, mode=compile_mode, dynamic=False)
        # (graph, the buffer it reads, batch size, its outputs); holding the buffer keeps the
        # memory that the graph reads alive
        self._update_graph: tuple[torch.cuda.CUDAGraph, WindowSampler, int, dict[str, Tensor]] | None = None
        self._act_graphs: dict[tuple[tuple[int, ...], bool], tuple[torch.cuda.CUDAGraph, Tensor, Tensor]] = {}

    # ------------------------------------------------------------------ acting
    @torch.no_grad()
    def act(self, obs: Tensor, deterministic: bool = False) -> Tensor:
        """Actions in ``[-1, 1]`` for raw observations; sampled with the online flow in eval mode."""
        if self._graphed and obs.is_cuda:
            return self._act_replay(obs, deterministic)
        self.policy.eval()
        return self._act_fn(obs, deterministic)

    def _act(self, obs: Tensor, deterministic: bool) -> Tensor:
        obs = self.normalizer(obs)
        return self.policy.deterministic(obs) if deterministic else self.policy.sample(obs)[0]

    def _act_replay(self, obs: Tensor, deterministic: bool) -> Tensor:
        key = (tuple(obs.shape), deterministic)
        if key not in self._act_graphs:
            self.policy.eval()
            static_obs = obs.clone()
            rng = torch.cuda.get_rng_state(self.device)
            side = torch.cuda.Stream(self.device)
            side.wait_stream(torch.cuda.current_stream(self.device))
            with torch.cuda.stream(side):
                self._act(static_obs, deterministic)  # warm-up: lazy initialisations happen here
            torch.cuda.current_stream(self.device).wait_stream(side)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                static_action = self._act(static_obs, deterministic)
            torch.cuda.set_rng_state(rng, self.device)
            self._act_graphs[key] = (graph, static_obs, static_action)
        graph, static_obs, static_action = self._act_graphs[key]
        static_obs.copy_(obs)
        graph.replay()
        # The graph's output is overwritten by the next replay; callers keep what they get.
        return static_action.clone()

    # ---------------------------------------------------------------- the loss
    def _loss(self, batch: TransitionBatch) -> tuple[Tensor, dict[str, Tensor]]:
        """The loss of a batch of transitions ``(B, ...)`` or of n-step windows ``(B, n, ...)``."""
        if batch.rewards.dim() == 1:
            batch = TransitionBatch(*(x.unsqueeze(1) for x in batch))
        obs, actions = batch.obs, batch.actions
        with torch.no_grad():
            target = self._target(batch)
        states = self.normalizer(obs[:, 0])
        if self.log_prob_floor is None:
            q = self.policy.q_values(states, actions[:, 0])
        else:
            q = self.policy.q_values_floored(states, actions[:, 0], self.log_prob_floor)
        loss = 0.5 * (q - target["target"]).square().sum(0).mean()
        stats = {"q": q.detach().mean(), **{k: v.mean() for k, v in target.items()}}
        if self.log_alpha is not None:
            with torch.no_grad():  # the sampled policy's log-density at the batch's states
                stats["sample_log_prob"] = self.policy.sample(states)[1].mean()
        return loss, stats

    def _target(self, batch: TransitionBatch) -> dict[str, Tensor]:
        """The n-step soft Bellman target of windows ``(B, n, ...)`` (see the class docstring)."""
        size, n = batch.rewards.shape
        terminated = batch.terminated
        not_done = (1.0 - terminated) * (~batch.truncated).float()
        # alive[:, t] = 1 where step t belongs to the window: no termination, time-out or the
        # newest stored step before it. Float masks throughout (inductor's CPU code generator
        # mishandles boolean masks of mixed width here).
        alive = torch.cat([torch.ones_like(not_done[:, :1]), torch.cumprod(not_done[:, :-1], dim=1)], 1)
        disc = self._discounts
        soft_return = (alive * batch.rewards) @ disc[:n]
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
        if self.target_bound:
            # No policy on [-1, 1]^d has more entropy than the uniform one (d log 2), so no soft
            # value exceeds (r_max + alpha d log 2) / (1 - gamma); r_max: the largest reward sampled.
            self.reward_max.copy_(torch.maximum(self.reward_max, batch.rewards.max()))
            entropy_max = self.target.action_dim * math.log(2.0)
            v_max = (self.reward_max + self.target.alpha * entropy_max) / (1.0 - self.gamma)
            next_v = torch.minimum(next_v, v_max)
        bootstrap = disc[m + 1] * (1.0 - terminated[rows, m]) * next_v
        return {"target": soft_return + bootstrap, "next_v": next_v}

    # -------------------------------------------------------------- the update
    def _sampled_loss(self, buffer: WindowSampler, batch_size: int) -> tuple[Tensor, dict[str, Tensor]]:
        return self._loss(buffer.sample_windows(batch_size, self.n_step))

    def _flat_loss(self, buffer: WindowSampler, batch_size: int) -> tuple[Tensor, dict[str, Tensor]]:
        """:meth:`_sampled_loss` with the online flow's parameters replaced by views of pieces of
        the flat parameter (the same values): autograd then sees one leaf, the flat parameter."""
        chunks = torch.split(self._flat, [numel for _, _, numel in self._layout])
        pieces = zip(self._layout, chunks, strict=True)
        views = {"policy." + name: c.view(shape) for (name, shape, _), c in pieces}
        return torch.func.functional_call(self._loss_module, views, (buffer, batch_size))

    def _train_step(self, batch: TransitionBatch) -> dict[str, Tensor]:
        self.policy.train()
        return self._step(*self._loss(batch))

    def _update_step(self, buffer: WindowSampler, batch_size: int) -> dict[str, Tensor]:
        self.policy.train()
        return self._step(*self._loss_fn(buffer, batch_size))

    def _step(self, loss: Tensor, stats: dict[str, Tensor]) -> dict[str, Tensor]:
        """Backward, gradient hook, clip, Adam and Polyak for a loss (one fused kernel each where
        possible, so this part runs eagerly under every capture mode)."""
        grad = self._flat.grad
        grad.zero_()  # the parameters' gradients are views of it: backward accumulates in place
        sync = self.grad_sync
        if sync is not None:
            # Inside a CUDA graph the gradient is reduced whole after backward: asynchronous
            # collectives started from autograd's hooks are not recorded here.
            sync.begin(overlap=not self._graphed)
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
            stats["alpha"] = self._temperature_step(stats["sample_log_prob"])
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

    def update(self, batch: TransitionBatch) -> dict[str, Tensor]:
        """One gradient step on a given batch (eager) and one Polyak step; detached scalars."""
        self._rebind_grads()
        return self._train_step(batch)

    def update_from(self, buffer: WindowSampler, batch_size: int) -> dict[str, Tensor]:
        """Samples ``batch_size`` windows of ``n_step`` transitions from ``buffer`` and takes one
        update step, run as ``capture`` says. Returns detached scalar tensors (under
        ``cudagraph`` the same tensors every call, overwritten by the next update)."""
        if self._rebind_grads():
            self._update_graph = None  # the recorded graph writes the old gradient
        if not self._graphed:
            return self._update_step(buffer, batch_size)
        if self._update_graph is None or self._update_graph[1:3] != (buffer, batch_size):
            self._capture_update(buffer, batch_size)
        graph, _, _, stats = self._update_graph
        graph.replay()
        return stats

    def _capture_update(self, buffer: WindowSampler, batch_size: int) -> None:
        """Records the update step (eager or compiled kernels) as one CUDA graph, leaving the
        learner's state as it was.

        A few warm-up steps on a side stream create Adam's state and let the libraries
        pick their kernels; the parameters, target, optimizer state and RNG are then put back,
        so the first replay takes the step that an eager update would have taken.
        """
        tensors = [self._flat, self._target_flat, self.nonfinite, self.reward_max]
        optimizers = [self.optimizer]
        if self.log_alpha is not None:
            tensors += [self.log_alpha, self.policy.alpha, self.target.alpha]
            optimizers.append(self.alpha_optimizer)
        saved = [t.detach().clone() for t in tensors]
        fresh = not self.optimizer.state
        states = [s for opt in optimizers for s in opt.state.values()]
        opt_state = [v for s in states for v in s.values() if torch.is_tensor(v)]
        saved_opt = [v.clone() for v in opt_state]
        rng = torch.cuda.get_rng_state(self.device)
        side = torch.cuda.Stream(self.device)
        side.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(side):
            for _ in range(3):
                self._update_step(buffer, batch_size)
        torch.cuda.current_stream(self.device).wait_stream(side)
        with torch.no_grad():
            for t, s in zip(tensors, saved, strict=True):
                t.copy_(s)
            if fresh:  # Adam's state at step 0 is zeros
                for s in [s for opt in optimizers for s in opt.state.values()]:
                    for v in s.values():
                        if torch.is_tensor(v):
                            v.zero_()
            else:
                for t, s in zip(opt_state, saved_opt, strict=True):
                    t.copy_(s)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            stats = self._update_step(buffer, batch_size)
        torch.cuda.set_rng_state(rng, self.device)
        self._update_graph = (graph, buffer, batch_size, stats)

    # ------------------------------------------------------------- checkpoints
    def state_dict(self) -> dict:
        """Online and target weights, optimizer and normalizer state (plain modules, no graphs)."""
        state = {
            "policy": self.policy.state_dict(),
            "target": self.target.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "normalizer": self.normalizer.state_dict(),
            "reward_max": self.reward_max.clone(),
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
        with torch.no_grad():
            # absent from checkpoints written before these settings existed
            self.reward_max.copy_(state.get("reward_max", torch.tensor(-math.inf)))
            if self.log_alpha is not None:
                # a run that starts tuning from a fixed-alpha checkpoint starts from its alpha
                self.log_alpha.copy_(state.get("log_alpha", self.policy.alpha.log()))
                if "alpha_optimizer" in state:
                    self.alpha_optimizer.load_state_dict(state["alpha_optimizer"])
        self._update_graph = None
        self._act_graphs.clear()


class _LossOfFlow(nn.Module):
    """``loss(buffer, batch_size)`` as a module holding the flow (``policy``), so that
    ``torch.func.functional_call`` can run it with other tensors in place of the flow's parameters."""

    def __init__(self, policy: FlowPolicy, loss: Callable[..., tuple[Tensor, dict[str, Tensor]]]) -> None:
        super().__init__()
        self.policy = policy
        self._loss = [loss]  # in a list: a bound method of the learner is not this module's state

    def forward(self, buffer: WindowSampler, batch_size: int) -> tuple[Tensor, dict[str, Tensor]]:
        return self._loss[0](buffer, batch_size)


# --------------------------------------------------------------- flat parameters
def flatten_parameters(params: list[Tensor]) -> nn.Parameter:
    """Moves ``params`` into one contiguous parameter and makes each a view of it (values kept).

    Modules keep their own parameters (their state dicts and forward passes are unchanged); an
    optimizer, a clip or a Polyak step over the returned tensor acts on all of them at once.
    """
    with torch.no_grad():
        flat = nn.Parameter(torch.cat([p.detach().reshape(-1) for p in params]))
    offset = 0
    for p in params:
        p.data = flat.data[offset : offset + p.numel()].view_as(p)
        offset += p.numel()
    return flat


def bind_flat_grad(flat: nn.Parameter, params: list[Tensor]) -> list[Tensor]:
    """Gives ``flat`` a zero gradient and makes each parameter's gradient a view of it, so that
    backward passes accumulate into it in place; returns the views."""
    flat.grad = torch.zeros_like(flat)
    views, offset = [], 0
    for p in params:
        p.grad = flat.grad[offset : offset + p.numel()].view_as(p)
        views.append(p.grad)
        offset += p.numel()
    return views


def flat_optimizer_state(state: dict, params: list[Tensor]) -> dict:
    """An Adam state dict over the flat parameter; one saved with a parameter per tensor (older
    checkpoints) has its moments concatenated in the parameters' order."""
    ids = state["param_groups"][0]["params"]
    if len(ids) == 1:
        return state
    if len(ids) != len(params):
        raise ValueError(f"the optimizer state holds {len(ids)} parameters, the flow has {len(params)}")
    per = [state["state"].get(i) for i in ids]
    group = {**state["param_groups"][0], "params": [0]}
    if any(s is None for s in per):  # no step taken yet
        return {"state": {}, "param_groups": [group]}
    flat = {
        key: torch.cat([s[key].reshape(-1) for s in per])
        for key in per[0]
        if torch.is_tensor(per[0][key]) and per[0][key].dim() > 0
    }
    flat["step"] = per[0]["step"]
    return {"state": {0: flat}, "param_groups": [group]}

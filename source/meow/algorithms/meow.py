"""MEow's learner: one soft Bellman loss trains the flow as policy and critic at once."""

from __future__ import annotations

import copy

import torch
from torch import Tensor, nn

from meow.modules import FlowPolicy
from meow.storage import TransitionBatch


class MEow:
    """Soft Bellman regression of the flow's soft Q onto a target built from its exact soft V.

        y = r + gamma * (1 - terminated) * min_k V_k^target(s')
        L = mean_k,batch 0.5 * (Q_k(s, a) - y)^2

    One Adam over all parameters, global grad-norm clipping, Polyak averaging of the target
    after every step. Truncated episodes bootstrap (their true final observation is in
    ``next_obs``); terminated ones do not.

    :meth:`update` is a pure tensor program: no host synchronisation and no Python
    branching on tensor values, so it can be compiled whole. Non-finite losses are
    recorded in :attr:`nonfinite` and reported by the runner at its next check.

    Args:
        policy: the flow (online network); the target is a copy of it.
        normalizer: applied to observations before the flow (``nn.Identity`` for none).
        lr: Adam learning rate.
        gamma: discount.
        tau: Polyak coefficient of the target update.
        grad_clip: maximum global gradient norm.
        compile: compile the loss (forward and backward) with ``torch.compile``.
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
        compile: bool = False,
    ) -> None:
        self.policy = policy
        self.target = copy.deepcopy(policy).requires_grad_(False).eval()
        self.normalizer = normalizer if normalizer is not None else nn.Identity()
        self.gamma = gamma
        self.tau = tau
        self.grad_clip = grad_clip
        # The fused kernel is several times faster than the per-tensor loop on CPU and GPU.
        self.optimizer = torch.optim.Adam(
            policy.parameters(), lr=lr, fused=policy.alpha.device.type in ("cpu", "cuda")
        )
        self._params = list(policy.parameters())
        self._target_params = list(self.target.parameters())
        self.nonfinite = torch.zeros((), dtype=torch.bool, device=policy.alpha.device)
        """True once any update produced a non-finite loss or gradient norm."""
        self._loss_fn = self._loss
        if compile:
            from torch._inductor import config as inductor_config

            # Inductor bakes the thread count into its CPU kernels but, left implicit, keeps it out
            # of its on-disk cache key: a kernel cached by a run with another thread count would
            # be reused (and run several times slower; pytorch/pytorch#160812). An explicit setting
            # is part of the key.
            inductor_config.cpp.threads = torch.get_num_threads()
            self._loss_fn = torch.compile(self._loss)

    @torch.no_grad()
    def act(self, obs: Tensor, deterministic: bool = False) -> Tensor:
        """Actions in ``[-1, 1]`` for raw observations; sampled with the online flow in eval mode."""
        self.policy.eval()
        obs = self.normalizer(obs)
        return self.policy.deterministic(obs) if deterministic else self.policy.sample(obs)[0]

    def _loss(self, batch: TransitionBatch) -> tuple[Tensor, dict[str, Tensor]]:
        obs = self.normalizer(batch.obs)
        next_obs = self.normalizer(batch.next_obs)
        with torch.no_grad():
            next_v = self.target.values(next_obs).min(0).values
            target = batch.rewards + self.gamma * (1.0 - batch.terminated) * next_v
        q = self.policy.q_values(obs, batch.actions)
        loss = 0.5 * (q - target).square().sum(0).mean()
        stats = {"q": q.detach().mean(), "target": target.mean(), "next_v": next_v.mean()}
        return loss, stats

    def update(self, batch: TransitionBatch) -> dict[str, Tensor]:
        """One gradient step on ``batch`` and one Polyak step; returns detached scalar tensors."""
        self.policy.train()
        loss, stats = self._loss_fn(batch)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = nn.utils.clip_grad_norm_(self._params, self.grad_clip, foreach=True)
        self.optimizer.step()
        with torch.no_grad():
            torch._foreach_lerp_(self._target_params, self._params, self.tau)
            self.nonfinite |= ~(torch.isfinite(loss) & torch.isfinite(grad_norm))
        return {"loss": loss.detach(), "grad_norm": grad_norm, **stats}

    def state_dict(self) -> dict:
        """Online and target weights, optimizer and normalizer state."""
        return {
            "policy": self.policy.state_dict(),
            "target": self.target.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "normalizer": self.normalizer.state_dict(),
        }

    def load_state_dict(self, state: dict) -> None:
        """Restores :meth:`state_dict`."""
        self.policy.load_state_dict(state["policy"])
        self.target.load_state_dict(state["target"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.normalizer.load_state_dict(state["normalizer"])

"""Running mean/variance observation normalization."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

Moments = tuple[Tensor, Tensor, Tensor]


class EmpiricalNormalization(nn.Module):
    """Normalizes inputs by a running mean and standard deviation.

    Statistics are updated explicitly with :meth:`update` (by the runner, on collected
    observations) and never inside :meth:`forward`, so that applying the normalizer in
    the learner's update is a pure function of its buffers.

    Args:
        shape: feature shape.
        eps: added to the variance before the square root.
        clip: normalized values are clipped to ``[-clip, clip]``.
        reduce_moments: maps a batch's ``(count, mean, variance)`` to those of a larger batch
            before they are merged, e.g. the union of every rank's batch
            (:meth:`meow.distributed.DistContext.reduce_moments`); None uses the batch as is.
    """

    def __init__(
        self,
        shape: int | tuple[int, ...],
        eps: float = 1e-8,
        clip: float = 10.0,
        reduce_moments: Callable[[Tensor, Tensor, Tensor], Moments] | None = None,
    ) -> None:
        super().__init__()
        self.reduce_moments = reduce_moments
        shape = (shape,) if isinstance(shape, int) else tuple(shape)
        self.eps = eps
        self.clip = clip
        self.register_buffer("mean", torch.zeros(shape))
        self.register_buffer("var", torch.ones(shape))
        self.register_buffer("count", torch.zeros((), dtype=torch.float64))

    def forward(self, x: Tensor) -> Tensor:
        return ((x - self.mean) * torch.rsqrt(self.var + self.eps)).clamp(-self.clip, self.clip)

    @torch.no_grad()
    def update(self, x: Tensor) -> None:
        """Merges a batch ``(B, *shape)`` into the statistics (parallel variance formula)."""
        x = x.reshape(-1, *self.mean.shape).to(self.mean.dtype)
        # new_full, not torch.tensor(..., device=...): on a GPU the latter is a host-to-device copy,
        # which waits for the stream, once per training step
        batch_count = self.count.new_full((), float(x.shape[0]))
        batch_mean = x.mean(0)
        batch_var = x.var(0, unbiased=False)
        if self.reduce_moments is not None:
            batch_count, batch_mean, batch_var = self.reduce_moments(batch_count, batch_mean, batch_var)
        total = self.count + batch_count
        ratio = (batch_count / total).to(self.mean.dtype)
        delta = batch_mean - self.mean
        self.mean += ratio * delta
        self.var += ratio * (batch_var - self.var + delta.square() * (1.0 - ratio))
        self.count.copy_(total)


class RewardScale(nn.Module):
    """Divides rewards by a running scale of the discounted return (SimbaV2's and FlashSAC's scheme).

    Each env keeps its discounted return ``G <- gamma * G + r`` (reset to 0 when its episode ends);
    :meth:`update` merges every step's ``G`` of all envs into a running variance and keeps the
    largest ``|G|`` seen, and sets

        scale = max(sqrt(var(G) + eps), max |G| / g_max)

    The second term keeps normalised returns within ``g_max`` in absolute value, so a task whose
    return barely varies (a constant alive bonus) is not blown up. The learner divides the rewards
    of its targets by :attr:`scale` when it samples them (the replay buffer keeps raw rewards, so
    all of them are on the current scale); logged and evaluated returns stay raw. Like
    :class:`EmpiricalNormalization` the statistics move only in :meth:`update`.

    Args:
        num_envs: parallel envs whose returns are tracked.
        gamma: the learner's discount.
        g_max: bound on the normalised returns' magnitude (SimbaV2 and FlashSAC: 5).
        eps: added to the variance before the square root.
        reduce_moments: as :class:`EmpiricalNormalization`'s (the union of every rank's returns).
        reduce_max: maps this rank's largest ``|G|`` to the largest over ranks (None: as is).
    """

    def __init__(
        self,
        num_envs: int,
        gamma: float,
        g_max: float = 5.0,
        eps: float = 1e-8,
        reduce_moments: Callable[[Tensor, Tensor, Tensor], Moments] | None = None,
        reduce_max: Callable[[Tensor], Tensor] | None = None,
    ) -> None:
        super().__init__()
        if not g_max > 0:
            raise ValueError(f"algo.reward_norm_max={g_max} is invalid; valid: a number > 0")
        self.gamma, self.g_max, self.eps = float(gamma), float(g_max), eps
        self.reduce_max = reduce_max
        self.moments = EmpiricalNormalization((), eps=eps, reduce_moments=reduce_moments)
        self.register_buffer("returns", torch.zeros(num_envs))
        self.register_buffer("return_max", torch.zeros(()))
        self.register_buffer("scale", torch.ones(()))

    def forward(self, rewards: Tensor) -> Tensor:
        return rewards / self.scale

    @torch.no_grad()
    def update(self, rewards: Tensor, done: Tensor) -> None:
        """Adds one vectorized step: ``rewards`` and ``done`` (terminated or truncated) of shape ``(N,)``."""
        self.returns.mul_(self.gamma).add_(rewards.to(self.returns.dtype))
        self.moments.update(self.returns)
        largest = self.returns.abs().max()
        if self.reduce_max is not None:
            largest = self.reduce_max(largest)
        torch.maximum(self.return_max, largest, out=self.return_max)
        self.returns.masked_fill_(done, 0.0)
        spread = torch.sqrt(self.moments.var + self.eps)
        torch.maximum(spread, self.return_max / self.g_max, out=self.scale)

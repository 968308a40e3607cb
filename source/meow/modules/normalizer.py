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

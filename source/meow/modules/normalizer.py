"""Running mean/variance observation normalization."""

from __future__ import annotations

import torch
from torch import Tensor, nn


class EmpiricalNormalization(nn.Module):
    """Normalizes inputs by a running mean and standard deviation.

    Statistics are updated explicitly with :meth:`update` (by the runner, on collected
    observations) and never inside :meth:`forward`, so that applying the normalizer in
    the learner's update is a pure function of its buffers.

    Args:
        shape: feature shape.
        eps: added to the variance before the square root.
        clip: normalized values are clipped to ``[-clip, clip]``.
    """

    def __init__(self, shape: int | tuple[int, ...], eps: float = 1e-8, clip: float = 10.0) -> None:
        super().__init__()
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
        batch_count = x.shape[0]
        batch_mean = x.mean(0)
        batch_var = x.var(0, unbiased=False)
        total = self.count + batch_count
        ratio = (batch_count / total).to(self.mean.dtype)
        delta = batch_mean - self.mean
        self.mean += ratio * delta
        self.var += ratio * (batch_var - self.var + delta.square() * (1.0 - ratio))
        self.count.copy_(total)

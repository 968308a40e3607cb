"""State-conditioned element-wise scaling: the flow's only 'linear' layer (S_l)."""

from __future__ import annotations

import torch
from torch import Tensor

from meow.flows.transform import Transform
from meow.nn.layers import mlp


class StateScaling(Transform):
    """``y = sigma(s) * x`` with a bounded, state-dependent log-sigma.

    ``log sigma(s) = lo + (hi - lo) * (tanh(h(s)) + 1) / 2`` keeps the scale inside
    ``[exp(lo), exp(hi)]``. Applied to a standard normal it gives the prior
    ``N(0, diag(sigma(s)^2))``. The Jacobian does not depend on ``x``, so its
    log-determinant is a function of the state alone and enters the soft value.

    Args:
        dim: action size.
        context_dim: state size.
        log_sigma_min: lower bound of log-sigma.
        log_sigma_max: upper bound of log-sigma.
        hidden: hidden sizes of ``h`` (no dropout, zero-initialised weights).
        norm: ``none`` (the paper) | ``layer`` | ``rms``: normalisation after each hidden linear of ``h``.
    """

    state_only_ladj = True

    def __init__(
        self,
        dim: int,
        context_dim: int,
        log_sigma_min: float,
        log_sigma_max: float,
        hidden: tuple[int, ...] = (64, 64),
        norm: str = "none",
    ) -> None:
        super().__init__()
        if not log_sigma_min < log_sigma_max:
            raise ValueError(f"log_sigma_min={log_sigma_min} must be below log_sigma_max={log_sigma_max}")
        self.log_sigma_min = float(log_sigma_min)
        self.log_sigma_max = float(log_sigma_max)
        self.net = mlp(context_dim, hidden, dim, init="zeros", norm=norm)

    def log_sigma(self, context: Tensor) -> Tensor:
        """Per-dimension log-scale, bounded to ``[log_sigma_min, log_sigma_max]``."""
        half_range = 0.5 * (self.log_sigma_max - self.log_sigma_min)
        return self.log_sigma_min + half_range * (torch.tanh(self.net(context)) + 1.0)

    def forward(self, x: Tensor, context: Tensor) -> tuple[Tensor, Tensor]:
        log_sigma = self.log_sigma(context)
        return x * log_sigma.exp(), log_sigma.sum(-1)

    def inverse(self, y: Tensor, context: Tensor) -> tuple[Tensor, Tensor]:
        log_sigma = self.log_sigma(context)
        return y * torch.exp(-log_sigma), -log_sigma.sum(-1)

    def inverse_ladj(self, context: Tensor) -> Tensor:
        return -self.log_sigma(context).sum(-1)

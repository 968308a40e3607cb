"""tanh squashing onto the action box [-1, 1]^d."""

from __future__ import annotations

import torch
from torch import Tensor

from meow.flows.transform import Transform


class TanhSquash(Transform):
    """``a = tanh(x)``, the last layer of the sampling direction.

    The inverse clamps ``a`` to ``±(1 - bound_eps)`` before ``atanh`` so that actions on the
    boundary (uniform warm-up actions, clipped replay data) keep a finite latent.

    Args:
        eps: added inside ``log(1 - a^2 + eps)`` for numerical safety.
        bound_eps: distance from ±1 to which actions are clamped in the inverse.
    """

    def __init__(self, eps: float = 1e-6, bound_eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        self.bound = 1.0 - bound_eps

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        a = torch.tanh(x)
        return a, torch.log1p(self.eps - a.square()).sum(-1)

    def inverse(self, y: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        a = y.clamp(-self.bound, self.bound)
        return torch.atanh(a), -torch.log1p(self.eps - a.square()).sum(-1)

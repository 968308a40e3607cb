"""The bookkeeping primitive shared by every flow layer."""

from __future__ import annotations

import torch
from torch import Tensor, nn


class Transform(nn.Module):
    """A state-conditioned invertible map ``y = f(x | s)`` on the action space.

    Both directions return the output together with the log-absolute-determinant of
    their own Jacobian (``ladj``), summed over the last dimension, so a chain of
    transforms is bookkept by adding the ``ladj`` of each step.

    The direction called ``forward`` is the sampling direction (latent -> action);
    ``inverse`` is the density direction (action -> latent).
    """

    state_only_ladj: bool = False
    """True when the Jacobian depends on the state but not on the input. Such a layer
    belongs to the set ``S_l`` of the energy-based flow: its log-determinant is part of
    the normalizing constant (the soft value) rather than of the energy (the soft Q)."""

    def forward(self, x: Tensor, context: Tensor) -> tuple[Tensor, Tensor]:
        """Maps ``x`` to ``y``; returns ``(y, log|det dy/dx|)``."""
        raise NotImplementedError

    def inverse(self, y: Tensor, context: Tensor) -> tuple[Tensor, Tensor]:
        """Maps ``y`` back to ``x``; returns ``(x, log|det dx/dy|)``."""
        raise NotImplementedError

    def inverse_ladj(self, context: Tensor) -> Tensor:
        """``log|det dx/dy|`` from the state alone; only for ``state_only_ladj`` layers."""
        raise TypeError(f"{type(self).__name__} has an input-dependent Jacobian")


def zeros_ladj(x: Tensor) -> Tensor:
    """The log-determinant of a volume-preserving layer, shaped like a summed ``ladj``."""
    return torch.zeros(x.shape[:-1], dtype=x.dtype, device=x.device)

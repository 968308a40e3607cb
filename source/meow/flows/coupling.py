"""Additive (volume-preserving) coupling layer, NICE-style, conditioned on the state."""

from __future__ import annotations

import torch
from torch import Tensor

from meow.flows.transform import Transform, zeros_ladj
from meow.nn.layers import mlp


class AdditiveCoupling(Transform):
    """``y = b*x + (1-b) * (x + t(b*x, s))`` for a fixed binary mask ``b``.

    The shift network ``t`` sees the masked input and the state. The Jacobian is
    triangular with a unit diagonal, so ``log|det| = 0`` in both directions.

    Args:
        mask: binary vector of the action size; ones mark the dimensions passed through.
        context_dim: size of the state that conditions the shift.
        hidden: hidden layer sizes of the shift network.
        dropout: dropout probability after each hidden layer.
        layer_norm: whether each hidden linear is followed by a LayerNorm.
        zero_bias: biases start at zero (else PyTorch's default uniform, as the paper's release
            leaves them); the weights are orthogonal either way.
    """

    def __init__(
        self,
        mask: Tensor,
        context_dim: int,
        hidden: tuple[int, ...] = (64, 64),
        dropout: float = 0.1,
        layer_norm: bool = True,
        zero_bias: bool = True,
    ) -> None:
        super().__init__()
        dim = mask.numel()
        self.register_buffer("mask", mask.float().reshape(dim))
        self.shift_net = mlp(
            dim + context_dim,
            hidden,
            dim,
            layer_norm=layer_norm,
            dropout=dropout,
            init="orthogonal" if zero_bias else "orthogonal_default_bias",
        )

    def _shift(self, x: Tensor, context: Tensor) -> Tensor:
        t = self.shift_net(torch.cat((self.mask * x, context), dim=-1))
        return (1.0 - self.mask) * t

    def forward(self, x: Tensor, context: Tensor) -> tuple[Tensor, Tensor]:
        return x + self._shift(x, context), zeros_ladj(x)

    def inverse(self, y: Tensor, context: Tensor) -> tuple[Tensor, Tensor]:
        # mask * y == mask * x, so the shift can be recomputed from the output.
        return y - self._shift(y, context), zeros_ladj(y)

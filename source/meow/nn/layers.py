"""Building blocks: learnable-beta Swish, MLPs, and stacked (ensemble) MLPs."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from meow.utils.checks import check_choice


class Swish(nn.Module):
    """``x * sigmoid(beta * x)`` with one learnable ``beta`` per unit (initialised to 1).

    Args:
        features: number of units.
        heads: when given, one ``beta`` per head and unit, for inputs shaped ``(heads, B, features)``.
    """

    def __init__(self, features: int, heads: int | None = None) -> None:
        super().__init__()
        shape = (features,) if heads is None else (heads, 1, features)
        self.beta = nn.Parameter(torch.ones(shape))

    def forward(self, x: Tensor) -> Tensor:
        return x * torch.sigmoid(self.beta * x)


class Dropout(nn.Module):
    """Inverted dropout whose masks come from 32-bit random integers.

    The same function as ``nn.Dropout`` (each unit is zeroed with probability ``p`` and the
    others scaled by ``1 / (1 - p)`` in training mode; the identity in eval mode), with ``p``
    rounded to a multiple of ``2**-32``. The mask is drawn as raw random bits, two units per
    64-bit random number, which on the CPU costs several times less than ``bernoulli_`` (the
    coupling networks' eight dropout layers were a tenth of an update). 32-bit rather than
    narrower slices because ``torch.compile``'s CPU code generator vectorizes loops over 32-bit
    integers but not over 16-bit ones: with 16-bit slices the fused LayerNorm-Swish-dropout loop
    ran scalar, 3.6 times slower. Only aten random-number operations are used, so compiled and
    captured updates draw the same masks as eager ones from the same generator state.

    Args:
        p: dropout probability in ``[0, 1)``.
    """

    def __init__(self, p: float) -> None:
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"dropout={p} is invalid; valid: a probability in [0, 1)")
        levels = round(p * 2**32)
        self.p = levels / 2**32
        # a unit is kept where its 32-bit signed random integer is >= threshold
        self.threshold = levels - 2**31
        self.scale = 1.0 / (1.0 - self.p)

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or self.p == 0.0:
            return x
        n = x.numel()
        # the whole 64-bit range, so that both 32-bit halves are uniform
        bits = torch.randint(-(2**63), 2**63 - 1, ((n + 1) // 2,), dtype=torch.int64, device=x.device)
        bits = bits.view(torch.int32)[:n].view(x.shape)
        # keep = (bits >= threshold) as 0 or 1, written as a clamp: compiled, a comparison's
        # boolean result is what autograd saves for the backward pass, and the CPU code
        # generator's boolean stores made that loop 4.5 times slower than the clamp's
        keep = torch.clamp(bits, self.threshold - 1, self.threshold) - (self.threshold - 1)
        return x * keep * self.scale

    def extra_repr(self) -> str:
        return f"p={self.p}"


HIDDEN_NORMS = ("none", "layer", "rms")
"""Normalisation after a hidden linear: none, LayerNorm, or RMSNorm (both with a learnable gain;
LayerNorm also with a bias)."""


def hidden_norm(kind: str, width: int, heads: int | None = None) -> nn.Module | None:
    """The normalisation module ``kind`` (:data:`HIDDEN_NORMS`) over ``width`` features; ``heads``:
    one gain (and bias) per head for inputs shaped ``(heads, B, width)``. None for ``none``."""
    check_choice("norm", kind, HIDDEN_NORMS)
    if kind == "none":
        return None
    return HeadNorm(width, heads or 1, rms=kind == "rms")


class HeadNorm(nn.Module):
    """LayerNorm or RMSNorm over the last dimension with a gain (and for LayerNorm a bias) per head.

    Args:
        width: features normalised.
        heads: heads with their own gain and bias; inputs ``(heads, B, width)`` or, for one head,
            ``(B, width)``.
        rms: RMSNorm (scale by the root mean square, no centring, no bias) instead of LayerNorm.
    """

    def __init__(self, width: int, heads: int = 1, rms: bool = False) -> None:
        super().__init__()
        self.width, self.rms = width, rms
        shape = (width,) if heads == 1 else (heads, 1, width)
        self.weight = nn.Parameter(torch.ones(shape))
        self.bias = None if rms else nn.Parameter(torch.zeros(shape))

    def forward(self, x: Tensor) -> Tensor:
        if self.rms:
            return x * torch.rsqrt(x.square().mean(-1, keepdim=True) + 1e-6) * self.weight
        return torch.nn.functional.layer_norm(x, (self.width,)) * self.weight + self.bias

    def extra_repr(self) -> str:
        return f"{self.width}, {'rms' if self.rms else 'layer'}"


def _init_linear(layer: nn.Linear, init: str) -> None:
    if init in ("orthogonal", "orthogonal_default_bias"):
        nn.init.orthogonal_(layer.weight)
        if init == "orthogonal":
            nn.init.zeros_(layer.bias)
    elif init == "zeros":
        # Weights only: biases keep PyTorch's default uniform init, as in the reference.
        nn.init.zeros_(layer.weight)
    elif init != "default":
        raise ValueError(f"unknown init '{init}'; valid: orthogonal, orthogonal_default_bias, zeros, default")


def mlp(
    in_dim: int,
    hidden: tuple[int, ...],
    out_dim: int,
    *,
    layer_norm: bool = False,
    dropout: float = 0.0,
    init: str = "default",
    norm: str = "none",
) -> nn.Sequential:
    """``Linear -> [LayerNorm] -> Swish -> [Dropout]`` per hidden layer, then a Linear.

    Args:
        in_dim: input size.
        hidden: hidden layer sizes.
        out_dim: output size.
        layer_norm: LayerNorm after each hidden linear.
        dropout: dropout probability after each hidden activation (0 disables it).
        init: ``orthogonal`` (weights orthogonal, biases zero), ``orthogonal_default_bias``
            (weights orthogonal, biases PyTorch's default uniform), ``zeros`` (weights zero)
            or ``default`` (PyTorch's).
        norm: ``none | layer | rms`` (:data:`HIDDEN_NORMS`) after each hidden linear, where
            ``layer_norm`` puts none (for the networks that have none in the paper).
    """
    layers: list[nn.Module] = []
    last = in_dim
    for width in hidden:
        layers.append(nn.Linear(last, width))
        if layer_norm:
            layers.append(nn.LayerNorm(width))
        elif (extra := hidden_norm(norm, width)) is not None:
            layers.append(extra)
        layers.append(Swish(width))
        if dropout > 0.0:
            layers.append(Dropout(dropout))
        last = width
    layers.append(nn.Linear(last, out_dim))
    for layer in layers:
        if isinstance(layer, nn.Linear):
            _init_linear(layer, init)
    return nn.Sequential(*layers)


class EnsembleLinear(nn.Module):
    """``heads`` independent linear layers evaluated side by side.

    Input ``(B, in)`` is shared by all heads; input ``(heads, B, in)`` gives each head its
    own. Output is ``(heads, B, out)``. Weights start at zero; biases use PyTorch's
    default ``U(-1/sqrt(in), 1/sqrt(in))``.

    One matrix product per head, stacked, rather than one batched product: the weight gradient
    is ``x^T dy``, a product over the batch, and as a batched product (``bmm``) cuBLAS runs it
    with small tiles and no split over the batch: 0.57 ms for two 256x256 heads at batch 16384
    on an H100, against 0.11 ms as two plain products (measured 2026-11-27); on the CPU the
    plain products are faster as well.
    """

    def __init__(self, heads: int, in_dim: int, out_dim: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(heads, in_dim, out_dim))
        bound = 1.0 / math.sqrt(in_dim)
        self.bias = nn.Parameter(torch.empty(heads, 1, out_dim).uniform_(-bound, bound))

    def forward(self, x: Tensor) -> Tensor:
        heads = self.weight.shape[0]
        inputs = [x] * heads if x.dim() == 2 else x.unbind(0)
        return torch.stack([torch.addmm(self.bias[h], inputs[h], self.weight[h]) for h in range(heads)])


class EnsembleMLP(nn.Module):
    """``heads`` MLPs ``in -> hidden -> out`` with Swish (and ``norm`` after each hidden linear),
    zero-initialised weights.

    Returns ``(heads, B, out)``. Used for the twin reward-shifting networks, so both
    heads are one stacked computation rather than two passes or a duplicated batch.
    """

    def __init__(
        self, heads: int, in_dim: int, hidden: tuple[int, ...], out_dim: int, norm: str = "none"
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        last = in_dim
        for width in hidden:
            layers.append(EnsembleLinear(heads, last, width))
            if (extra := hidden_norm(norm, width, heads)) is not None:
                layers.append(extra)
            layers.append(Swish(width, heads=heads))
            last = width
        layers.append(EnsembleLinear(heads, last, out_dim))
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)

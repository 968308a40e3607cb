"""Building blocks: learnable Swish, the MLP factory and its inits, stacked ensemble layers."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from meow.nn.layers import Dropout, EnsembleLinear, Swish, mlp


def test_swish_with_unit_beta_is_silu() -> None:
    """``Swish`` starts at ``beta = 1``, i.e. ``x * sigmoid(x)``."""
    swish = Swish(5)
    x = 3.0 * torch.randn(7, 5)
    assert torch.equal(swish.beta.detach(), torch.ones(5))
    torch.testing.assert_close(swish(x), x * torch.sigmoid(x))


def test_swish_beta_is_per_unit_and_learnable() -> None:
    """Each unit uses its own ``beta`` and every ``beta`` receives a gradient."""
    swish = Swish(4)
    with torch.no_grad():
        swish.beta.copy_(torch.tensor([0.5, 1.0, 2.0, -1.0]))
    x = torch.randn(6, 4)
    torch.testing.assert_close(swish(x), x * torch.sigmoid(swish.beta * x))
    assert isinstance(swish.beta, nn.Parameter)
    swish(x).sum().backward()
    assert swish.beta.grad is not None
    assert (swish.beta.grad.abs() > 0).all()


def test_swish_with_heads_uses_one_beta_per_head() -> None:
    """With ``heads``, input ``(H, B, F)`` is scaled by that head's betas."""
    swish = Swish(3, heads=2)
    assert swish.beta.shape == (2, 1, 3)
    with torch.no_grad():
        swish.beta[1].fill_(2.0)
    x = torch.randn(2, 5, 3)
    torch.testing.assert_close(swish(x)[0], x[0] * torch.sigmoid(x[0]))
    torch.testing.assert_close(swish(x)[1], x[1] * torch.sigmoid(2.0 * x[1]))


@pytest.mark.parametrize(("layer_norm", "dropout"), [(False, 0.0), (True, 0.0), (False, 0.2), (True, 0.1)])
def test_mlp_builds_layer_norm_and_dropout_only_when_asked(layer_norm: bool, dropout: float) -> None:
    """Per hidden layer: ``Linear -> [LayerNorm] -> Swish -> [Dropout]``; a Linear at the end."""
    net = mlp(5, (8, 6), 3, layer_norm=layer_norm, dropout=dropout)
    expected: list[type[nn.Module]] = []
    for _ in range(2):
        expected += [nn.Linear] + [nn.LayerNorm] * layer_norm + [Swish] + [Dropout] * (dropout > 0)
    expected.append(nn.Linear)
    assert [type(m) for m in net] == expected
    assert [m.normalized_shape for m in net if isinstance(m, nn.LayerNorm)] == [(8,), (6,)] * layer_norm
    assert all(m.p == pytest.approx(dropout, abs=2**-32) for m in net if isinstance(m, Dropout))
    assert [(m.in_features, m.out_features) for m in net if isinstance(m, nn.Linear)] == [
        (5, 8),
        (8, 6),
        (6, 3),
    ]


def test_mlp_zeros_init_keeps_default_biases() -> None:
    """``init="zeros"``: every weight is zero, biases are PyTorch's, so the output is the last bias."""
    net = mlp(4, (16, 16), 3, init="zeros")
    linears = [m for m in net if isinstance(m, nn.Linear)]
    for layer in linears:
        assert torch.equal(layer.weight, torch.zeros_like(layer.weight))
        assert layer.bias.abs().min() > 0
        assert layer.bias.abs().max() <= 1.0 / layer.in_features**0.5
    out = net(10.0 * torch.randn(5, 4))
    torch.testing.assert_close(out, linears[-1].bias.detach().expand(5, -1))


def test_mlp_orthogonal_init_gives_orthonormal_weights_and_zero_biases() -> None:
    """``init="orthogonal"``: rows (wide) or columns (tall) of every weight are orthonormal."""
    net = mlp(6, (8, 4), 3, init="orthogonal")
    for layer in (m for m in net if isinstance(m, nn.Linear)):
        w = layer.weight.detach().double()
        gram = w @ w.T if w.shape[0] <= w.shape[1] else w.T @ w
        torch.testing.assert_close(gram, torch.eye(min(w.shape), dtype=torch.float64), atol=1e-6, rtol=0.0)
        assert torch.equal(layer.bias, torch.zeros_like(layer.bias))


def test_mlp_rejects_unknown_init() -> None:
    """An unknown init names itself and the valid choices."""
    with pytest.raises(ValueError, match=r"unknown init 'xavier'.*orthogonal"):
        mlp(3, (4,), 2, init="xavier")


def test_ensemble_linear_matches_per_head_matmuls() -> None:
    """Shared ``(B, in)`` and per-head ``(H, B, in)`` inputs both equal ``x_h @ W_h + b_h``."""
    layer = EnsembleLinear(3, 5, 2).double()
    assert torch.equal(layer.weight, torch.zeros_like(layer.weight))  # zero-initialised
    assert 0 < layer.bias.abs().max() <= 1.0 / 5**0.5
    with torch.no_grad():
        layer.weight.normal_()
    shared = torch.randn(7, 5, dtype=torch.float64)
    per_head = torch.randn(3, 7, 5, dtype=torch.float64)
    out_shared, out_per_head = layer(shared), layer(per_head)
    assert out_shared.shape == out_per_head.shape == (3, 7, 2)
    for h in range(3):
        torch.testing.assert_close(out_shared[h], shared @ layer.weight[h] + layer.bias[h, 0])
        torch.testing.assert_close(out_per_head[h], per_head[h] @ layer.weight[h] + layer.bias[h, 0])
    torch.testing.assert_close(layer(shared.expand(3, -1, -1)), out_shared)
    # gradients: each head's weight gets x_h^T dy_h; a shared input gets the sum over heads
    shared.requires_grad_(True)
    dy = torch.randn(3, 7, 2, dtype=torch.float64)
    (layer(shared) * dy).sum().backward()
    for h in range(3):
        torch.testing.assert_close(layer.weight.grad[h], shared.detach().T @ dy[h])
        torch.testing.assert_close(layer.bias.grad[h, 0], dy[h].sum(0))
    torch.testing.assert_close(shared.grad, sum(dy[h] @ layer.weight[h].detach().T for h in range(3)))


def test_dropout_zeroes_units_with_its_probability_and_keeps_the_mean() -> None:
    """Training mode: about p of the units are zero, the others scaled by 1 / (1 - p), so the
    mean is kept; both 32-bit halves of the random words contribute (no stuck units); eval
    mode and p = 0 are the identity."""
    torch.manual_seed(0)
    drop = Dropout(0.1)
    assert drop.p == pytest.approx(0.1, abs=2**-32)
    x = torch.ones(400, 1001)  # an odd size: the last 64-bit word is only partly used
    y = drop(x)
    zero = y == 0
    assert abs(zero.float().mean().item() - drop.p) < 0.003
    torch.testing.assert_close(y[~zero], torch.full_like(y[~zero], 1.0 / (1.0 - drop.p)))
    # units at even and odd positions (one 32-bit half each) are dropped at the same rate
    rates = [zero.flatten()[k::2].float().mean().item() for k in range(2)]
    assert max(rates) - min(rates) < 0.01
    # two draws differ (fresh masks each call)
    assert not torch.equal(zero, drop(x) == 0)
    assert abs(drop(x).mean().item() - 1.0) < 0.01
    assert torch.equal(drop.eval()(x), x)
    assert torch.equal(Dropout(0.0)(x), x)
    with pytest.raises(ValueError, match="dropout=1.0 is invalid"):
        Dropout(1.0)

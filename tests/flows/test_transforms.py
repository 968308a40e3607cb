"""The flow layers: invertibility, exact log-determinants, gradients and bounds."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable

import pytest
import torch
from torch import Tensor, nn
from torch.autograd.functional import jacobian

from meow.flows import AdditiveCoupling, StateScaling, TanhSquash, Transform

DIM = 3
CONTEXT_DIM = 2
BATCH = 6
LAYERS = ["coupling-even", "coupling-odd", "scaling", "squash"]
DIRECTIONS = ["forward", "inverse"]


def _make(name: str, randomize: Callable[..., nn.Module]) -> Transform:
    """A small float64 layer in eval mode with non-trivial (re-randomised) parameters."""
    if name == "coupling-even":
        layer = AdditiveCoupling(torch.tensor([1.0, 0.0, 1.0]), CONTEXT_DIM, hidden=(8, 8))
    elif name == "coupling-odd":
        layer = AdditiveCoupling(torch.tensor([0.0, 1.0, 0.0]), CONTEXT_DIM, hidden=(8, 8))
    elif name == "scaling":
        layer = StateScaling(DIM, CONTEXT_DIM, log_sigma_min=-2.0, log_sigma_max=1.0, hidden=(8, 8))
    elif name == "squash":
        # eps=0 makes the log-det exact, so it can be compared with autograd to 1e-10.
        layer = TanhSquash(eps=0.0)
    else:
        raise ValueError(name)
    randomize(layer)
    return layer.double().eval()


def _points(name: str, direction: str, batch: int = BATCH) -> Tensor:
    """Inputs from the domain of the given direction: the inverse of tanh needs (-1, 1)."""
    if name == "squash" and direction == "inverse":
        return torch.rand(batch, DIM, dtype=torch.float64) * 1.9 - 0.95
    return 1.5 * torch.randn(batch, DIM, dtype=torch.float64)


def _context(batch: int = BATCH) -> Tensor:
    return torch.randn(batch, CONTEXT_DIM, dtype=torch.float64)


def _other(direction: str) -> str:
    return "inverse" if direction == "forward" else "forward"


class _Direction(nn.Module):
    """Exposes one direction of a layer as ``forward`` so ``functional_call`` can drive it."""

    def __init__(self, layer: Transform, direction: str) -> None:
        super().__init__()
        self.layer = layer
        self.direction = direction

    def forward(self, x: Tensor, context: Tensor) -> tuple[Tensor, Tensor]:
        return getattr(self.layer, self.direction)(x, context)


@pytest.mark.parametrize("direction", DIRECTIONS)
@pytest.mark.parametrize("name", LAYERS)
def test_round_trip_is_identity(name: str, direction: str, randomize) -> None:
    """``inverse(forward(x)) == x`` and ``forward(inverse(y)) == y`` (tanh: y in (-1, 1))."""
    layer = _make(name, randomize)
    x, context = _points(name, direction), _context()
    y, _ = getattr(layer, direction)(x, context)
    back, _ = getattr(layer, _other(direction))(y, context)
    assert not torch.allclose(y, x, atol=1e-3)  # the layer is not the identity
    torch.testing.assert_close(back, x, rtol=0.0, atol=1e-10)


@pytest.mark.parametrize("direction", DIRECTIONS)
@pytest.mark.parametrize("name", LAYERS)
def test_ladj_matches_autograd_jacobian(name: str, direction: str, randomize) -> None:
    """The returned ladj equals ``log|det J|`` from autograd + ``slogdet``, per sample."""
    layer = _make(name, randomize)
    fn = getattr(layer, direction)
    x, context = _points(name, direction), _context()
    _, ladj = fn(x, context)
    assert ladj.shape == (BATCH,)
    for i in range(BATCH):
        jac = jacobian(lambda v, i=i: fn(v.unsqueeze(0), context[i : i + 1])[0].squeeze(0), x[i])
        _, logabsdet = torch.linalg.slogdet(jac)
        torch.testing.assert_close(ladj[i], logabsdet, rtol=0.0, atol=1e-10)


@pytest.mark.parametrize("direction", DIRECTIONS)
@pytest.mark.parametrize("name", LAYERS)
def test_ladj_of_the_two_directions_are_opposite(name: str, direction: str, randomize) -> None:
    """At corresponding points ``x <-> y`` the two directions' ladj sum to zero."""
    layer = _make(name, randomize)
    x, context = _points(name, direction), _context()
    y, ladj = getattr(layer, direction)(x, context)
    _, ladj_back = getattr(layer, _other(direction))(y, context)
    torch.testing.assert_close(ladj, -ladj_back, rtol=0.0, atol=1e-10)


@pytest.mark.parametrize("direction", DIRECTIONS)
@pytest.mark.parametrize("name", LAYERS)
def test_gradcheck_inputs_and_parameters(name: str, direction: str, randomize) -> None:
    """Analytic gradients w.r.t. input, state and every parameter match finite differences."""
    layer = _make(name, randomize)
    module = _Direction(layer, direction)
    names = [n for n, _ in module.named_parameters()]
    params = [p.detach().clone().requires_grad_() for p in module.parameters()]
    x = _points(name, direction, batch=2).requires_grad_()
    context = _context(batch=2).requires_grad_(name != "squash")

    def fn(x: Tensor, context: Tensor, *ps: Tensor) -> tuple[Tensor, Tensor]:
        return torch.func.functional_call(module, dict(zip(names, ps, strict=True)), (x, context))

    assert torch.autograd.gradcheck(fn, (x, context, *params), eps=1e-6, atol=1e-6)


@pytest.mark.parametrize("direction", DIRECTIONS)
@pytest.mark.parametrize("name", LAYERS)
def test_gradients_reach_inputs_and_parameters(name: str, direction: str, randomize) -> None:
    """A loss on output and ladj gives finite, non-zero gradients to inputs and all parameters."""
    layer = _make(name, randomize)
    x = _points(name, direction).requires_grad_()
    context = _context().requires_grad_(name != "squash")
    y, ladj = getattr(layer, direction)(x, context)
    (y * torch.randn_like(y)).sum().add(ladj.sum()).backward()
    leaves = {"x": x, **dict(layer.named_parameters())}
    if name != "squash":
        leaves["context"] = context
    for key, leaf in leaves.items():
        assert leaf.grad is not None, key
        assert torch.isfinite(leaf.grad).all(), key
        assert leaf.grad.abs().max() > 0, key


def test_state_only_ladj_flags() -> None:
    """Only the state scaling is a state-only (``S_l``) layer; the others refuse ``inverse_ladj``."""
    assert StateScaling.state_only_ladj is True
    assert AdditiveCoupling.state_only_ladj is False
    assert TanhSquash.state_only_ladj is False
    context = _context()
    for layer in (AdditiveCoupling(torch.tensor([1.0, 0.0, 1.0]), CONTEXT_DIM), TanhSquash()):
        with pytest.raises(TypeError, match=type(layer).__name__):
            layer.double().inverse_ladj(context)


@pytest.mark.parametrize("mask", [[1.0, 0.0, 1.0], [0.0, 1.0, 0.0], [1.0, 1.0, 0.0]])
def test_coupling_passes_masked_dims_through(mask: list[float], randomize) -> None:
    """Masked dims are copied exactly; the others move by a shift that ignores them."""
    b = torch.tensor(mask, dtype=torch.bool)
    layer = randomize(AdditiveCoupling(torch.tensor(mask), CONTEXT_DIM, hidden=(8, 8))).double().eval()
    x, context = _points("coupling", "forward"), _context()
    for direction in DIRECTIONS:
        y, _ = getattr(layer, direction)(x, context)
        assert torch.equal(y[:, b], x[:, b])
        assert (y[:, ~b] - x[:, ~b]).abs().min() > 1e-6
        # Triangular structure: moving the transformed dims moves the output by exactly as much.
        delta = torch.randn_like(x) * (~b)
        y_moved, _ = getattr(layer, direction)(x + delta, context)
        torch.testing.assert_close(y_moved - y, delta, rtol=0.0, atol=1e-12)


def test_scaling_matches_its_formula(randomize) -> None:
    """``y = x * exp(log_sigma(s))`` with ``log_sigma = lo + (hi - lo) (tanh(h(s)) + 1) / 2``."""
    layer = _make("scaling", randomize)
    x, context = _points("scaling", "forward"), _context()
    log_sigma = -2.0 + 3.0 * (torch.tanh(layer.net(context)) + 1.0) / 2.0
    torch.testing.assert_close(layer.log_sigma(context), log_sigma, rtol=0.0, atol=1e-12)
    y, ladj = layer(x, context)
    torch.testing.assert_close(y, x * log_sigma.exp(), rtol=0.0, atol=1e-12)
    torch.testing.assert_close(ladj, log_sigma.sum(-1), rtol=0.0, atol=1e-12)


def test_scaling_inverse_ladj_equals_inverse(randomize) -> None:
    """``inverse_ladj(s)`` equals the inverse's ladj, whatever the input."""
    layer = _make("scaling", randomize)
    context = _context()
    expected = layer.inverse_ladj(context)
    for _ in range(3):
        _, ladj = layer.inverse(_points("scaling", "inverse"), context)
        torch.testing.assert_close(ladj, expected, rtol=0.0, atol=1e-12)
    assert expected.std() > 1e-3  # it does depend on the state


def test_log_sigma_stays_within_bounds_for_extreme_outputs(randomize) -> None:
    """Log-sigma never leaves ``[lo, hi]`` and reaches each end when the network saturates."""
    lo, hi = -5.0, -0.3
    layer = randomize(StateScaling(DIM, CONTEXT_DIM, lo, hi, hidden=(8,)), std=3.0).double()
    log_sigma = layer.log_sigma(1e6 * _context(1000))
    # 1e-12 allows the rounding of ``lo + (hi - lo) * 1`` (one ulp above ``hi`` for these values).
    assert log_sigma.min() >= lo - 1e-12
    assert log_sigma.max() <= hi + 1e-12
    head = layer.net[-1]
    with torch.no_grad():
        head.weight.zero_()
        for bias, bound in ((1e4, hi), (-1e4, lo)):
            head.bias.fill_(bias)
            torch.testing.assert_close(layer.log_sigma(_context()), torch.full((BATCH, DIM), bound).double())


@pytest.mark.parametrize(("lo", "hi"), [(0.0, 0.0), (1.0, -1.0)])
def test_scaling_rejects_empty_log_sigma_range(lo: float, hi: float) -> None:
    """``log_sigma_min >= log_sigma_max`` is a configuration error naming the values."""
    with pytest.raises(ValueError, match="log_sigma_min"):
        StateScaling(DIM, CONTEXT_DIM, lo, hi)


def test_squash_inverse_is_finite_on_the_boundary() -> None:
    """Actions at exactly ±1 (warm-up, clipped data) map to a finite latent and ladj."""
    squash = TanhSquash().double()
    y = torch.tensor([[1.0, -1.0, 0.0]], dtype=torch.float64)
    x, ladj = squash.inverse(y)
    assert torch.isfinite(x).all()
    assert torch.isfinite(ladj).all()
    torch.testing.assert_close(x[0, 0], torch.atanh(torch.tensor(1.0 - 1e-5, dtype=torch.float64)))
    # Saturated forward outputs keep a finite log-det thanks to eps.
    _, ladj = squash(torch.full((1, DIM), 40.0, dtype=torch.float64))
    assert torch.isfinite(ladj).all()


def test_flows_package_imports_first() -> None:
    """``import meow.flows`` works in a fresh interpreter (no circular import)."""
    result = subprocess.run(
        [sys.executable, "-c", "import meow.flows; import meow.nn; import meow.storage; import meow.envs"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr

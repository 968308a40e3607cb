"""The flow's divergence remedies: reward-unit shifts, normalised heads."""

from __future__ import annotations

import pytest
import torch

from meow.modules import FlowPolicy
from meow.nn.layers import EnsembleMLP, HeadNorm, hidden_norm


def _flow(**kw) -> FlowPolicy:
    torch.manual_seed(0)
    flow = FlowPolicy(5, 3, alpha=0.3, log_sigma_min=-2.0, log_sigma_max=0.5, dropout=0.0, **kw)
    with torch.no_grad():
        for p in flow.parameters():
            p.add_(0.3 * torch.randn_like(p))
    return flow.eval()


def _data(n: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(3)
    return torch.randn(n, 5, generator=g), torch.rand(n, 3, generator=g) * 1.8 - 0.9


@pytest.mark.parametrize("shift_scale", ["alpha", "reward"])
def test_q_minus_v_is_alpha_log_pi_for_either_shift_scale(shift_scale):
    flow = _flow(shift_scale=shift_scale)
    obs, act = _data()
    with torch.no_grad():
        gap = flow.q_values(obs, act) - flow.values(obs)
        expected = flow.alpha * flow.log_prob(obs, act)
    assert torch.allclose(gap, expected.expand_as(gap), atol=1e-4)


def test_reward_unit_shifts_leave_the_values_shift_when_alpha_changes():
    """With b_k in reward units, V(alpha2) - V(alpha1) = (alpha2 - alpha1) * (V - b_k) / alpha: only
    the entropy part moves; with the release's alpha * b_k the shifts are rescaled too."""
    obs, _ = _data()
    for scale, moves_shift in (("reward", False), ("alpha", True)):
        flow = _flow(shift_scale=scale)
        with torch.no_grad():
            b = flow.shift_values(obs)
            v1 = flow.values(obs)
            flow.alpha.fill_(0.6)
            v2 = flow.values(obs)
        entropy_part_1 = v1 - (0.3 * b if moves_shift else b)
        expected = 2.0 * entropy_part_1 + (0.6 * b if moves_shift else b)
        assert torch.allclose(v2, expected, atol=1e-4)


def test_the_release_scale_is_the_default_and_unchanged():
    obs, act = _data()
    a, b = _flow(), _flow(shift_scale="alpha")
    with torch.no_grad():
        assert torch.equal(a.q_values(obs, act), b.q_values(obs, act))
        assert torch.equal(
            a.values(obs),
            a.alpha * (a._log_norm_const + a.scaling.log_sigma(obs).sum(-1) + a.shift_values(obs)),
        )


@pytest.mark.parametrize("kind", ["layer", "rms"])
def test_head_norm_normalises_each_head_before_its_own_gain(kind):
    norm = HeadNorm(8, heads=2, rms=kind == "rms")
    x = torch.randn(2, 100, 8) * 5 + 3
    with torch.no_grad():
        norm.weight[1].fill_(2.0)
        y = norm(x)
    if kind == "layer":
        unit = (x - x.mean(-1, keepdim=True)) / torch.sqrt(x.var(-1, unbiased=False, keepdim=True) + 1e-5)
    else:
        unit = x / torch.sqrt(x.square().mean(-1, keepdim=True) + 1e-6)
    assert torch.allclose(y[0], unit[0], atol=1e-5)
    assert torch.allclose(y[1], 2.0 * unit[1], atol=1e-5)


def test_head_norm_sits_in_the_shift_heads_and_the_scale_network_only():
    flow = _flow(head_norm="layer")
    assert sum(isinstance(m, HeadNorm) for m in flow.shift.modules()) == 2
    assert sum(isinstance(m, HeadNorm) for m in flow.scaling.modules()) == 2
    assert not any(isinstance(m, HeadNorm) for m in flow.couplings.modules())
    assert not any(isinstance(m, HeadNorm) for m in _flow().modules())
    assert hidden_norm("none", 4) is None
    with pytest.raises(ValueError, match="norm=batch is invalid"):
        EnsembleMLP(2, 3, (4,), 1, norm="batch")

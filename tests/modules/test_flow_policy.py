"""The flow policy: the energy-based identities that make one network policy, soft Q and soft V."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pytest
import torch
from torch import Tensor, nn
from torch.autograd.functional import jacobian

from meow.flows import TanhSquash
from meow.modules import FlowPolicy
from meow.nn.layers import EnsembleLinear, Swish

OBS_DIM = 4
BATCH = 8
ACTION_DIMS = [1, 2, 3]  # odd sizes matter: the alternating masks are unbalanced there


def _policy(
    action_dim: int,
    randomize: Callable[..., nn.Module],
    *,
    alpha: float = 0.3,
    log_sigma_min: float = -1.5,
    log_sigma_max: float = 0.0,
    **kwargs: object,
) -> FlowPolicy:
    """A small float64 policy in eval mode (no dropout) with re-randomised parameters."""
    policy = FlowPolicy(
        OBS_DIM,
        action_dim,
        alpha=alpha,
        log_sigma_min=log_sigma_min,
        log_sigma_max=log_sigma_max,
        coupling_hidden=(16, 16),
        scale_hidden=(16, 16),
        shift_hidden=(16, 16),
        **kwargs,
    )
    randomize(policy)
    return policy.double().eval()


def _obs(batch: int = BATCH) -> Tensor:
    return torch.randn(batch, OBS_DIM, dtype=torch.float64)


def _actions(action_dim: int, batch: int = BATCH) -> Tensor:
    return torch.rand(batch, action_dim, dtype=torch.float64) * 1.9 - 0.95


def _sampling_map(policy: FlowPolicy, u: Tensor, obs: Tensor) -> Tensor:
    """``u -> a`` rebuilt from the layers: scaling, couplings, tanh (ladj ignored)."""
    x = u
    for layer in (policy.scaling, *policy.couplings, policy.squash):
        x, _ = layer(x, obs)
    return x


def _manual_shift(policy: FlowPolicy, obs: Tensor) -> Tensor:
    """The shift heads as an explicit loop over heads, each a plain MLP with its own weights."""
    heads = []
    for h in range(policy.num_shift_heads):
        x = obs
        for layer in policy.shift.net:
            if isinstance(layer, EnsembleLinear):
                x = x @ layer.weight[h] + layer.bias[h, 0]
            elif isinstance(layer, Swish):
                x = x * torch.sigmoid(layer.beta[h, 0] * x)
            else:
                raise TypeError(type(layer))
        heads.append(x.squeeze(-1))
    return torch.stack(heads)


def _box_quadrature(action_dim: int, nodes_per_dim: int) -> tuple[Tensor, Tensor]:
    """Tensor-product Gauss-Legendre nodes on ``(-1, 1)^d`` and their log-weights."""
    nodes, weights = np.polynomial.legendre.leggauss(nodes_per_dim)
    nodes, log_w = torch.from_numpy(nodes), torch.from_numpy(weights).log()
    grid = torch.cartesian_prod(*[nodes] * action_dim).reshape(-1, action_dim)
    log_weights = torch.cartesian_prod(*[log_w] * action_dim).reshape(-1, action_dim).sum(-1)
    return grid, log_weights


@pytest.mark.parametrize("action_dim", ACTION_DIMS)
def test_q_minus_v_is_alpha_log_prob(action_dim: int, randomize) -> None:
    """``Q_k(s,a) - V_k(s) == alpha * log pi(a|s)`` for every shift head."""
    policy = _policy(action_dim, randomize)
    obs, actions = _obs(), _actions(action_dim)
    q, v = policy.q_values(obs, actions), policy.values(obs)
    log_prob = policy.log_prob(obs, actions)
    assert q.shape == v.shape == (2, BATCH)
    assert (q[0] - q[1]).abs().min() > 1e-6  # the heads differ, so both are checked
    torch.testing.assert_close(q - v, policy.alpha * log_prob.expand(2, -1), rtol=0.0, atol=1e-10)


@pytest.mark.parametrize("action_dim", ACTION_DIMS)
def test_values_have_the_closed_form(action_dim: int, randomize) -> None:
    """``V_k(s) = alpha * (d/2 log 2pi + sum_i log sigma_i(s) + b_k(s))``."""
    policy = _policy(action_dim, randomize)
    obs = _obs()
    expected = policy.alpha * (
        0.5 * action_dim * math.log(2 * math.pi)
        + policy.scaling.log_sigma(obs).sum(-1)
        + _manual_shift(policy, obs)
    )
    torch.testing.assert_close(policy.values(obs), expected, rtol=0.0, atol=1e-12)


@pytest.mark.parametrize("action_dim", ACTION_DIMS)
def test_sample_log_prob_matches_log_prob(action_dim: int, randomize) -> None:
    """The log-probability returned by ``sample`` equals ``log_prob`` of the sampled action."""
    policy = _policy(action_dim, randomize)
    obs = _obs(256)
    actions, log_prob = policy.sample(obs)
    torch.testing.assert_close(policy.log_prob(obs, actions), log_prob, rtol=0.0, atol=1e-8)


@pytest.mark.parametrize("action_dim", ACTION_DIMS)
def test_a_scaled_latent_narrows_the_sample_and_keeps_the_policys_log_density(
    action_dim: int, randomize
) -> None:
    """``sample(s, latent_scale=c)`` pushes ``c u`` through the flow: the same draw as ``sample``
    scaled, ``c = 0`` is the deterministic action, and the log-density is still ``log pi(a|s)``."""
    policy = _policy(action_dim, randomize)
    obs = _obs(256)
    torch.manual_seed(3)
    full = policy.sample(obs)[0]
    torch.manual_seed(3)
    half, log_prob = policy.sample(obs, latent_scale=0.5)
    torch.testing.assert_close(policy.log_prob(obs, half), log_prob, rtol=0.0, atol=1e-8)
    torch.manual_seed(3)
    u = 0.5 * torch.randn(256, action_dim, dtype=obs.dtype)
    torch.testing.assert_close(half, _sampling_map(policy, u, obs), rtol=0.0, atol=1e-12)
    mode = policy.deterministic(obs)
    assert (half - mode).abs().mean() < 0.75 * (full - mode).abs().mean()
    torch.testing.assert_close(policy.sample(obs, latent_scale=0.0)[0], mode, rtol=0.0, atol=1e-12)


@pytest.mark.parametrize("action_dim", ACTION_DIMS)
def test_log_prob_is_the_change_of_variables_density(action_dim: int, randomize) -> None:
    """``log pi(a|s) = log N(u; 0, I) - log|det da/du|`` with the Jacobian from autograd."""
    policy = _policy(action_dim, randomize)
    policy.squash = TanhSquash(eps=0.0)  # exact tanh log-det, so the check can be tight
    obs, u = _obs(), torch.randn(BATCH, action_dim, dtype=torch.float64)
    actions = _sampling_map(policy, u, obs)
    log_prob = policy.log_prob(obs, actions)
    for i in range(BATCH):
        jac = jacobian(lambda v, i=i: _sampling_map(policy, v[None], obs[i : i + 1])[0], u[i])
        log_normal = torch.distributions.Normal(0.0, 1.0).log_prob(u[i]).sum()
        expected = log_normal - torch.linalg.slogdet(jac)[1]
        torch.testing.assert_close(log_prob[i], expected, rtol=0.0, atol=1e-9)


@pytest.mark.parametrize("action_dim", ACTION_DIMS)
def test_deterministic_is_zero_latent_through_couplings_and_tanh(action_dim: int, randomize) -> None:
    """``deterministic(s) = tanh(C_L(...C_1(0; s)))``, independent of the prior's scale."""
    policy = _policy(action_dim, randomize)
    obs = _obs()
    x = torch.zeros(BATCH, action_dim, dtype=torch.float64)
    for coupling in policy.couplings:
        x = x + coupling.shift_net(torch.cat((coupling.mask * x, obs), -1)) * (1 - coupling.mask)
    expected = torch.tanh(x)
    assert expected.abs().min() > 1e-3  # a non-trivial point, not the origin
    torch.testing.assert_close(policy.deterministic(obs), expected, rtol=0.0, atol=1e-12)
    with torch.no_grad():
        for p in policy.scaling.parameters():
            p.add_(torch.randn_like(p))
    torch.testing.assert_close(policy.deterministic(obs), expected, rtol=0.0, atol=1e-12)


@pytest.mark.parametrize("action_dim", ACTION_DIMS)
def test_samples_lie_inside_the_action_box(action_dim: int, randomize) -> None:
    """Float32 samples of the published architecture stay strictly inside ``(-1, 1)^d``."""
    policy = FlowPolicy(OBS_DIM, action_dim, alpha=0.2, log_sigma_min=-5.0, log_sigma_max=-0.3)
    randomize(policy).eval()
    actions, log_prob = policy.sample(torch.randn(4096, OBS_DIM))
    assert actions.abs().max() < 1.0
    assert torch.isfinite(log_prob).all()
    assert (actions.std(0) > 1e-3).all()  # a spread distribution, not a point mass


@pytest.mark.parametrize("action_dim", ACTION_DIMS)
def test_values_do_not_depend_on_the_couplings(action_dim: int, randomize) -> None:
    """Perturbing the couplings changes Q and the mode but leaves V bit-for-bit unchanged."""
    policy = _policy(action_dim, randomize)
    obs, actions = _obs(), _actions(action_dim)
    v, q = policy.values(obs), policy.q_values(obs, actions)
    with torch.no_grad():
        for p in policy.couplings.parameters():
            p.add_(torch.randn_like(p))
    assert torch.equal(policy.values(obs), v)
    assert (policy.q_values(obs, actions) - q).abs().max() > 1e-3


def test_values_do_not_run_the_couplings(randomize, monkeypatch: pytest.MonkeyPatch) -> None:
    """``values`` never calls a coupling (their forward, inverse and shift nets raise here)."""
    policy = _policy(3, randomize)
    obs = _obs()
    expected = policy.values(obs)

    def fail(*args: object, **kwargs: object) -> None:
        raise RuntimeError("coupling called")

    for coupling in policy.couplings:
        monkeypatch.setattr(coupling, "forward", fail)
        monkeypatch.setattr(coupling, "inverse", fail)
        monkeypatch.setattr(coupling.shift_net, "forward", fail)
    with pytest.raises(RuntimeError, match="coupling called"):  # the patch is effective
        policy.q_values(obs, _actions(3))
    assert torch.equal(policy.values(obs), expected)


@pytest.mark.parametrize("action_dim", ACTION_DIMS)
def test_without_reward_shifting_the_heads_coincide(action_dim: int, randomize) -> None:
    """``reward_shifting=False``: zero shifts, equal heads, and V is the bare log-normaliser."""
    policy = _policy(action_dim, randomize, reward_shifting=False)
    obs, actions = _obs(), _actions(action_dim)
    assert policy.shift is None
    assert torch.equal(policy.shift_values(obs), torch.zeros(2, BATCH, dtype=torch.float64))
    q, v = policy.q_values(obs, actions), policy.values(obs)
    assert torch.equal(q[0], q[1])
    assert torch.equal(v[0], v[1])
    log_z = 0.5 * action_dim * math.log(2 * math.pi) + policy.scaling.log_sigma(obs).sum(-1)
    torch.testing.assert_close(v[0], policy.alpha * log_z, rtol=0.0, atol=1e-12)
    torch.testing.assert_close(q - v, policy.alpha * policy.log_prob(obs, actions).expand(2, -1))


def test_shift_heads_equal_a_per_head_loop(randomize) -> None:
    """The stacked heads equal separate MLPs per head; the heads differ and shift Q and V alike."""
    policy = _policy(2, randomize)
    obs, actions = _obs(), _actions(2)
    shifts = policy.shift_values(obs)
    assert shifts.shape == (2, BATCH)
    torch.testing.assert_close(shifts, _manual_shift(policy, obs), rtol=0.0, atol=1e-12)
    assert (shifts[0] - shifts[1]).abs().min() > 1e-6
    gap = policy.alpha * (shifts[0] - shifts[1])
    q, v = policy.q_values(obs, actions), policy.values(obs)
    torch.testing.assert_close(q[0] - q[1], gap, rtol=0.0, atol=1e-12)
    torch.testing.assert_close(v[0] - v[1], gap, rtol=0.0, atol=1e-12)


@pytest.mark.parametrize("action_dim", [2, 3])
def test_q_gradients_reach_every_parameter(action_dim: int, randomize) -> None:
    """The soft Q (the only loss) trains log-sigma net, every coupling and both shift heads.

    (For d = 1 the couplings with mask [1] are the identity, so this needs d >= 2.)
    """
    policy = _policy(action_dim, randomize)
    policy.q_values(_obs(), _actions(action_dim)).sum().backward()
    for name, p in policy.named_parameters():
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all(), name
        assert p.grad.abs().max() > 0, name


def test_fresh_policy_follows_the_reference_initialisation() -> None:
    """At init log-sigma and the shifts ignore the state (zero weights); masks alternate."""
    policy = FlowPolicy(OBS_DIM, 3, alpha=0.2, log_sigma_min=-5.0, log_sigma_max=-0.3).double()
    obs = 10.0 * _obs()
    log_sigma, shifts = policy.scaling.log_sigma(obs), policy.shift_values(obs)
    assert torch.equal(log_sigma, log_sigma[:1].expand_as(log_sigma))
    assert torch.equal(shifts, shifts[:, :1].expand_as(shifts))
    assert (shifts[0, 0] - shifts[1, 0]).abs() > 0  # default biases differ between heads
    masks = [c.mask.tolist() for c in policy.couplings]
    assert masks == [[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]] * 2


# The heart of the method: V is the exact log-partition function of Q over the action box.
# Settings: alpha = 0.5, log-sigma in [-1.2, -0.4] (so the density is not too peaked and
# every |log sigma_i| >= 0.4). Dropping the Gaussian constant would shift V by
# alpha * d/2 * log(2 pi) ~ 0.46 d, dropping one log-sigma term by >= alpha * 0.4 = 0.2;
# the tolerances below are 1e-7 (exact tanh) and 3e-5 (default eps), 4-6 orders smaller.
# Observed quadrature errors over 30 seeds: <= 7e-11 (d=1) and <= 4e-9 (d=2) with eps = 0,
# <= 7e-6 with the default eps (its own bias, see below).
QUADRATURE = [(1, 200), (2, 120)]  # (action_dim, Gauss-Legendre nodes per dimension)


def _quadrature_policy(action_dim: int, randomize, exact_tanh: bool) -> FlowPolicy:
    policy = _policy(action_dim, randomize, alpha=0.5, log_sigma_min=-1.2, log_sigma_max=-0.4)
    if exact_tanh:
        policy.squash = TanhSquash(eps=0.0)
    return policy


def _log_integral(values: Tensor, log_weights: Tensor) -> Tensor:
    """``log ∫ exp(f(a)) da`` from ``f`` on the grid (last dim) by log-sum-exp quadrature."""
    return torch.logsumexp(values + log_weights, dim=-1)


@pytest.mark.parametrize("exact_tanh", [True, False], ids=["eps0", "default-eps"])
@pytest.mark.parametrize(("action_dim", "nodes"), QUADRATURE)
def test_soft_value_is_log_partition_of_soft_q(action_dim: int, nodes: int, exact_tanh: bool, randomize):
    """``V_k(s) = alpha * log ∫_{(-1,1)^d} exp(Q_k(s,a)/alpha) da`` by numerical quadrature.

    With the default squash (eps = 1e-6 inside ``log(1 - a^2 + eps)``) Q is the log-density
    only up to ``log(1 + eps / (1 - a^2))``, a bias of order 1e-6; with eps = 0 it is exact.
    """
    policy = _quadrature_policy(action_dim, randomize, exact_tanh)
    grid, log_weights = _box_quadrature(action_dim, nodes)
    obs = _obs(3)
    batch, points = obs.shape[0], grid.shape[0]
    with torch.no_grad():
        q = policy.q_values(obs.repeat_interleave(points, 0), grid.repeat(batch, 1))
        v = policy.values(obs)
    v_quadrature = policy.alpha * _log_integral(q.reshape(2, batch, points) / policy.alpha, log_weights)
    torch.testing.assert_close(v_quadrature, v, rtol=0.0, atol=1e-7 if exact_tanh else 3e-5)


@pytest.mark.parametrize(("action_dim", "nodes"), QUADRATURE)
def test_density_integrates_to_one(action_dim: int, nodes: int, randomize) -> None:
    """``∫_{(-1,1)^d} pi(a|s) da == 1`` by numerical quadrature (exact tanh)."""
    policy = _quadrature_policy(action_dim, randomize, exact_tanh=True)
    grid, log_weights = _box_quadrature(action_dim, nodes)
    obs = _obs(3)
    batch, points = obs.shape[0], grid.shape[0]
    with torch.no_grad():
        log_prob = policy.log_prob(obs.repeat_interleave(points, 0), grid.repeat(batch, 1))
    log_mass = _log_integral(log_prob.reshape(batch, points), log_weights)
    torch.testing.assert_close(log_mass, torch.zeros(batch, dtype=torch.float64), rtol=0.0, atol=1e-7)


def test_coupling_biases_start_at_zero_or_at_pytorchs_default():
    """``coupling_bias``: PyTorch's default U(-1/sqrt(in), 1/sqrt(in)) as the paper's release
    leaves them (the default) or zeros; the weights are orthogonal either way."""
    torch.manual_seed(0)
    zero = FlowPolicy(5, 3, alpha=0.2, log_sigma_min=-5.0, log_sigma_max=-0.3, coupling_bias="zeros")
    default = FlowPolicy(5, 3, alpha=0.2, log_sigma_min=-5.0, log_sigma_max=-0.3)
    for a, b in zip(zero.couplings, default.couplings, strict=True):
        for la, lb in zip(a.shift_net, b.shift_net, strict=True):
            if isinstance(la, nn.Linear):
                assert torch.equal(la.bias, torch.zeros_like(la.bias))
                bound = 1.0 / math.sqrt(lb.in_features)
                assert lb.bias.abs().max() <= bound and lb.bias.abs().max() > 0.1 * bound
                w = lb.weight if lb.out_features <= lb.in_features else lb.weight.T
                torch.testing.assert_close(w @ w.T, torch.eye(w.shape[0]), atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="coupling_bias=ones is invalid"):
        FlowPolicy(5, 3, alpha=0.2, log_sigma_min=-5.0, log_sigma_max=-0.3, coupling_bias="ones")


def test_per_head_dropout_gives_each_q_head_its_own_masks_in_training_only():
    """``q_dropout="per_head"``: in training mode the heads' energies differ (own dropout masks),
    each head's Q is a Q of the shared flow under some mask; in eval mode, and for ``shared``,
    the heads differ only by their shift."""
    torch.manual_seed(0)
    policy = FlowPolicy(5, 3, alpha=0.2, log_sigma_min=-5.0, log_sigma_max=-0.3, q_dropout="per_head")
    obs, act = torch.randn(64, 5), torch.rand(64, 3) * 1.8 - 0.9
    with torch.no_grad():
        for net in policy.shift.net:  # non-zero shift heads, so that they show
            if hasattr(net, "weight") and not isinstance(net, Swish):
                net.weight.normal_(0, 0.1)
        shift = policy.shift_values(obs)
        energy = policy.train().q_values(obs, act) / policy.alpha - shift
        assert not torch.allclose(energy[0], energy[1])
        # the same draw through one head at a time: head k's energy is a pass with masks
        torch.manual_seed(1)
        twice = policy.q_values(obs, act) / policy.alpha - shift
        torch.manual_seed(1)
        u, e, _ = policy._to_latent(act.repeat(2, 1), obs.repeat(2, 1))
        by_hand = (-0.5 * u.square().sum(-1) + e).view(2, -1)
        torch.testing.assert_close(twice, by_hand)
        # eval mode: one pass, equal energies
        evaluated = policy.eval().q_values(obs, act) / policy.alpha - shift
        torch.testing.assert_close(evaluated[0], evaluated[1])
        shared = FlowPolicy(5, 3, alpha=0.2, log_sigma_min=-5.0, log_sigma_max=-0.3, q_dropout="shared")
        shared.load_state_dict(policy.state_dict())
        same = shared.train().q_values(obs, act) / shared.alpha - shift
        torch.testing.assert_close(same[0], same[1])


def test_per_head_dropout_without_dropout_is_one_pass_for_both_heads():
    """With ``dropout=0`` the per-head passes would be equal: one pass of the batch serves both
    heads, and the soft Q values equal ``shared``'s."""
    torch.manual_seed(0)
    kwargs = {"alpha": 0.2, "log_sigma_min": -5.0, "log_sigma_max": -0.3, "dropout": 0.0}
    per_head = FlowPolicy(5, 3, q_dropout="per_head", **kwargs).train()
    shared = FlowPolicy(5, 3, q_dropout="shared", **kwargs).train()
    shared.load_state_dict(per_head.state_dict())
    batches = []
    inner = per_head._to_latent
    per_head._to_latent = lambda action, obs: batches.append(len(action)) or inner(action, obs)
    obs, act = torch.randn(64, 5), torch.rand(64, 3) * 1.8 - 0.9
    torch.testing.assert_close(per_head.q_values(obs, act), shared.q_values(obs, act), rtol=0, atol=0)
    assert batches == [64]
    # with dropout, per_head is the default and runs the doubled batch
    doubled = FlowPolicy(5, 3, alpha=0.2, log_sigma_min=-5.0, log_sigma_max=-0.3).train()
    assert doubled.q_dropout == "per_head"
    inner2 = doubled._to_latent
    doubled._to_latent = lambda action, obs: batches.append(len(action)) or inner2(action, obs)
    doubled.q_values(obs, act)
    assert batches == [64, 128]

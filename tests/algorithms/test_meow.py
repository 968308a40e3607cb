"""The learner: the Bellman target, bootstrapping rules, Polyak averaging, clipping, purity."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from meow.algorithms import MEow
from meow.modules import FlowPolicy
from meow.storage import TransitionBatch


def _policy(obs_dim: int = 4, action_dim: int = 2, **kw) -> FlowPolicy:
    torch.manual_seed(0)
    policy = FlowPolicy(obs_dim, action_dim, alpha=0.3, log_sigma_min=-2.0, log_sigma_max=0.5, **kw)
    with torch.no_grad():
        for p in policy.parameters():  # leave the zero init so that every term is exercised
            p.add_(0.2 * torch.randn_like(p))
    return policy


def _batch(n: int = 64, obs_dim: int = 4, action_dim: int = 2) -> TransitionBatch:
    g = torch.Generator().manual_seed(1)
    return TransitionBatch(
        obs=torch.randn(n, obs_dim, generator=g),
        actions=torch.rand(n, action_dim, generator=g) * 1.8 - 0.9,
        rewards=torch.randn(n, generator=g),
        next_obs=torch.randn(n, obs_dim, generator=g),
        terminated=(torch.rand(n, generator=g) < 0.3).float(),
        truncated=torch.rand(n, generator=g) < 0.3,
    )


def test_loss_is_the_soft_bellman_regression_with_the_clipped_target():
    alg = MEow(_policy(), gamma=0.97)
    alg.policy.eval()  # no dropout, so that the manual computation sees the same network
    b = _batch()
    loss, _ = alg._loss(b)
    with torch.no_grad():
        v_next = alg.target.values(b.next_obs)  # (2, B)
        y = b.rewards + 0.97 * (1 - b.terminated) * torch.minimum(v_next[0], v_next[1])
        q = alg.policy.q_values(b.obs, b.actions)
        expected = (0.5 * (q[0] - y) ** 2 + 0.5 * (q[1] - y) ** 2).mean()
    assert torch.allclose(loss, expected, rtol=1e-6)


def test_terminated_transitions_do_not_bootstrap_but_truncated_ones_do():
    alg = MEow(_policy())
    alg.policy.eval()
    b = _batch()
    moved = b._replace(next_obs=b.next_obs + 5.0)
    term = b.terminated.bool()
    with torch.no_grad():
        q = alg.policy.q_values(b.obs, b.actions)

        def per_sample(batch):
            v = alg.target.values(batch.next_obs).min(0).values
            y = batch.rewards + alg.gamma * (1 - batch.terminated) * v
            return 0.5 * (q - y).square().sum(0)

        a, c = per_sample(b), per_sample(moved)
    assert torch.equal(a[term], c[term])  # terminal rows ignore s'
    assert (a[~term] != c[~term]).all()  # the others, truncated included, depend on s'
    assert (b.truncated & ~term).any()
    # and the learner's loss agrees with this bookkeeping
    assert torch.allclose(alg._loss(moved)[0], c.mean(), rtol=1e-6)


def test_update_takes_an_adam_step_then_a_polyak_step():
    alg = MEow(_policy(), tau=0.1, lr=1e-3)
    before_target = [p.clone() for p in alg.target.parameters()]
    alg.update(_batch())
    for t, t0, p in zip(alg.target.parameters(), before_target, alg.policy.parameters(), strict=True):
        assert torch.allclose(t, 0.9 * t0 + 0.1 * p, atol=1e-7)
    assert not all(torch.equal(t, t0) for t, t0 in zip(alg.target.parameters(), before_target, strict=True))


def test_gradients_are_clipped_to_the_global_norm():
    alg = MEow(_policy(), grad_clip=0.01)
    stats = alg.update(_batch())
    clipped = torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in alg.policy.parameters()]))
    assert stats["grad_norm"] > 0.01  # the reported norm is the one before clipping
    assert clipped == pytest.approx(0.01, rel=1e-3)


def test_nonfinite_losses_are_flagged_not_hidden():
    alg = MEow(_policy())
    alg.update(_batch())
    assert not alg.nonfinite
    alg.update(_batch()._replace(rewards=torch.full((64,), float("nan"))))
    assert alg.nonfinite


def test_target_network_is_frozen_and_in_eval_mode():
    alg = MEow(_policy())
    assert not alg.target.training
    assert all(not p.requires_grad for p in alg.target.parameters())
    alg.update(_batch())
    assert not alg.target.training and alg.policy.training


def test_act_uses_the_online_flow_in_eval_mode():
    policy = _policy(dropout=0.5)
    alg = MEow(policy)
    obs = torch.randn(8, 4)
    a1, a2 = alg.act(obs, deterministic=True), alg.act(obs, deterministic=True)
    assert torch.equal(a1, a2)  # dropout is off
    torch.manual_seed(3)
    sampled = alg.act(obs)
    torch.manual_seed(3)
    assert torch.equal(sampled, policy.sample(obs)[0])


def test_normalizer_is_applied_to_both_observations():
    class Shift(nn.Module):
        def forward(self, x):
            return x - 1.0

    alg = MEow(_policy(), Shift())
    plain = MEow(copy.deepcopy(alg.policy))
    alg.policy.eval(), plain.policy.eval()
    b = _batch()
    shifted = b._replace(obs=b.obs - 1.0, next_obs=b.next_obs - 1.0)
    assert torch.allclose(alg._loss(b)[0], plain._loss(shifted)[0])


def test_with_gamma_zero_q_learns_the_reward_and_pi_its_boltzmann_distribution():
    """One state and gamma = 0: Q(s, a) must fit r(a), so that log pi(a) - log pi(a') =
    (r(a) - r(a')) / alpha, the max-entropy optimum. The reward is chosen so that its Boltzmann
    distribution (a tanh-squashed Gaussian, sigma^2 = alpha / 2k) is exactly representable by a
    1-D flow, whose couplings can only shift by a function of the state."""
    torch.manual_seed(0)
    alpha, k, m = 0.5, 2.0, 0.3

    def reward(a: torch.Tensor) -> torch.Tensor:
        return -k * (torch.atanh(a) - m) ** 2 - alpha * torch.log(1 - a**2)

    policy = FlowPolicy(1, 1, alpha=alpha, log_sigma_min=-3.0, log_sigma_max=1.0, dropout=0.0)
    alg = MEow(policy, gamma=0.0, lr=3e-3)
    obs = torch.zeros(256, 1)
    for _ in range(800):
        a = torch.rand(256, 1) * 1.9 - 0.95
        alg.update(
            TransitionBatch(
                obs, a, reward(a[:, 0]), obs, torch.zeros(256), torch.zeros(256, dtype=torch.bool)
            )
        )
    grid = torch.linspace(-0.8, 0.8, 9)[:, None]
    with torch.no_grad():
        policy.eval()
        q = policy.q_values(torch.zeros(9, 1), grid)
        logp = policy.log_prob(torch.zeros(9, 1), grid)
    r = reward(grid[:, 0])
    assert torch.allclose(q - q.mean(-1, keepdim=True), r - r.mean(), atol=0.05)
    assert torch.allclose(alpha * (logp - logp.mean()), r - r.mean(), atol=0.05)
    assert policy.scaling.log_sigma(torch.zeros(1, 1)).exp().item() == pytest.approx(
        (alpha / (2 * k)) ** 0.5, rel=0.05
    )


def test_update_compiles_as_one_graph():
    """No host synchronisation or Python branching on tensors: fullgraph compilation succeeds
    and gives the eager loss."""
    alg = MEow(_policy())
    alg.policy.eval()
    b = _batch()
    compiled = torch.compile(alg._loss, fullgraph=True, backend="aot_eager")
    assert torch.allclose(compiled(b)[0], alg._loss(b)[0], rtol=1e-5)


@pytest.mark.slow
def test_compile_option_matches_eager_updates():
    """``compile=True`` (inductor on CPU) takes the same update steps as eager execution."""
    eager = MEow(_policy(dropout=0.0))
    compiled = MEow(copy.deepcopy(eager.policy), compile=True)
    for _ in range(3):
        b = _batch()
        eager.update(b)
        compiled.update(b)
    for p, q in zip(eager.policy.parameters(), compiled.policy.parameters(), strict=True):
        assert torch.allclose(p, q, atol=1e-5)
    assert not torch.equal(eager.policy.shift.net[0].weight, _policy().shift.net[0].weight)

"""The learner's divergence remedies: automatic temperature and the log-density floor scoped to V;
each saved and restored with the learner."""

from __future__ import annotations

import copy
import math

import pytest
import torch

from meow.algorithms import MEow
from meow.modules import FlowPolicy
from meow.storage import ReplayBuffer, TransitionBatch


def _policy(**kw) -> FlowPolicy:
    torch.manual_seed(0)
    policy = FlowPolicy(4, 2, alpha=0.3, log_sigma_min=-2.0, log_sigma_max=0.5, **kw)
    with torch.no_grad():
        for p in policy.parameters():
            p.add_(0.2 * torch.randn_like(p))
    return policy


def _batch(n: int = 64) -> TransitionBatch:
    g = torch.Generator().manual_seed(1)
    return TransitionBatch(
        obs=torch.randn(n, 4, generator=g),
        actions=torch.rand(n, 2, generator=g) * 1.8 - 0.9,
        rewards=torch.randn(n, generator=g),
        next_obs=torch.randn(n, 4, generator=g),
        terminated=(torch.rand(n, generator=g) < 0.3).float(),
        truncated=torch.rand(n, generator=g) < 0.3,
    )


# ----------------------------------------------------------------- automatic temperature
def _entropy(alg: MEow, obs: torch.Tensor) -> float:
    with torch.no_grad():
        return -alg.policy.sample(obs)[1].mean().item()


@pytest.mark.parametrize("offset, direction", [(+5.0, 1), (-5.0, -1)])
def test_alpha_rises_below_the_target_entropy_and_falls_above_it(offset, direction):
    policy = _policy(dropout=0.0)
    b = _batch()
    target = _entropy(MEow(_policy(dropout=0.0)), b.obs) + offset
    alg = MEow(policy, target_entropy=target, alpha_lr=1e-2)
    before = alg.policy.alpha.item()
    stats = alg.update(b)
    after = alg.policy.alpha.item()
    # Adam's first step moves log alpha by its learning rate, in the direction of the entropy gap
    assert math.log(after / before) == pytest.approx(direction * 1e-2, rel=1e-3)
    assert alg.target.alpha.item() == after == pytest.approx(stats["alpha"].item())
    assert alg.log_alpha.exp().item() == pytest.approx(after)


def test_alpha_settles_where_the_entropy_meets_the_target():
    """A toy dual problem with the learner's own step: entropy(alpha) = log(alpha) + 1 (a policy
    that widens with alpha) and target 0 nats: the fixed point is alpha = exp(-1)."""
    alg = MEow(_policy(), target_entropy=0.0, alpha_lr=0.05)
    for _ in range(600):
        entropy = alg.log_alpha.detach() + 1.0
        alg._temperature_step(-entropy)
    assert alg.policy.alpha.item() == pytest.approx(math.exp(-1.0), rel=0.05)


def test_fixed_alpha_is_the_default_and_has_no_temperature_state():
    alg = MEow(_policy())
    alg.update(_batch())
    assert alg.log_alpha is None and alg.policy.alpha.item() == pytest.approx(0.3)
    assert "log_alpha" not in alg.state_dict()


def test_a_tuned_alpha_is_saved_and_restored():
    b = _batch()
    alg = MEow(_policy(), target_entropy=10.0, alpha_lr=1e-2)
    for _ in range(3):
        alg.update(b)
    state = copy.deepcopy(alg.state_dict())  # as read back from a file: no tensor shared
    again = MEow(_policy(), target_entropy=10.0, alpha_lr=1e-2)
    again.load_state_dict(state)
    assert again.policy.alpha.item() == pytest.approx(alg.policy.alpha.item())
    assert again.target.alpha.item() == pytest.approx(alg.policy.alpha.item())
    for learner in (alg, again):  # the same samples for both
        torch.manual_seed(5)
        learner.update(b)
    assert again.log_alpha.item() == alg.log_alpha.item()


def test_tuning_from_a_fixed_alpha_checkpoint_starts_at_its_alpha():
    fixed = MEow(_policy())
    fixed.policy.alpha.fill_(0.07)
    fixed.target.alpha.fill_(0.07)
    tuned = MEow(_policy(), target_entropy=0.0)
    tuned.load_state_dict(fixed.state_dict())  # no log_alpha, no alpha optimizer
    assert tuned.log_alpha.exp().item() == pytest.approx(0.07)


# ------------------------------------------------------------------------ log-density floor
def test_the_floor_is_per_action_dimension_in_the_learner():
    alg = MEow(_policy(), log_prob_floor=-2.0)
    assert alg.log_prob_floor == -4.0
    assert MEow(_policy()).log_prob_floor is None


def _loss_grads(policy: FlowPolicy, b: TransitionBatch, **kw) -> dict[str, torch.Tensor]:
    alg = MEow(copy.deepcopy(policy), **kw)
    alg.loss(b)[0].backward()
    return {name: p.grad.clone() for name, p in alg.policy.named_parameters() if p.grad is not None}


def test_a_floor_below_every_action_changes_no_gradient():
    policy, b = _policy(dropout=0.0).eval(), _batch()
    plain = _loss_grads(policy, b)
    floored = _loss_grads(policy, b, log_prob_floor=-1e6)
    assert plain.keys() == floored.keys()
    for name, g in plain.items():
        assert torch.allclose(floored[name], g, rtol=1e-4, atol=1e-5), name


def test_the_floor_leaves_the_log_density_its_true_residual_and_v_the_floored_one():
    """With every action below the floor: the couplings (in log pi only, not in V) get the unfloored
    fit's gradient; the shift heads (in V only) get the gradient of V's fit to the target with
    ``log pi`` replaced by the floor, computed here by hand."""
    policy, b = _policy(dropout=0.0).eval(), _batch()
    plain = _loss_grads(policy, b)
    value = _loss_grads(policy, b, log_prob_floor=1e6)
    couplings = [n for n in plain if n.startswith("couplings.")]
    shifts = [n for n in plain if n.startswith("shift.")]
    assert couplings and shifts
    by_hand = copy.deepcopy(policy)
    alg = MEow(by_hand)
    y = alg.soft_target(TransitionBatch(*(x.unsqueeze(1) for x in b)))["target"]
    floor = 1e6 * policy.action_dim  # nats per dimension, times d
    v_fit = 0.5 * (by_hand.values(b.obs) + by_hand.alpha * floor - y).square().sum(0).mean()
    v_fit.backward()
    for name in couplings:
        assert torch.allclose(value[name], plain[name], rtol=1e-4, atol=1e-5), name
    for name in shifts:
        expected = by_hand.get_parameter(name).grad
        assert torch.allclose(value[name], expected, rtol=1e-4), name
        assert not torch.allclose(value[name], plain[name], rtol=1e-3), name


def test_the_floor_reports_how_often_it_binds():
    policy, b = _policy(dropout=0.0).eval(), _batch()
    with torch.no_grad():
        log_pi = policy.log_prob(b.obs, b.actions)
    floor = log_pi.median().item()
    below = (log_pi < floor).float().mean().item()
    assert 0 < below < 1
    alg = MEow(copy.deepcopy(policy), log_prob_floor=floor / policy.action_dim)
    assert alg.loss(b)[1]["below_floor"].item() == pytest.approx(below)


# ----------------------------------------------------------------------- all of them at once
@pytest.mark.slow
def test_every_remedy_compiled_matches_eager():
    """The remedies run inside the compiled loss as in the eager one: from the same seed, the first
    update's loss, target and sampled log-density agree, and so does its step."""
    torch.set_num_threads(1)
    kw = {"target_entropy": -2.0, "log_prob_floor": -1.0}
    flow = {"shift_scale": "reward", "head_norm": "layer"}
    out = []
    for capture in ("none", "compile"):
        buffer = ReplayBuffer(400, 1, 4, 2, verbose=False)
        b = _batch(200)
        for i in range(200):
            buffer.add(*(x[i : i + 1] for x in b))
        alg = MEow(_policy(**flow), capture=capture, **kw)
        torch.manual_seed(0)
        stats = alg.update_from(buffer, 32)
        out.append((alg._flat.detach().clone(), {k: v.item() for k, v in stats.items()}))
    (eager, eager_stats), (compiled, compiled_stats) = out
    assert compiled_stats == pytest.approx(eager_stats, rel=1e-5, abs=1e-6)
    # Adam's first step is lr * g / |g| per element: rounding may flip the sign of a near-zero
    # gradient (a difference of 2 lr there); every other element agrees closely
    diff = (eager - compiled).abs()
    assert diff.max() <= 2 * 1e-3 + 1e-6 and diff.median() < 1e-6
    assert (eager - MEow(_policy(**flow))._flat).abs().max() > 1e-4


def test_a_learner_state_from_before_the_removals_loads():
    """Checkpoints up to commit 195055e hold the bounded target's largest reward: it is ignored."""
    source = MEow(_policy())
    old = {**source.state_dict(), "reward_max": torch.tensor(3.0)}
    alg = MEow(_policy(), target_entropy=-2.0)
    alg.load_state_dict(old)
    assert torch.equal(alg._flat, source._flat) and alg.log_alpha.exp().item() == pytest.approx(0.3)
    assert "reward_max" not in alg.state_dict()

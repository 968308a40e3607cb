"""The learner's divergence remedies: automatic temperature, bounded target, log-density floor,
decoupled weight decay; each off by default, each saved and restored with the learner."""

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


# -------------------------------------------------------------------------- bounded target
def test_the_bounded_target_is_clamped_exactly_at_what_the_rewards_allow():
    policy = _policy(dropout=0.0)
    alg = MEow(policy, gamma=0.9, target_bound=True)
    b = _batch()
    with torch.no_grad():
        alg.target.shift.net[-1].bias.fill_(1e4)  # a target V far above any soft return
    out = alg.soft_target(TransitionBatch(*(x.unsqueeze(1) for x in b)))
    v_max = (b.rewards.max() + 0.3 * 2 * math.log(2.0)) / (1 - 0.9)
    assert torch.allclose(out["next_v"], v_max.expand(64), rtol=1e-6)
    alive = 1.0 - b.terminated
    assert torch.allclose(out["target"], b.rewards + 0.9 * alive * v_max, rtol=1e-6)
    assert alg.reward_max.item() == b.rewards.max().item()


def test_the_bound_leaves_targets_below_it_alone():
    b = TransitionBatch(*(x.unsqueeze(1) for x in _batch()))
    free, bounded = MEow(_policy(dropout=0.0)), MEow(_policy(dropout=0.0), target_bound=True)
    with torch.no_grad():
        for alg in (free, bounded):
            alg.target.shift.net[-1].bias.fill_(-50.0)
    assert torch.equal(free.soft_target(b)["target"], bounded.soft_target(b)["target"])


def test_the_largest_reward_is_kept_across_batches_and_checkpoints():
    alg = MEow(_policy(), target_bound=True)
    b = _batch()
    alg.update(b)
    alg.update(b._replace(rewards=b.rewards - 100.0))
    assert alg.reward_max.item() == b.rewards.max().item()
    again = MEow(_policy(), target_bound=True)
    again.load_state_dict(alg.state_dict())
    assert again.reward_max.item() == b.rewards.max().item()


# ------------------------------------------------------------------------ log-density floor
def test_the_floor_changes_only_the_actions_below_it():
    policy = _policy(dropout=0.0).eval()
    b = _batch()
    with torch.no_grad():
        log_pi = policy.log_prob(b.obs, b.actions)
        floor = log_pi.median().item()
        q = policy.q_values(b.obs, b.actions)
        floored = policy.q_values_floored(b.obs, b.actions, floor)
        v = policy.values(b.obs)
    above = log_pi >= floor
    assert 0 < above.sum() < 64
    assert torch.allclose(floored[:, above], q[:, above], atol=1e-4)
    assert torch.allclose(floored[:, ~above], v[:, ~above] + policy.alpha * floor, atol=1e-5)


def test_below_the_floor_the_fit_reaches_the_value_only():
    policy = _policy(dropout=0.0).eval()
    b = _batch(8)
    floored = policy.q_values_floored(b.obs, b.actions, floor=1e6).sum()  # every action below
    floored.backward()
    couplings = [p.grad for p in policy.couplings.parameters()]
    assert all(g is None or torch.count_nonzero(g) == 0 for g in couplings)
    assert torch.count_nonzero(policy.scaling.net[0].weight.grad) > 0


def test_the_floor_is_per_action_dimension_in_the_learner():
    alg = MEow(_policy(), log_prob_floor=-2.0)
    assert alg.log_prob_floor == -4.0
    assert MEow(_policy()).log_prob_floor is None


def _loss_grads(policy: FlowPolicy, b: TransitionBatch, **kw) -> dict[str, torch.Tensor]:
    alg = MEow(copy.deepcopy(policy), **kw)
    alg.loss(b)[0].backward()
    return {name: p.grad.clone() for name, p in alg.policy.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("scope", ["fit", "value", "mask"])
def test_a_floor_below_every_action_changes_no_gradient(scope):
    policy, b = _policy(dropout=0.0).eval(), _batch()
    plain = _loss_grads(policy, b)
    floored = _loss_grads(policy, b, log_prob_floor=-1e6, log_prob_floor_scope=scope)
    assert plain.keys() == floored.keys()
    for name, g in plain.items():
        assert torch.allclose(floored[name], g, rtol=1e-4, atol=1e-5), name


def test_the_value_scoped_floor_leaves_the_log_density_its_true_residual():
    """With every action below the floor: the couplings (in log pi only, not in V) get the unfloored
    fit's gradient, the shift heads (in V only) the floored fit's."""
    policy, b = _policy(dropout=0.0).eval(), _batch()
    plain = _loss_grads(policy, b)
    fit = _loss_grads(policy, b, log_prob_floor=1e6, log_prob_floor_scope="fit")
    value = _loss_grads(policy, b, log_prob_floor=1e6, log_prob_floor_scope="value")
    couplings = [n for n in plain if n.startswith("couplings.")]
    shifts = [n for n in plain if n.startswith("shift.")]
    assert couplings and shifts
    for name in couplings:
        assert torch.allclose(value[name], plain[name], rtol=1e-4, atol=1e-5), name
        assert name not in fit or torch.count_nonzero(fit[name]) == 0  # the fit-scoped floor blocks it
    for name in shifts:
        assert torch.allclose(value[name], fit[name], rtol=1e-4, atol=1e-5), name
        assert not torch.allclose(value[name], plain[name], rtol=1e-3), name


def test_the_masked_floor_teaches_v_only_from_the_actions_at_or_above_it():
    """``mask``: the shift heads (in V only) get the unfloored fit's gradient of the replay actions
    at or above the floor, as if the others were not in the batch; the couplings (in log pi only)
    get the unfloored gradient of all of them."""
    policy, b = _policy(dropout=0.0).eval(), _batch()
    with torch.no_grad():
        log_pi = policy.log_prob(b.obs, b.actions)
    floor = log_pi.median().item()  # half the actions below it
    above = log_pi >= floor
    assert 0 < int(above.sum()) < len(above)
    plain = _loss_grads(policy, b)
    masked = _loss_grads(policy, b, log_prob_floor=floor / 2, log_prob_floor_scope="mask")  # per dimension
    upper = _loss_grads(policy, TransitionBatch(*(x[above] for x in b)))
    share = above.float().mean().item()  # the loss averages over the whole batch
    shifts = [n for n in plain if n.startswith("shift.")]
    couplings = [n for n in plain if n.startswith("couplings.")]
    assert shifts and couplings
    for name in shifts:
        assert torch.allclose(masked[name], share * upper[name], rtol=1e-4, atol=1e-6), name
        assert not torch.allclose(masked[name], plain[name], rtol=1e-2), name
    for name in couplings:
        assert torch.allclose(masked[name], plain[name], rtol=1e-4, atol=1e-5), name
    alg = MEow(copy.deepcopy(policy), log_prob_floor=floor / 2, log_prob_floor_scope="mask")
    assert alg.loss(b)[1]["below_floor"].item() == pytest.approx(1.0 - share)


def test_the_floor_scope_is_checked():
    with pytest.raises(
        ValueError, match="algo.log_prob_floor_scope=both is invalid; valid: fit | value | mask"
    ):
        MEow(_policy(), log_prob_floor=-1.0, log_prob_floor_scope="both")


# --------------------------------------------------------------------------- weight decay
def test_weight_decay_is_decoupled_and_off_by_default():
    assert type(MEow(_policy()).optimizer) is torch.optim.Adam
    alg = MEow(_policy(), lr=1e-2, weight_decay=0.5)
    assert type(alg.optimizer) is torch.optim.AdamW
    before = alg._flat.detach().clone()
    alg._flat.grad.zero_()
    alg.optimizer.step()  # no gradient: only the decay acts, p <- p * (1 - lr * wd)
    assert torch.allclose(alg._flat.detach(), before * (1 - 1e-2 * 0.5), atol=1e-7)


# ----------------------------------------------------------------------- all of them at once
@pytest.mark.slow
@pytest.mark.parametrize("scope", ["fit", "value", "mask"])
def test_every_remedy_compiled_matches_eager(scope):
    """The remedies run inside the compiled loss as in the eager one: from the same seed, the first
    update's loss, target and sampled log-density agree, and so does its step."""
    torch.set_num_threads(1)
    kw = {"target_entropy": -2.0, "target_bound": True, "log_prob_floor": -1.0, "weight_decay": 0.01}
    kw["log_prob_floor_scope"] = scope
    flow = {"shift_scale": "reward", "coupling_shift_bound": 1.0, "head_norm": "layer"}
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


def test_a_learner_state_from_before_the_remedies_loads():
    old = MEow(_policy()).state_dict()
    del old["reward_max"]  # what checkpoints written before these settings hold
    alg = MEow(_policy(), target_bound=True, target_entropy=-2.0)
    alg.load_state_dict(old)
    assert alg.reward_max.item() == -math.inf and alg.log_alpha.exp().item() == pytest.approx(0.3)
    alg.update(_batch())
    assert alg.reward_max.item() == _batch().rewards.max().item()

"""The learner: the Bellman target, bootstrapping rules, Polyak averaging, clipping, purity."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from meow.algorithms import MEow
from meow.modules import FlowPolicy
from meow.storage import ReplayBuffer, TransitionBatch


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
    loss, _ = alg.loss(b)
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
    assert torch.allclose(alg.loss(moved)[0], c.mean(), rtol=1e-6)


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
    assert torch.allclose(alg.loss(b)[0], plain.loss(shifted)[0])


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
    compiled = torch.compile(alg.loss, fullgraph=True, backend="aot_eager")
    assert torch.allclose(compiled(b)[0], alg.loss(b)[0], rtol=1e-5)


def test_the_loss_over_the_flat_parameter_gives_the_per_parameter_gradients():
    """What ``capture="compile"`` compiles: the loss with the flow's parameters taken as pieces of
    the flat parameter. One graph (no breaks), the same loss as the modules' own parameters give,
    and one gradient for the flat parameter equal to the parameters' gradients end to end."""
    buffer = _filled_buffer()
    alg = MEow(_policy(), n_step=2, capture="compile")
    alg.policy.train()
    torch.manual_seed(3)
    loss, _ = alg._sampled_loss(buffer, 64)
    grads = torch.autograd.grad(loss, alg._params)
    torch.manual_seed(3)
    flat_loss, _ = torch.compile(alg._flat_loss, fullgraph=True, backend="aot_eager")(buffer, 64)
    (flat_grad,) = torch.autograd.grad(flat_loss, [alg._flat])
    assert torch.equal(flat_loss, loss)
    assert torch.allclose(flat_grad, torch.cat([g.reshape(-1) for g in grads]), rtol=1e-5, atol=1e-7)
    assert flat_grad.abs().sum() > 0


@pytest.mark.slow
def test_compile_capture_takes_the_eager_update_steps():
    """``capture="compile"`` (inductor on CPU, sampling included) takes the same steps as eager
    execution from the same random state (inductor's own RNG off, so both draw the same numbers)."""
    from torch._inductor import config as inductor_config

    buffer = _filled_buffer()
    eager = MEow(_policy(), n_step=2)
    compiled = MEow(copy.deepcopy(eager.policy), n_step=2, capture="compile")
    with inductor_config.patch(fallback_random=True):
        for alg in (eager, compiled):
            torch.manual_seed(5)
            for _ in range(3):
                alg.update_from(buffer, 64)
    for p, q in zip(eager.policy.parameters(), compiled.policy.parameters(), strict=True):
        assert torch.allclose(p, q, atol=1e-5)
    assert not torch.equal(eager.policy.shift.net[0].weight, _policy().shift.net[0].weight)


@pytest.mark.slow
def test_compiled_learners_of_one_process_keep_their_own_settings():
    """Compiled steps check fewer guards on the CPU (meow.algorithms.capture.fixed_structure_guard),
    and every learner of a process shares the compiled code of its functions: learners that differ
    only in Python settings (parameters of the same shapes) must still each take their own eager
    steps, and ``act`` its own sampled and deterministic actions."""
    from torch._inductor import config as inductor_config

    buffer = _filled_buffer()
    settings = [({}, {}), ({}, {"log_prob_floor": 1.0}), ({"q_dropout": "shared"}, {})]
    results = []
    with inductor_config.patch(fallback_random=True):
        for policy_kw, kw in settings:
            steps = []
            for capture in ("none", "compile"):
                alg = MEow(_policy(**policy_kw), n_step=2, capture=capture, **kw)
                torch.manual_seed(5)
                for _ in range(2):
                    alg.update_from(buffer, 64)
                obs = torch.randn(3, 4)
                torch.manual_seed(6)
                sampled = alg.act(obs)
                steps.append(
                    (torch.cat([p.reshape(-1) for p in alg.policy.parameters()]), sampled, alg.act(obs, True))
                )
            (eager, compiled) = steps
            # Adam's first steps move each parameter by about lr whatever its gradient's size, so a
            # gradient near zero whose sign the compiled kernels' rounding flips moves one parameter
            # by up to 2 lr (seen on an Intel AVX-512 CPU: 1 of 160,908 off by 8e-5). Settings that
            # differ move over 60,000 of them by more than 1e-4: a handful of outliers cannot hide one.
            assert ((eager[0] - compiled[0]).abs() > 1e-5).sum() <= 16
            for e, c in zip(eager[1:], compiled[1:], strict=True):
                assert torch.allclose(e, c, atol=1e-5)
            assert not torch.allclose(compiled[1], compiled[2])  # sampled, not the mode
            results.append(compiled[0])
    # the settings matter here: with the same seed, each learner took other steps
    assert not torch.allclose(results[0], results[1]) and not torch.allclose(results[0], results[2])


def test_the_guards_a_compiled_cpu_step_skips_are_structural_only():
    """What :func:`fixed_structure_guard` drops from the compiled loss's guards: the module tree's
    structure and the flat-parameter layout, never a tensor, an argument, a flag or a setting."""
    from meow.algorithms.capture import _GUARD_FILTERS, fixed_structure_guard

    if not _GUARD_FILTERS:
        pytest.skip(f"torch {torch.__version__} has no guard filters")
    seen = []

    def record(entries):
        seen.extend(entries)
        return [True] * len(entries)

    alg = MEow(_policy(), n_step=2)
    alg.policy.train()
    torch.compile(alg._flat_loss, options={"guard_filter_fn": record}, backend="eager")(_filled_buffer(), 64)
    dropped = [e for e in seen if fixed_structure_guard(e)]
    kept = [e for e in seen if not fixed_structure_guard(e)]
    assert len(dropped) > len(kept) / 2  # most of them
    assert any(e.name.startswith("layout") for e in dropped)
    for e in dropped:
        assert e.guard_type != "TENSOR_MATCH" and not e.name.endswith(".training"), e.name
        assert not e.name.startswith("args"), e.name
    # every setting the loss reads stays guarded, e.g. the n-step length and the heads' flags
    assert any(e.name.endswith(".n_step") for e in kept)
    assert any(e.name.endswith(".training") for e in kept)
    assert any(e.guard_type == "TENSOR_MATCH" for e in kept)


def test_capture_modes_are_checked():
    assert MEow(_policy(), capture="auto").capture.mode == "none"  # on the CPU
    with pytest.raises(ValueError, match="algo.capture=cudagraph needs a CUDA device"):
        MEow(_policy(), capture="cudagraph")
    with pytest.raises(ValueError, match="algo.capture=graph is invalid; valid: auto"):
        MEow(_policy(), capture="graph")
    with pytest.raises(ValueError, match="algo.n_step=0 is invalid"):
        MEow(_policy(), n_step=0)


def test_the_learner_sets_the_float32_matmul_precision_it_is_given():
    # a library that turned TF32 on before the learner was built (rl-games' Runner does)
    torch.set_float32_matmul_precision("high")
    MEow(_policy())
    assert torch.get_float32_matmul_precision() == "highest"
    assert torch.backends.cuda.matmul.fp32_precision == "ieee"
    with pytest.raises(ValueError, match="algo.matmul_precision=tf32 needs a CUDA device .* cpu") as info:
        MEow(_policy(), matmul_precision="tf32")
    assert "\n" not in str(info.value)
    with pytest.raises(ValueError, match="algo.matmul_precision=fp16 is invalid; valid: float32 | tf32"):
        MEow(_policy(), matmul_precision="fp16")


def _filled_buffer(steps: int = 40, num_envs: int = 3) -> ReplayBuffer:
    torch.manual_seed(2)
    buf = ReplayBuffer(30 * num_envs, num_envs, 4, 2, verbose=False)
    for _ in range(steps):
        buf.add(
            torch.randn(num_envs, 4),
            torch.rand(num_envs, 2) * 1.8 - 0.9,
            torch.randn(num_envs),
            torch.randn(num_envs, 4),
            (torch.rand(num_envs) < 0.1).float(),
            torch.rand(num_envs) < 0.1,
        )
    return buf


def test_n_step_target_of_hand_written_windows():
    """Three windows of n = 3, written out term by term: a termination at step 1 (no bootstrap,
    step 2 ignored), a time-out at step 1 (bootstrap from its final observation), and a full window."""
    g, alpha = 0.9, 0.3
    alg = MEow(_policy(), gamma=g, n_step=3)
    torch.manual_seed(4)
    obs, next_obs = torch.randn(3, 3, 4), torch.randn(3, 3, 4)
    actions = torch.rand(3, 3, 2) * 1.8 - 0.9
    rewards = torch.tensor([[1.0, 2.0, 4.0], [1.0, 2.0, 4.0], [1.0, 2.0, 4.0]])
    terminated = torch.tensor([[0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [0.0, 0.0, 0.0]])
    truncated = torch.tensor([[False, False, True], [False, True, False], [False, False, False]])
    batch = TransitionBatch(obs, actions, rewards, next_obs, terminated, truncated)
    with torch.no_grad():
        y = alg.soft_target(batch)["target"]

        def log_pi(i: int, t: int) -> float:
            return alg.target.log_prob(obs[i, t : t + 1], actions[i, t : t + 1]).item()

        def v(i: int, t: int) -> float:
            return alg.target.values(next_obs[i, t : t + 1]).min(0).values.item()

    terminal = 1 + g * 2 - alpha * g * log_pi(0, 1)
    timeout = 1 + g * 2 - alpha * g * log_pi(1, 1) + g**2 * v(1, 1)
    full = 1 + g * 2 + g**2 * 4 - alpha * (g * log_pi(2, 1) + g**2 * log_pi(2, 2)) + g**3 * v(2, 2)
    assert y.tolist() == pytest.approx([terminal, timeout, full], rel=1e-5)


def test_n_step_targets_from_the_ring_buffer_match_a_step_by_step_reference():
    """Windows sampled from a wrapped ring buffer (crossing its end, cut by terminations, time-outs
    and the newest step) give the target that a plain loop over the stored episode computes."""
    n, g, cap = 4, 0.8, 7
    buf = ReplayBuffer(cap * 2, 2, 3, 2, verbose=False)
    torch.manual_seed(6)
    stored = []  # (step id, env) -> transition, by step id
    for t in range(13):  # 13 steps into 7 slots: wrapped, the oldest kept step 6 is in the last slot
        term = torch.tensor([float(t in (8, 11)), 0.0])
        trunc = torch.tensor([False, t == 7])
        o, a, r, o2 = torch.randn(2, 3), torch.rand(2, 2) * 1.8 - 0.9, torch.randn(2), torch.randn(2, 3)
        o[:, 0] = t  # the obs carries its step id
        buf.add(o, a, r, o2, term, trunc)
        stored.append((o, a, r, o2, term, trunc))
    alg = MEow(_policy(obs_dim=3), gamma=g, n_step=n)
    batch = buf.sample_windows(3000, n)
    with torch.no_grad():
        y = alg.soft_target(batch)["target"]
    starts = batch.obs[:, 0, 0].long()
    seen = set()
    for i in range(0, 3000, 7):
        s = starts[i].item()
        env = 0 if torch.equal(batch.obs[i, 0], stored[s][0][0]) else 1
        assert torch.equal(batch.obs[i, 0], stored[s][0][env])
        expected, discount = 0.0, 1.0
        with torch.no_grad():
            for k in range(n):
                o, a, r, o2, term, trunc = (x[env] for x in stored[s + k])
                expected += discount * r.item()
                if k > 0:
                    expected -= 0.3 * discount * alg.target.log_prob(o[None], a[None]).item()
                discount *= g
                newest = s + k == 12
                if term:
                    seen.add("termination")
                    break
                if trunc or newest or k == n - 1:
                    seen.add("time-out" if trunc else "newest" if newest else "full")
                    expected += discount * alg.target.values(o2[None]).min(0).values.item()
                    break
        if (s % cap) + n > cap and s + n - 1 <= 12:
            seen.add("wraps")
        assert y[i].item() == pytest.approx(expected, rel=1e-4, abs=1e-5)
    assert seen == {"termination", "time-out", "newest", "full", "wraps"}
    assert starts.min() == 6 and starts.max() == 12


def test_parameters_are_views_of_one_flat_tensor_and_old_optimizer_states_load():
    """The flow's parameters and gradients are views of one flat tensor each (one Adam, clip and
    Polyak operation for all), and an optimizer state saved with one entry per parameter tensor
    (checkpoints written before) loads as the same moments, concatenated."""
    import copy

    from meow.algorithms.capture import flat_optimizer_state

    torch.manual_seed(0)
    policy = FlowPolicy(3, 2, alpha=0.2, log_sigma_min=-5.0, log_sigma_max=-0.3)
    old_policy = copy.deepcopy(policy)
    alg = MEow(policy)
    flat = alg.optimizer.param_groups[0]["params"]
    assert len(flat) == 1 and flat[0].numel() == sum(p.numel() for p in policy.parameters())
    for p in policy.parameters():
        assert p.untyped_storage().data_ptr() == flat[0].untyped_storage().data_ptr()
    # an optimizer of the earlier layout, one state per tensor, after two steps
    old = torch.optim.Adam(old_policy.parameters(), lr=1e-3)
    for _ in range(2):
        old.zero_grad()
        sum((p * (k + 1)).sum() for k, p in enumerate(old_policy.parameters())).backward()
        old.step()
    state = flat_optimizer_state(old.state_dict(), list(policy.parameters()))
    alg.optimizer.load_state_dict(state)
    moments = alg.optimizer.state[flat[0]]
    expected = torch.cat([old.state[p]["exp_avg_sq"].reshape(-1) for p in old_policy.parameters()])
    torch.testing.assert_close(moments["exp_avg_sq"], expected)
    assert float(moments["step"]) == 2.0
    # module.zero_grad() (gradients set to None) does not detach the flat gradient
    policy.zero_grad()
    batch = TransitionBatch(
        torch.randn(8, 3),
        torch.rand(8, 2) * 2 - 1,
        torch.randn(8),
        torch.randn(8, 3),
        torch.zeros(8),
        torch.zeros(8, dtype=torch.bool),
    )
    before = flat[0].detach().clone()
    alg.update(batch)
    assert not torch.equal(before, flat[0])
    assert alg._flat.grad.abs().sum() > 0

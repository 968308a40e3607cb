"""The learner on a CUDA device: the captured update and act against eager execution, n-step
targets and replay sampling on the device. Collected everywhere, skipped without CUDA;
``tools/gpu_check.py`` runs them on a GPU machine."""

from __future__ import annotations

import copy

import pytest
import torch

from meow.algorithms import MEow
from meow.modules import EmpiricalNormalization, FlowPolicy
from meow.storage import ReplayBuffer

pytestmark = pytest.mark.gpu

OBS, ACT = 60, 8  # Isaac-Ant's sizes
TOLERANCE = {"rtol": 1e-4, "atol": 2e-5}
"""Captured vs eager parameters after the updates below: the same arithmetic, but cuBLAS and the
fused Adam kernel may pick other reduction orders in a graph."""


def _learner(
    capture: str,
    n_step: int = 1,
    obs_dim: int = OBS,
    action_dim: int = ACT,
    matmul_precision: str = "float32",
) -> MEow:
    torch.manual_seed(0)
    policy = FlowPolicy(obs_dim, action_dim, alpha=0.05, log_sigma_min=-5.0, log_sigma_max=2.0).cuda()
    with torch.no_grad():  # away from the zero initialisation, so that every term is exercised
        for p in policy.parameters():
            p.add_(0.05 * torch.randn_like(p))
    normalizer = EmpiricalNormalization(obs_dim).cuda()
    return MEow(policy, normalizer, n_step=n_step, capture=capture, matmul_precision=matmul_precision)


def _buffer(num_envs: int = 256, steps: int = 64, nan_reward: bool = False) -> ReplayBuffer:
    g = torch.Generator(device="cuda").manual_seed(1)
    buf = ReplayBuffer(num_envs * 50, num_envs, OBS, ACT, "cuda", verbose=False)
    for _ in range(steps):
        rewards = torch.randn(num_envs, device="cuda", generator=g)
        if nan_reward:
            rewards[0] = float("nan")
        buf.add(
            torch.randn(num_envs, OBS, device="cuda", generator=g),
            torch.rand(num_envs, ACT, device="cuda", generator=g) * 2 - 1,
            rewards,
            torch.randn(num_envs, OBS, device="cuda", generator=g),
            (torch.rand(num_envs, device="cuda", generator=g) < 0.02).float(),
            torch.rand(num_envs, device="cuda", generator=g) < 0.02,
        )
    return buf


def _max_diff(a: MEow, b: MEow) -> float:
    pairs = zip(
        [*a.policy.parameters(), *a.target.parameters()],
        [*b.policy.parameters(), *b.target.parameters()],
        strict=True,
    )
    return max((p - q).abs().max().item() for p, q in pairs)


@pytest.mark.parametrize("n_step", [1, 3])
@pytest.mark.parametrize("batch_size", [256, 4096])
def test_captured_update_takes_the_eager_steps(batch_size, n_step):
    buf = _buffer()
    eager, captured = _learner("none", n_step), _learner("cudagraph", n_step)
    assert captured.capture.graphed and not eager.capture.graphed
    for alg in (eager, captured):
        torch.cuda.manual_seed(7)  # the same draws: graph replays advance the generator as eager kernels do
        for _ in range(20):
            stats = alg.update_from(buf, batch_size)
    torch.cuda.synchronize()
    print(f"batch {batch_size}, n_step {n_step}: max |captured - eager| = {_max_diff(eager, captured):.2e}")
    for p, q in zip(eager.policy.parameters(), captured.policy.parameters(), strict=True):
        assert torch.allclose(p, q, **TOLERANCE)
    for p, q in zip(eager.target.parameters(), captured.target.parameters(), strict=True):
        assert torch.allclose(p, q, **TOLERANCE)
    assert _max_diff(eager, _learner("none", n_step)) > 1e-3  # they did move
    assert torch.isfinite(stats["loss"]) and not captured.nonfinite


def test_compiled_kernels_recorded_in_a_graph_take_the_eager_steps():
    from torch._inductor import config as inductor_config

    buf = _buffer()
    eager, compiled = _learner("none"), _learner("compile")
    assert compiled.capture.graphed  # on CUDA, compile also records the compiled kernels as one graph
    with inductor_config.patch(fallback_random=True):  # the eager random numbers
        for alg in (eager, compiled):
            torch.cuda.manual_seed(7)
            for _ in range(10):
                alg.update_from(buf, 1024)
    torch.cuda.synchronize()
    print(f"compiled + graph, batch 1024: max |compiled - eager| = {_max_diff(eager, compiled):.2e}")
    for p, q in zip(eager.policy.parameters(), compiled.policy.parameters(), strict=True):
        assert torch.allclose(p, q, rtol=1e-3, atol=1e-4)  # fused kernels sum in other orders


def test_tf32_products_run_captured_as_eager_and_differ_from_float32():
    buf = _buffer()
    eager, captured = (
        _learner("none", matmul_precision="tf32"),
        _learner("cudagraph", matmul_precision="tf32"),
    )
    assert torch.backends.cuda.matmul.fp32_precision == "tf32"
    for alg in (eager, captured):
        torch.cuda.manual_seed(7)
        for _ in range(20):
            alg.update_from(buf, 4096)
    full = _learner("none")  # built last: the process's products are full float32 again
    assert torch.backends.cuda.matmul.fp32_precision == "ieee"
    torch.cuda.manual_seed(7)
    for _ in range(20):
        full.update_from(buf, 4096)
    torch.cuda.synchronize()
    print(
        f"TF32, batch 4096: max |captured - eager| = {_max_diff(eager, captured):.2e}, "
        f"max |TF32 - float32| = {_max_diff(eager, full):.2e}"
    )
    for p, q in zip(eager.policy.parameters(), captured.policy.parameters(), strict=True):
        assert torch.allclose(p, q, **TOLERANCE)
    assert _max_diff(eager, full) > 0  # the products did run as TF32


def test_captured_act_gives_the_eager_actions():
    eager, captured = _learner("none"), _learner("cudagraph")
    obs = torch.randn(512, OBS, device="cuda")
    for deterministic in (False, True):
        torch.cuda.manual_seed(3)
        want = [eager.act(obs, deterministic) for _ in range(3)]
        torch.cuda.manual_seed(3)
        got = [captured.act(obs, deterministic) for _ in range(3)]
        for w, g in zip(want, got, strict=True):
            assert torch.allclose(w, g, atol=1e-6)
    assert not torch.equal(got[0], captured.act(obs + 1.0, True))  # a replay reads the new input


def test_a_loaded_state_is_recaptured():
    buf = _buffer()
    a, b = _learner("cudagraph"), _learner("none")
    torch.cuda.manual_seed(1)
    for _ in range(5):
        a.update_from(buf, 512)
    # copies, as a checkpoint file gives: loading aliases optimizer state tensors that need no move
    b.load_state_dict(copy.deepcopy(a.state_dict()))
    resumed = _learner("cudagraph")
    resumed.load_state_dict(copy.deepcopy(a.state_dict()))
    for alg in (b, resumed):
        torch.cuda.manual_seed(2)
        for _ in range(5):
            alg.update_from(buf, 512)
    for p, q in zip(b.policy.parameters(), resumed.policy.parameters(), strict=True):
        assert torch.allclose(p, q, **TOLERANCE)


def test_a_nonfinite_loss_is_flagged_inside_the_graph():
    alg = _learner("cudagraph")
    alg.update_from(_buffer(), 256)
    assert not alg.nonfinite.item()
    alg.update_from(_buffer(nan_reward=True), 4096)
    assert alg.nonfinite.item()


def test_n_step_targets_on_the_device_equal_the_cpus():
    buf = _buffer(num_envs=32, steps=120)
    alg = _learner("none", n_step=5)
    windows = buf.sample_windows(4096, 5)
    with torch.no_grad():
        on_gpu = alg.soft_target(windows)["target"]
        cpu = copy.deepcopy(alg.policy).cpu()
        cpu_alg = MEow(cpu, copy.deepcopy(alg.normalizer).cpu(), n_step=5)
        cpu_alg.target.load_state_dict({k: v.cpu() for k, v in alg.target.state_dict().items()})
        on_cpu = cpu_alg.soft_target(type(windows)(*(x.cpu() for x in windows)))["target"]
    assert torch.allclose(on_gpu.cpu(), on_cpu, rtol=1e-4, atol=1e-4)


def test_sampling_on_the_device_is_uniform_aligned_and_never_waits_for_the_host():
    num_envs, steps = 16, 40
    buf = ReplayBuffer(num_envs * 32, num_envs, 2, 1, "cuda", verbose=False)
    for t in range(steps):  # wraps: 40 steps into 32 slots; obs = (step, env)
        obs = torch.stack([torch.full((num_envs,), float(t)), torch.arange(num_envs, dtype=torch.float32)], 1)
        buf.add(
            obs.cuda(),
            torch.zeros(num_envs, 1, device="cuda"),
            obs[:, 0].cuda(),
            obs.cuda(),
            torch.zeros(num_envs, device="cuda"),
            torch.zeros(num_envs, dtype=torch.bool, device="cuda"),
        )
    alg = _learner("cudagraph", n_step=4, obs_dim=2, action_dim=1)
    alg.update_from(buf, 1024)  # records the graphs
    alg.act(torch.zeros(num_envs, 2, device="cuda"))
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")  # any host synchronisation raises
    try:
        windows = buf.sample_windows(200_000, 4)
        for _ in range(3):
            alg.update_from(buf, 1024)
            alg.act(torch.zeros(num_envs, 2, device="cuda"))
    finally:
        torch.cuda.set_sync_debug_mode("default")
    step, env = windows.obs[..., 0].long().cpu(), windows.obs[..., 1].long().cpu()
    assert (env == env[:, :1]).all()  # one env per window
    inside = step[:, :1] + torch.arange(1, 4) <= steps - 1  # not past the newest step
    assert ((step[:, 1:] - step[:, :-1] == 1) | ~inside).all()  # consecutive steps
    at_head = step[:, :1] + torch.arange(4) == steps - 1
    assert torch.equal(windows.truncated.cpu(), at_head)  # the newest step ends a window
    counts = torch.bincount((step[:, 0] - 8) * num_envs + env[:, 0], minlength=32 * num_envs).float()
    assert step[:, 0].min() == 8 and step[:, 0].max() == steps - 1  # only stored steps start a window
    expected = 200_000 / counts.numel()
    assert ((counts - expected).abs() < 5 * expected**0.5).all()  # uniform within 5 sigma


def test_the_training_loop_never_waits_for_the_host_between_log_points():
    """Acting, the env step, the normalizer, storing and the captured updates of the runner's
    loop all stay on the device: a host synchronisation in any of them (one per step costs a
    third of the pipeline's speed at 4096 envs) raises here."""
    from meow.config import load_config
    from meow.envs.synthetic import SyntheticVecEnv
    from meow.runners import OffPolicyRunner

    n = 256
    cfg = load_config(
        "Isaac-Ant",
        [
            f"env.num_envs={n}",
            "device=cuda",
            "runner.progress=false",
            "runner.log_interval=1000000000",
            "algo.normalize_obs=true",
            "algo.capture=cudagraph",
        ],
    )
    runner = OffPolicyRunner(cfg, SyntheticVecEnv(n, cfg.env.obs_dim, cfg.env.action_dim, "cuda"), None, None)
    cfg.runner.total_steps = cfg.runner.warmup_steps + 4 * n  # past warm-up: graphs recorded
    runner.learn()
    updates = runner.num_updates
    calls = []

    def on_step(result) -> None:  # from the first to the 12th step: every iteration in between
        calls.append(1)
        torch.cuda.set_sync_debug_mode("error" if len(calls) < 12 else "default")

    cfg.runner.total_steps += 12 * n
    try:
        runner.learn(on_step=on_step)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert len(calls) == 12
    assert runner.num_updates - updates == 12 * cfg.algo.updates_per_step

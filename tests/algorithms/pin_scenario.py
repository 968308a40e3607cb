"""A fixed training scenario whose outcome pins the learner's behaviour across refactors.

``run(capture, n_step)`` trains a default-architecture flow for a few hundred updates on a
seeded replay buffer and returns digests of everything the update touches: the online and
target parameters, Adam's moments and the actions ``act`` draws afterwards. The digests of the
learner as it was before the learner was split into the loss and its capture wrapper (commit
29e6591) are stored in ``data/pin_29e6591.json``, one recording per machine kind;
``python tests/algorithms/pin_scenario.py`` prints today's as one such recording (run it with
that commit's ``source`` first on ``PYTHONPATH`` to record the pinned learner on a new machine).
"""

from __future__ import annotations

import hashlib
import json
import platform
import sys
from pathlib import Path

import torch

from meow.algorithms import MEow
from meow.modules import FlowPolicy
from meow.storage import ReplayBuffer

OBS_DIM, ACTION_DIM, NUM_ENVS, STEPS = 11, 3, 2, 600
UPDATES = {1: 200, 3: 100}
"""Updates per ``n_step``: the one-step target and the n-step target with its entropy terms."""


def _digest(t: torch.Tensor) -> str:
    return hashlib.sha256(t.detach().contiguous().cpu().numpy().tobytes()).hexdigest()[:24]


def run(capture: str, n_step: int) -> dict[str, object]:
    """Trains from seed 0 and returns the digests and a few float summaries of the result."""
    torch.manual_seed(0)
    policy = FlowPolicy(OBS_DIM, ACTION_DIM, alpha=0.25, log_sigma_min=-5.0, log_sigma_max=-0.3)
    buffer = ReplayBuffer(2 * STEPS, NUM_ENVS, OBS_DIM, ACTION_DIM, verbose=False)
    data = torch.Generator().manual_seed(1)
    for t in range(STEPS):
        obs = torch.randn(NUM_ENVS, OBS_DIM, generator=data)
        buffer.add(
            obs,
            torch.rand(NUM_ENVS, ACTION_DIM, generator=data) * 2 - 1,
            torch.randn(NUM_ENVS, generator=data),
            obs + 0.1 * torch.randn(NUM_ENVS, OBS_DIM, generator=data),
            (torch.rand(NUM_ENVS, generator=data) < 0.02).float(),
            torch.full((NUM_ENVS,), t % 97 == 96),
        )
    learner = MEow(policy, lr=1e-3, gamma=0.99, tau=0.005, grad_clip=30.0, n_step=n_step, capture=capture)
    for _ in range(UPDATES[n_step]):
        stats = learner.update_from(buffer, 64)
    obs = torch.randn(5, OBS_DIM, generator=data)
    sampled = learner.act(obs)
    mode = learner.act(obs, deterministic=True)
    flat = torch.cat([p.detach().reshape(-1) for p in policy.parameters()])
    target = torch.cat([p.detach().reshape(-1) for p in learner.target.parameters()])
    moments = learner.optimizer.state_dict()["state"][0]
    return {
        "params": _digest(flat),
        "target": _digest(target),
        "exp_avg_sq": _digest(moments["exp_avg_sq"]),
        "sampled_actions": _digest(sampled),
        "deterministic_actions": _digest(mode),
        "loss": float(stats["loss"]),
        "params_abs_sum": float(flat.double().abs().sum()),
        "target_abs_sum": float(target.double().abs().sum()),
    }


def machine() -> dict[str, str | None]:
    """What the digests depend on: the torch build, the CPU's vector instructions and its maker."""
    info = {}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            info.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    return {
        "torch": torch.__version__,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "cpu_vendor": info.get("vendor_id") or platform.processor() or None,
        "cpu_model": info.get("model name"),
    }


def cases() -> dict[str, dict[str, object]]:
    """Every pinned case: eager and compiled, one-step and 3-step targets."""
    torch.set_num_threads(1)
    return {f"{c}_n{n}": run(c, n) for c in ("none", "compile") for n in UPDATES}


if __name__ == "__main__":
    result = {**machine(), "cases": cases()}
    json.dump(result, sys.stdout, indent=1)
    print()

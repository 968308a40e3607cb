"""Export of the deterministic policy, with the observation normalizer folded in."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor, nn

from meow.modules import FlowPolicy


class DeterministicPolicy(nn.Module):
    """``obs -> tanh(couplings(0; normalize(obs)))``: the evaluation action in ``[-1, 1]``."""

    def __init__(self, policy: FlowPolicy, normalizer: nn.Module) -> None:
        super().__init__()
        self.policy = policy
        self.normalizer = normalizer

    def forward(self, obs: Tensor) -> Tensor:
        return self.policy.deterministic(self.normalizer(obs))


def export_torchscript(policy: FlowPolicy, normalizer: nn.Module, path: str | Path) -> Path:
    """Traces the deterministic policy on CPU and saves it as TorchScript."""
    import copy

    module = DeterministicPolicy(copy.deepcopy(policy).cpu(), copy.deepcopy(normalizer).cpu()).eval()
    example = torch.zeros(1, policy.obs_dim)
    with torch.no_grad():
        traced = torch.jit.trace(module, example)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    traced.save(str(path))
    return path

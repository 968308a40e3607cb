"""Export of the deterministic policy, with the observation normalizer folded in.

Both formats take float32 observations ``(batch, obs_dim)`` and return actions in ``[-1, 1]``
(the env adapters map them onto the task's action range).
"""

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


def _cpu_module(policy: FlowPolicy, normalizer: nn.Module) -> DeterministicPolicy:
    import copy

    return DeterministicPolicy(copy.deepcopy(policy).cpu(), copy.deepcopy(normalizer).cpu()).eval()


def export_torchscript(policy: FlowPolicy, normalizer: nn.Module, path: str | Path) -> Path:
    """Traces the deterministic policy on CPU and saves it as TorchScript."""
    module = _cpu_module(policy, normalizer)
    example = torch.zeros(1, policy.obs_dim)
    with torch.no_grad():
        traced = torch.jit.trace(module, example)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    traced.save(str(path))
    return path


def export_onnx(policy: FlowPolicy, normalizer: nn.Module, path: str | Path) -> Path:
    """Saves the deterministic policy as ONNX (input ``obs``, output ``actions``, dynamic batch).

    Needs the ``onnx`` package. Uses torch's TorchScript-based exporter, which needs no other.
    """
    import warnings

    try:
        import onnx  # noqa: F401
    except ImportError:
        raise RuntimeError("ONNX export needs the onnx package: pip install onnx") from None
    module = _cpu_module(policy, normalizer)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(
            module,
            (torch.zeros(1, policy.obs_dim),),
            str(path),
            dynamo=False,
            input_names=["obs"],
            output_names=["actions"],
            dynamic_axes={"obs": {0: "batch"}, "actions": {0: "batch"}},
        )
    return path

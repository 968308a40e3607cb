"""Neural network modules: building blocks, the flow policy and the observation normalizer."""

from __future__ import annotations

from meow.modules.flow_policy import FlowPolicy
from meow.modules.normalizer import EmpiricalNormalization

__all__ = ["EmpiricalNormalization", "FlowPolicy"]

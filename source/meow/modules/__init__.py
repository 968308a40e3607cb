"""Neural network modules: the flow policy (and :func:`build_policy`, which builds it from a config)
and the observation normalizer."""

from __future__ import annotations

from meow.modules.flow_policy import FlowPolicy, build_policy
from meow.modules.normalizer import EmpiricalNormalization

__all__ = ["EmpiricalNormalization", "FlowPolicy", "build_policy"]

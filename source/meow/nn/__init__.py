"""Network building blocks shared by the flow layers and the policy: Swish, MLPs, stacked MLPs."""

from __future__ import annotations

from meow.nn.layers import Dropout, EnsembleLinear, EnsembleMLP, Swish, mlp

__all__ = ["Dropout", "EnsembleLinear", "EnsembleMLP", "Swish", "mlp"]

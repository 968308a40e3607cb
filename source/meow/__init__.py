"""MEow: maximum-entropy RL with one energy-based normalizing flow.

The flow is the policy, the soft Q function and the soft V function at once
(Chao et al., "Maximum Entropy Reinforcement Learning via Energy-Based Normalizing
Flow", NeurIPS 2024).
"""

from __future__ import annotations

__version__ = "0.1.0"

"""The training loop that ties environment, learner, replay buffer and logging together."""

from __future__ import annotations

from meow.runners.checkpoint import (
    CheckpointError,
    CheckpointWriteError,
    find_checkpoint,
    read_checkpoint,
    safe_load,
)
from meow.runners.off_policy_runner import OffPolicyRunner, StopRequested

__all__ = [
    "CheckpointError",
    "CheckpointWriteError",
    "OffPolicyRunner",
    "StopRequested",
    "find_checkpoint",
    "read_checkpoint",
    "safe_load",
]

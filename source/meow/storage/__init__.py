"""Transition storage."""

from __future__ import annotations

from meow.storage.replay_buffer import ReplayBuffer, TransitionBatch

__all__ = ["ReplayBuffer", "TransitionBatch"]

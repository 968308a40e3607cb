"""Learning algorithms."""

from __future__ import annotations

from meow.algorithms.meow import MEow

__all__ = ["MEow"]

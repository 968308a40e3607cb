"""MEow's settings for the Isaac Lab tasks (``env.kind: isaaclab`` task files), shipped as package data."""

from __future__ import annotations

from pathlib import Path

TASK_DIR = Path(__file__).resolve().parent
"""The directory of the task files, wherever the package is installed."""

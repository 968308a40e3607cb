"""Adapters that run MEow inside other RL libraries' training loops (imported on demand)."""

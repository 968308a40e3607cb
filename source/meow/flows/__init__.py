"""Invertible transforms that make up the energy-based normalizing flow."""

from __future__ import annotations

from meow.flows.coupling import AdditiveCoupling
from meow.flows.scaling import StateScaling
from meow.flows.squash import TanhSquash
from meow.flows.transform import Transform

__all__ = ["AdditiveCoupling", "StateScaling", "TanhSquash", "Transform"]

"""Seeding and capture/restore of every random number generator the training loop uses."""

from __future__ import annotations

import random
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch


def seed_everything(seed: int) -> None:
    """Seeds Python, NumPy and torch (CPU and every CUDA device)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def get_rng_state() -> dict:
    """The state of every generator :func:`seed_everything` seeds, as tensors and plain types
    (so that a checkpoint holding it loads with ``torch.load(..., weights_only=True)``)."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    numpy_state = {
        "kind": str(kind),
        "keys": torch.from_numpy(keys.astype(np.int64)),
        "pos": int(pos),
        "has_gauss": int(has_gauss),
        "cached_gaussian": float(gauss),
    }
    state = {"python": random.getstate(), "numpy": numpy_state, "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    """Restores :func:`get_rng_state`'s output (also the NumPy tuple that older checkpoints hold)."""
    python = state["python"]
    random.setstate((python[0], tuple(python[1]), python[2]))
    numpy_state = state["numpy"]
    if isinstance(numpy_state, dict):
        n = numpy_state
        keys = np.asarray(n["keys"].numpy() if torch.is_tensor(n["keys"]) else n["keys"]).astype(np.uint32)
        numpy_state = (n["kind"], keys, n["pos"], n["has_gauss"], n["cached_gaussian"])
    np.random.set_state(numpy_state)
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


@contextmanager
def isolated_rng(seed: int) -> Iterator[None]:
    """Runs a block with every generator :func:`seed_everything` seeds seeded with ``seed``, and
    puts their states back afterwards: the block draws a reproducible stream of its own and
    leaves the caller's stream exactly where it was (e.g. an evaluation inside training)."""
    state = get_rng_state()
    seed_everything(seed)
    try:
        yield
    finally:
        set_rng_state(state)

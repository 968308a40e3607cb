"""Finding and reading checkpoints, with clear errors for files that are not ours."""

from __future__ import annotations

import re
from pathlib import Path

import torch

FORMAT = "meow-checkpoint/1"
_STEP = re.compile(r"model_(\d+)\.pt$")


class CheckpointError(ValueError):
    """A checkpoint that is missing, unreadable, or from another task or architecture."""


def find_checkpoint(path: str | Path) -> Path:
    """A checkpoint file, or the latest ``model_<step>.pt`` of a run directory."""
    path = Path(path)
    if path.is_file():
        return path
    if path.is_dir():
        found = [(int(m.group(1)), p) for p in path.rglob("model_*.pt") if (m := _STEP.search(p.name))]
        if not found:
            raise CheckpointError(f"no model_<step>.pt checkpoint under {path}")
        return max(found)[1]
    raise CheckpointError(f"checkpoint {path} does not exist")


def read_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict:
    """Loads a checkpoint written by :meth:`OffPolicyRunner.save` and checks its format."""
    path = find_checkpoint(path)
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=False)
    except Exception as err:
        raise CheckpointError(f"cannot read checkpoint {path}: {type(err).__name__}: {err}") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a MEow checkpoint (expected format '{FORMAT}')")
    ckpt["path"] = str(path)
    return ckpt

"""Finding, reading and pruning checkpoints: data only, with clear errors for files that are not ours.

Every file is read with ``torch.load(..., weights_only=True)``: tensors, numbers, strings and
containers of them. The only other objects allowed are NumPy's array and dtype, which the RNG
state of checkpoints written before the RNG state became tensors holds. A file that names any
other Python object (a crafted pickle that would run code) is refused before anything in it is built.
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

FORMAT = "meow-checkpoint/1"
_STEP = re.compile(r"model_(\d+)\.pt$")


class CheckpointError(ValueError):
    """A checkpoint that is missing, unreadable, or from another task or architecture."""


class CheckpointWriteError(OSError):
    """A checkpoint or replay buffer that could not be written (e.g. a full disk)."""


def _numpy_globals() -> list[Any]:
    core = getattr(np, "_core", None) or np.core  # NumPy 2 renamed numpy.core to numpy._core
    allowed = [core.multiarray._reconstruct, np.ndarray, np.dtype]
    allowed += [type(np.dtype(t)) for t in (np.uint32, np.float64, np.int64)]
    return allowed


def safe_load(path: str | Path, map_location: str | torch.device = "cpu", mmap: bool = False) -> Any:
    """``torch.load`` with ``weights_only=True``; any failure is a one-line :class:`CheckpointError`.

    ``mmap``: map the tensors' bytes from the file instead of reading them into memory first.
    """
    try:
        # torch warns (several lines) about pickle protocols it did not write; the file is refused
        # or read all the same, so the warning tells the user nothing.
        with warnings.catch_warnings(), torch.serialization.safe_globals(_numpy_globals()):
            warnings.simplefilter("ignore", UserWarning)
            return torch.load(path, map_location=map_location, weights_only=True, mmap=mmap)
    except Exception as err:
        text = " ".join(str(err).split())
        found = re.search(r"GLOBAL (\S+)", text)
        if found is not None:
            raise CheckpointError(
                f"refused {path}: it names the Python object {found.group(1)}, not only tensors and "
                "plain data, and loading it could run code; only files written by MEow are read"
            ) from None
        detail = re.search(r"WeightsUnpickler error: (.*?)(?: Check the documentation|$)", text)
        if detail is not None:  # torch's advice to retry with weights_only=False is not taken here
            text = detail.group(1)
        elif "PytorchStreamReader" in text or isinstance(err, EOFError):
            text = "the file is truncated or damaged"
        raise CheckpointError(f"cannot read checkpoint {path}: {type(err).__name__}: {text[:160]}") from None


def checkpoint_step(path: Path) -> int | None:
    """The env step in a ``model_<step>.pt`` name, or None."""
    m = _STEP.search(path.name)
    return int(m.group(1)) if m else None


def run_checkpoints(run_dir: Path) -> list[tuple[int, Path]]:
    """``(step, path)`` of the ``model_<step>.pt`` files directly in ``run_dir``, oldest first."""
    found = [(step, p) for p in run_dir.glob("model_*.pt") if (step := checkpoint_step(p)) is not None]
    return sorted(found)


def find_checkpoint(path: str | Path) -> Path:
    """A checkpoint file, or the latest ``model_<step>.pt`` of a run directory."""
    path = Path(path)
    if path.is_file():
        return path
    if path.is_dir():
        found = [(s, p) for p in path.rglob("model_*.pt") if (s := checkpoint_step(p)) is not None]
        if not found:
            raise CheckpointError(f"no model_<step>.pt checkpoint under {path}")
        return max(found)[1]
    raise CheckpointError(f"checkpoint {path} does not exist")


def read_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict:
    """Loads a checkpoint written by :meth:`OffPolicyRunner.save` and checks its format."""
    path = find_checkpoint(path)
    ckpt = safe_load(path, map_location)
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a MEow checkpoint (expected format '{FORMAT}')")
    ckpt["path"] = str(path)
    return ckpt


def load_learner_state(learner: Any, ckpt: dict) -> None:
    """Restores ``ckpt["learner"]`` into ``learner`` (:class:`meow.algorithms.MEow`).

    Raises:
        CheckpointError: in one line, either the learner state lacks an entry (the checkpoint is
            incomplete) or it holds a network that does not fit ``learner`` (other algo settings).
    """
    src = ckpt.get("path", "checkpoint")
    state = ckpt.get("learner")
    if not isinstance(state, dict):
        raise CheckpointError(
            f"{src} is incomplete: it has no learner state; valid: a checkpoint written by scripts/train.py"
        )
    try:
        learner.load_state_dict(state)
    except KeyError as err:
        if err.args and err.args[0] not in state:  # an entry of the state itself, not of a network
            raise CheckpointError(
                f"{src} is incomplete: its learner state has no {err} entry; valid: a checkpoint "
                "written by scripts/train.py"
            ) from None
        raise _mismatch(src, err) from None
    except (RuntimeError, ValueError) as err:
        raise _mismatch(src, err) from None


def _mismatch(src: str, err: BaseException) -> CheckpointError:
    first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return CheckpointError(f"{src} holds a network that does not match this run's algo settings: {first}")


def unfinished_saves(run_dir: Path) -> list[Path]:
    """Temporary files that saves killed midway left in ``run_dir`` (never read; safe to delete)."""
    return sorted(run_dir.glob(".*.pt.*.tmp"))


def prune_checkpoints(run_dir: Path, keep: int) -> list[Path]:
    """Deletes all but the newest ``keep`` checkpoints of a run (``keep=0``: none); returns the deleted."""
    if keep <= 0:
        return []
    old = [p for _, p in run_checkpoints(run_dir)[:-keep]]
    for p in old:
        p.unlink(missing_ok=True)
    return old


BUFFER_FILE = "replay_buffer.pt"
"""The replay buffer saved beside a run's newest checkpoint."""


def one_line(err: BaseException) -> str:
    """An exception as one short line (torch's and the OS's messages span several)."""
    text = " ".join(str(err).split()) or type(err).__name__
    return text if len(text) <= 200 else text[:197] + "..."


def write_checkpoint(state: dict, path: Path) -> None:
    """Writes ``state`` to ``path`` atomically; :class:`CheckpointWriteError` (one line, naming the
    previous checkpoint, which stays intact) when it cannot."""
    from meow.utils.io import atomic_torch_save

    try:
        atomic_torch_save(state, path)
    except (OSError, RuntimeError) as err:
        previous = [p for _, p in run_checkpoints(path.parent) if p != path]
        kept = f"the previous checkpoint {previous[-1]} is intact" if previous else "no earlier checkpoint"
        raise CheckpointWriteError(f"cannot write checkpoint {path}: {one_line(err)}; {kept}") from None


def save_replay_buffer(buffer: Any, target: Path, global_step: int, limit_gib: float, quiet: bool) -> bool:
    """Writes ``buffer`` in place (no copy of it on the device) with the step it belongs to, or says
    in one line why not (a buffer above ``limit_gib``: once, unless ``quiet``). Returns whether the
    size notice has been given."""
    size = buffer.filled_nbytes
    if size > limit_gib * 2**30:
        if not quiet:
            print(
                f"[meow] replay buffer not saved: {size / 2**30:.2f} GiB is above "
                f"runner.save_buffer_max_gib={limit_gib}; --resume refills it before updates resume"
            )
        return True
    print(f"[meow] saving the replay buffer ({size / 2**20:,.1f} MiB) to {target}")
    from meow.utils.io import atomic_torch_save

    try:
        atomic_torch_save({"global_step": global_step, **buffer.state_dict()}, target)
    except (OSError, RuntimeError) as err:
        print(f"[meow] replay buffer not saved: {one_line(err)}; --resume refills it before updates resume")
    return quiet


def load_replay_buffer(buffer: Any, path: Path, src: str, global_step: int) -> None:
    """Restores the replay buffer saved with checkpoint ``src`` at ``global_step``, or says in one
    line why it refills (none saved, another step's, damaged: then it is emptied)."""
    refill = "it refills before updates resume"
    if not path.is_file():
        print(f"[meow] no replay buffer saved beside {src}; {refill}")
        return
    try:
        # Mapped from the file, copied field by field: no second copy of the buffer on the device.
        data = safe_load(path, "cpu", mmap=True)
        if not isinstance(data, dict) or data.get("global_step") != global_step:
            step = data.get("global_step") if isinstance(data, dict) else None
            print(f"[meow] {path} holds env step {step}, not {global_step:,}; {refill}")
            return
        buffer.load_state_dict(data)
    except (CheckpointError, ValueError, KeyError, RuntimeError) as err:
        buffer.clear()
        print(f"[meow] replay buffer {path} is damaged ({one_line(err)}); {refill}")

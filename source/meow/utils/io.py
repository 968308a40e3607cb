"""File writing that never leaves a half-written file in place of a good one."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

import torch

TMP_SUFFIX = ".tmp"
"""Suffix of the temporary file a save writes before it is renamed onto its name."""


def atomic_torch_save(obj: Any, path: str | Path) -> None:
    """``torch.save`` to a temporary file beside ``path``, flushed to disk, then renamed onto it.

    A process killed at any moment leaves either the previous file or the complete new one
    under ``path`` (plus, at worst, a hidden ``.<name>.*.tmp`` that no reader looks at); a
    write that fails (a full disk) removes its temporary file and raises.
    """

    def write(f: BinaryIO) -> None:
        writer = _ErrorKeepingWriter(f)
        try:
            torch.save(obj, writer)
        except RuntimeError:
            # torch reports a failed write as an opaque RuntimeError; the OS's reason
            # (e.g. "No space left on device") is the useful one.
            if writer.error is not None:
                raise writer.error from None
            raise

    atomic_write(path, write)


def atomic_write(path: str | Path, write: Callable[[BinaryIO], None]) -> None:
    """Calls ``write`` on a temporary binary file beside ``path``, syncs it, then renames it onto ``path``.

    The guarantee of :func:`atomic_torch_save` for any writer (JSON, a library's own format).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TMP_SUFFIX)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            # Without fsync a power loss after the rename can leave an empty file under the name.
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


class _ErrorKeepingWriter:
    """A binary file's ``write``/``flush`` that remembers the first OSError it raised."""

    def __init__(self, f) -> None:
        self._f = f
        self.error: OSError | None = None

    def write(self, data) -> int:
        try:
            return self._f.write(data)
        except OSError as err:
            self.error = self.error or err
            raise

    def flush(self) -> None:
        self._f.flush()


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some filesystems do not sync directories; the rename itself is still atomic
    finally:
        os.close(fd)


def check_creatable_dir(path: str | Path, key: str) -> None:
    """Raises a one-line ValueError unless directory ``path`` exists or can be created and written.

    Nothing is left behind: the nearest existing ancestor must be a directory in which a directory
    can be made, which is tried (and the trial removed). Permission bits alone do not say so: for
    root every directory passes them, and ``/proc`` or a read-only mount still refuse.
    """
    target = Path(path).expanduser()
    probe = target
    while not probe.exists() and probe.parent != probe:
        probe = probe.parent
    valid = "a directory this user can create and write"
    if not probe.is_dir():
        raise ValueError(f"{key}={path} is invalid: {probe} is not a directory; valid: {valid}")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise ValueError(f"{key}={path} is invalid: {probe} is not writable; valid: {valid}")
    try:
        os.rmdir(tempfile.mkdtemp(dir=probe, prefix=".meow-write-check-"))
    except OSError as err:
        reason = err.strerror or type(err).__name__
        raise ValueError(
            f"{key}={path} is invalid: no directory can be made in {probe} ({reason}); valid: {valid}"
        ) from None

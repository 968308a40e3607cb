"""The one-line error for a bad value, and the check of a setting with a fixed set of values.

Every rule of the form "one of these values" is written once: the tuple of values lives beside the
code that acts on it (e.g. :data:`meow.algorithms.capture.CAPTURE_MODES`), the constructor checks
it with :func:`check_choice`, and :mod:`meow.config` checks the same tuple, under the setting's
dotted key, before anything is built (:data:`meow.config.CHOICES`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def invalid(key: str, value: Any, valid: str) -> str:
    """``key=value is invalid; valid: ...``: the project's one-line message for a bad value."""
    return f"{key}={value} is invalid; valid: {valid}"


def check_choice(key: str, value: Any, choices: Sequence[Any], error: type[Exception] = ValueError) -> None:
    """Raises ``error`` with :func:`invalid`'s line unless ``value`` is one of ``choices``."""
    if value not in choices:
        raise error(invalid(key, value, " | ".join(map(str, choices))))

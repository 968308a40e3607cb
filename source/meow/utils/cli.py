"""Command-line parsing that answers every bad input with one line: ``error: ...``, exit status 2."""

from __future__ import annotations

import argparse
import sys
from typing import NoReturn


class ArgumentParser(argparse.ArgumentParser):
    """``argparse.ArgumentParser`` whose errors are one ``error: ...`` line on stderr (no usage block)."""

    def error(self, message: str) -> NoReturn:
        print(f"error: {' '.join(message.split())} (see --help)", file=sys.stderr)
        raise SystemExit(2)


def _checked(convert, kind: str, ok, valid: str):
    """An argparse ``type``: ``convert`` the text (an ``a``/``an`` ``kind``), then keep it if ``ok``;
    each error names the value and ``valid``."""

    def parse(text: str):
        try:
            value = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {kind}; valid: {valid}") from None
        if not ok(value):
            raise argparse.ArgumentTypeError(f"{value} is invalid; valid: {valid}")
        return value

    parse.__name__ = valid
    return parse


def at_least(minimum: int):
    """An argparse ``type`` for integers >= ``minimum`` whose error names the value and the range."""
    return _checked(int, "an integer", lambda v: v >= minimum, f"an integer >= {minimum}")


def scale_in(low: float, high: float):
    """An argparse ``type`` for numbers in ``[low, high]`` whose error names the value and the range."""
    return _checked(
        float, "a number", lambda v: low <= v <= high, f"a number in [{low}, {high}]"
    )  # refuses nan


positive_number = _checked(float, "a number", lambda v: 0 < v < float("inf"), "a finite number > 0")
"""An argparse ``type`` for finite numbers > 0 (``1e6`` and ``128000`` alike); refuses nan."""

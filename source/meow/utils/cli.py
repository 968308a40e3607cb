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


def at_least(minimum: int):
    """An argparse ``type`` for integers >= ``minimum`` whose error names the value and the range."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{text!r} is not an integer; valid: an integer >= {minimum}"
            ) from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{value} is invalid; valid: an integer >= {minimum}")
        return value

    parse.__name__ = f"integer >= {minimum}"
    return parse


def scale_in(low: float, high: float):
    """An argparse ``type`` for numbers in ``[low, high]`` whose error names the value and the range."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{text!r} is not a number; valid: a number in [{low}, {high}]"
            ) from None
        if not low <= value <= high:  # also refuses nan
            raise argparse.ArgumentTypeError(f"{value} is invalid; valid: a number in [{low}, {high}]")
        return value

    parse.__name__ = f"number in [{low}, {high}]"
    return parse

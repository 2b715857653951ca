"""Terminal output shared by the commands, the exit codes of a gate run, and argument types.

Adapter text (error messages, its stderr tail, observed values) reaches the terminal through
these consoles, so every string printed is cleaned of escape sequences and control characters
first: an adapter must not clear the screen, set the window title or forge lines.
"""

from __future__ import annotations

import argparse
import math
import re
import sys
from typing import Any

from rich.console import Console

EXIT_OK = 0  # conformant (only expected deviations)
EXIT_NONCONFORMANT = 1
EXIT_USAGE = 2
EXIT_HARNESS = 3  # harness or adapter error

# ESC-introduced sequences (CSI, OSC, and two-character ones), then any other C0/C1 control
# except newline and tab.
_ESCAPES = re.compile(r"\x1b(\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(\x07|\x1b\\\\)?|[@-Z\\\\-_])?")
_CONTROLS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def clean(text: str) -> str:
    """`text` with escape sequences removed and other control characters shown as `?`."""
    return _CONTROLS.sub("?", _ESCAPES.sub("", text))


class SafeConsole(Console):
    """A rich Console whose `print` cleans every string it is given (see `clean`)."""

    def print(self, *objects: Any, **kwargs: Any) -> None:
        super().print(*(clean(o) if isinstance(o, str) else o for o in objects), **kwargs)


def make_console(stderr: bool = False) -> Console:
    """Rich output; when printing to a file or a pipe, wide enough that tables do not fold."""
    stream = sys.stderr if stderr else sys.stdout
    width = None if stream.isatty() else 180
    return SafeConsole(highlight=False, soft_wrap=False, width=width, file=stream)


def positive_seconds(text: str) -> float:
    """An argparse type: a finite number of seconds above 0."""
    value = _number(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be a number of seconds above 0")
    return value


def non_negative(text: str) -> float:
    """An argparse type: a finite number, 0 or more."""
    value = _number(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be 0 or more")
    return value


def percent(text: str) -> float:
    """An argparse type: a percentage from 0 to 100."""
    value = _number(text)
    if not 0 <= value <= 100:
        raise argparse.ArgumentTypeError(f"{text!r} must be a percentage from 0 to 100")
    return value


def positive_int(text: str) -> int:
    """An argparse type: a whole number, 1 or more."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be 1 or more")
    return value


def _number(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r} must be a finite number")
    return value

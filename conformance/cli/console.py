"""Terminal output shared by the commands, and the exit codes of a gate run."""

from __future__ import annotations

import sys

from rich.console import Console

EXIT_OK = 0  # conformant (only expected deviations)
EXIT_NONCONFORMANT = 1
EXIT_USAGE = 2
EXIT_HARNESS = 3  # harness or adapter error


def make_console(stderr: bool = False) -> Console:
    """Rich output; when printing to a file or a pipe, wide enough that tables do not fold."""
    stream = sys.stderr if stderr else sys.stdout
    width = None if stream.isatty() else 180
    return Console(highlight=False, soft_wrap=False, width=width, file=stream)

# PYTHON_ARGCOMPLETE_OK
"""The `callgate` command line. Each area registers its subcommands from its own module."""

from __future__ import annotations

import argparse
import os
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path

import argcomplete

from callgate.conformance.cli import model as cli_model
from callgate.conformance.cli import mutants as cli_mutants
from callgate.conformance.cli import report as cli_report
from callgate.conformance.cli import run as cli_run
from callgate.conformance.cli import trace as cli_trace
from callgate.conformance.cli.console import EXIT_HARNESS


def _version() -> str:
    from importlib import metadata

    try:
        return metadata.version("callgate")
    except metadata.PackageNotFoundError:
        return "0+unknown"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="callgate",
        description="Conformance testing for COM asynchronous calls and asynchronous RPC.")
    parser.add_argument("--version", action="version", version=f"callgate {_version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    cli_model.register(sub)
    cli_run.register(sub)
    cli_report.register(sub)
    cli_mutants.register(sub)
    cli_trace.register(sub)
    return parser


def _mark_subparsers(parser: argparse.ArgumentParser) -> None:
    """Let every subcommand's parser be found from the parsed arguments (`_parser`), so that an
    unknown option is reported with the usage of the subcommand it was given to."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                sub.set_defaults(_parser=sub)
                _mark_subparsers(sub)


def _hypothesis_home() -> None:
    """Hypothesis keeps a cache (constants collected from source) in `.hypothesis/` of the working
    directory; a command-line run must not leave it in the caller's directory. It goes to the
    user's cache directory instead, unless the caller chose one (HYPOTHESIS_STORAGE_DIRECTORY,
    which Hypothesis reads when it first stores something: nothing is imported here)."""
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    os.environ.setdefault("HYPOTHESIS_STORAGE_DIRECTORY", str(cache / "callgate" / "hypothesis"))


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    _mark_subparsers(parser)
    # Shell completion (README, "Shell completion"): when the shell asks for completions
    # (_ARGCOMPLETE set), argcomplete prints them and exits here; otherwise it does nothing.
    argcomplete.autocomplete(parser)
    _hypothesis_home()
    try:
        args, extra = parser.parse_known_args(argv)
        if extra:
            getattr(args, "_parser", parser).error(f"unrecognized arguments: {' '.join(extra)}")
    except SystemExit as exc:  # argparse exits 2 on usage errors, 0 on --help
        return int(exc.code or 0)
    args.argv = list(argv if argv is not None else sys.argv[1:])
    try:
        result: int = args.func(args)
    except KeyboardInterrupt:
        print("callgate: interrupted", file=sys.stderr)
        return 130
    except SystemExit as exc:  # no command exits: something it called did (an adapter's sys.exit)
        print(f"callgate {args.command}: stopped by SystemExit({exc.code!r}) raised inside "
              f"callgate (an in-process adapter calling sys.exit?): no verdict", file=sys.stderr)
        return EXIT_HARNESS
    except Exception:  # a bug in callgate: say so, with the traceback, and exit 3 (not 1)
        print(f"callgate {args.command}: internal error (please report this as a callgate bug):\n"
              f"{traceback.format_exc()}", file=sys.stderr)
        return EXIT_HARNESS
    return result


if __name__ == "__main__":
    sys.exit(main())

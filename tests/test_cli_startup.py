"""The command line's start-up imports what the subcommand needs (issue 20): building the
parser does not import the mutant machinery, which only `callgate mutants` uses."""

from __future__ import annotations

import subprocess
import sys

from callgate.conformance import mutants
from callgate.conformance.cli import mutants as cli_mutants
from tests.conftest import ROOT


def test_the_command_lines_kinds_are_the_mutant_runs() -> None:
    assert cli_mutants.KINDS == mutants.KINDS


def test_building_the_parser_does_not_import_the_mutant_machinery() -> None:
    code = ("import sys\n"
            "from callgate.conformance.cli.main import build_parser\n"
            "build_parser()\n"
            "print(sorted(m for m in sys.modules if m.startswith('callgate.conformance.mutants')))")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                          check=True, timeout=120)
    assert done.stdout.strip() == "[]", done.stdout

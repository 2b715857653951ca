"""The example Python adapter (examples/python-adapter): stdlib only, and it conforms."""

from __future__ import annotations

import ast
import json
import shlex
import sys
from pathlib import Path

import pytest

from callgate.conformance.cli.main import main
from tests.conftest import ROOT

EXAMPLE = ROOT / "examples" / "python-adapter" / "event_adapter.py"


def test_the_example_imports_nothing_from_callgate() -> None:
    tree = ast.parse(EXAMPLE.read_text(encoding="utf-8"))
    imported = {alias.name.split(".")[0] for node in ast.walk(tree)
                if isinstance(node, ast.Import) for alias in node.names}
    imported |= {str(node.module).split(".")[0] for node in ast.walk(tree)
                 if isinstance(node, ast.ImportFrom)}
    assert imported <= set(sys.stdlib_module_names) | {"__future__"}, imported


@pytest.mark.slow
def test_the_example_passes_the_gate_with_its_races(tmp_path: Path) -> None:
    command = shlex.join([sys.executable, str(EXAMPLE)])
    assert main(["run", "--adapter-cmd", command, "--budget", "quick", "--out",
                 str(tmp_path)]) == 0
    report = json.loads((tmp_path / "report.json").read_text(encoding="utf-8"))
    verdicts = {c["id"]: c["verdict"] for c in report["cases"]}
    assert report["summary"]["passed"] > 0 and report["summary"]["failed"] == 0
    assert verdicts["race-signal-wait-event"] == "pass"  # it declares concurrent: races ran
    assert report["coverage"]["by_machine"]["event"]["covered"] >= 20

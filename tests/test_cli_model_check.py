"""`callgate model check` and `callgate model graph`: output formats and exit codes."""

from __future__ import annotations

import dataclasses
import json
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from callgate.conformance.cli.main import main
from callgate.model import verify
from callgate.model.proofs import CheckResult, Conflict, Result, prove_invariants
from tests.test_invariants import MUTANTS

RESULTS = {"proved", "counterexample", "unknown", "conflict"}


@pytest.fixture(scope="module")
def report() -> verify.Report:
    """One full run of the default configuration, shared by the tests of this module."""
    return verify.run()


def _patched(monkeypatch: pytest.MonkeyPatch, result: verify.Report) -> None:
    monkeypatch.setattr(verify, "run", lambda **kwargs: result)


def test_the_default_configuration_passes(report: verify.Report) -> None:
    assert report.ok, report.failed
    proved = [c for c in report.checks if c.kind == "invariant" and c.result is Result.PROVED]
    assert len(proved) >= 12
    kinds = {c.kind for c in report.checks}
    assert {"table", "invariant", "bmc", "consistency", "agreement", "explorer"} <= kinds
    assert report.explorer.edges_covered == report.explorer.edges


def test_check_json_has_the_documented_shape(report: verify.Report, monkeypatch: pytest.MonkeyPatch,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    _patched(monkeypatch, report)
    assert main(["model", "check", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert isinstance(data["checks"], list) and data["checks"]
    for check in data["checks"]:
        assert {"name", "kind", "result", "seconds"} <= set(check)
        assert check["result"] in RESULTS
        assert isinstance(check["seconds"], float | int)
    invariants = [c for c in data["checks"] if c["kind"] == "invariant" and c["result"] == "proved"]
    assert len(invariants) >= 12
    explorer = data["explorer"]
    for key in ("states", "edges", "seconds", "tour_length", "edges_covered"):
        assert key in explorer
    assert explorer["edges_covered"] == explorer["edges"]
    assert explorer["tour_length"] >= explorer["edges"]
    assert set(explorer["machines"]) == {"com_call", "event", "container", "rpc_call"}
    conflicts = [c for c in data["checks"] if c["result"] == "conflict"]
    assert conflicts and all(c["expected"] for c in conflicts)
    assert data["ok"] is True


def test_check_prints_a_table_of_checks(report: verify.Report, monkeypatch: pytest.MonkeyPatch,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    _patched(monkeypatch, report)
    assert main(["model", "check"]) == 0
    text = capsys.readouterr().out
    for needle in ("com.begin_only_when_idle", "totality[rpc_call]", "bmc[clients",
                   "consistency.D-01", "conflict (expected)", "tour[two_call_objects]", ": OK"):
        assert needle in text


def _failing(report: verify.Report, extra: CheckResult) -> verify.Report:
    checks = (*report.checks, extra)
    return dataclasses.replace(report, checks=checks,
                               failed=tuple(c.name for c in checks if c.failed))


def test_a_counterexample_fails_the_check_and_prints_its_trace(
        report: verify.Report, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    name = "com.begin_only_when_idle"
    results = prove_invariants(MUTANTS[name](), traces_for={name})
    broken = next(r for r in results if r.name == name)
    _patched(monkeypatch, _failing(report, broken))
    assert main(["model", "check"]) == 1
    text = capsys.readouterr().out
    assert "FAILED" in text and name in text and "Begin_()" in text
    assert main(["model", "check", "--json"]) == 1
    data = json.loads(capsys.readouterr().out)
    assert data["ok"] is False and name in data["failed"]


def test_only_an_unexpected_conflict_fails_the_check(report: verify.Report,
                                                    monkeypatch: pytest.MonkeyPatch,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    new = Conflict(("A@S-X", "B@S-Y"), ("COM-FIN-02",), ("S-X", "S-Y"), "", False)
    unexpected = CheckResult("consistency.unexpected#1", "consistency", Result.CONFLICT, 0.0,
                             "NEW", conflict=new)
    _patched(monkeypatch, _failing(report, unexpected))
    assert main(["model", "check", "--json"]) == 1
    capsys.readouterr()
    known = dataclasses.replace(unexpected, name="consistency.D-99#1",
                                conflict=dataclasses.replace(new, expected=True))
    _patched(monkeypatch, _failing(report, known))
    assert main(["model", "check", "--json"]) == 0
    unknown = CheckResult("bmc[x]", "bmc", Result.UNKNOWN, 0.0, "timeout")
    _patched(monkeypatch, _failing(report, unknown))
    assert main(["model", "check", "--json"]) == 1


@pytest.mark.parametrize("family", ["com", "sync", "rpc"])
def test_graph_writes_dot_and_mermaid(family: str, tmp_path: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["model", "graph", family, "--format", "dot"]) == 0
    assert capsys.readouterr().out.startswith("digraph")
    target = tmp_path / "g.mmd"
    assert main(["model", "graph", family, "--format", "mermaid", "--output", str(target)]) == 0
    assert target.read_text(encoding="utf-8").startswith("flowchart LR")


def test_graph_com_svg_is_a_valid_svg(tmp_path: Path) -> None:
    if shutil.which("dot") is None:
        pytest.skip("Graphviz `dot` is not installed (tools/install-system-packages.sh graphviz:dot)")
    target = tmp_path / "com.svg"
    assert main(["model", "graph", "com", "--format", "svg", "--output", str(target)]) == 0
    root = ET.fromstring(target.read_text(encoding="utf-8"))
    assert root.tag.endswith("svg")
    assert "Begin_" in target.read_text(encoding="utf-8")


def test_graph_svg_without_graphviz_is_a_usage_error_with_the_fix(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(shutil, "which", lambda name: None)
    assert main(["model", "graph", "com", "--format", "svg"]) == 2
    assert "tools/install-system-packages.sh graphviz:dot" in capsys.readouterr().err


def test_bad_arguments_are_usage_errors(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["model", "graph", "dcom"]) == 2
    assert main(["model", "graph", "com", "--format", "png"]) == 2
    assert main(["model", "check", "--depth", "deep"]) == 2
    assert "invalid" in capsys.readouterr().err

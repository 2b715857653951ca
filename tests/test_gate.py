"""The gate end to end: deliberately wrong adapters fail with short counterexamples, the CLI's
exit codes, and expectations turning a known failure into a pass of the gate."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from callgate.conformance.cases import sequences
from callgate.conformance.cases.values import replayed
from callgate.conformance.cases.walk import WalkBudget, walk_machine
from callgate.conformance.cli.main import main
from callgate.conformance.gate import shrink
from callgate.conformance.implementations.reference.adapter import ReferenceAdapter
from callgate.conformance.judge.runner import CaseRunner
from callgate.conformance.results import Verdict
from callgate.model import explorer
from callgate.model.families import MACHINES
from callgate.model.transitions import Tracker
from tests.conftest import ROOT

# A wrong adapter per issue: the reference with one seeded fault, and the machine it breaks.
WRONG = [
    ("begin_accepts_second", "com_call", "COM-BEGIN-02"),
    ("wait_ok_before_signal", "com_call", "COM-WAIT-03"),
    ("notification_twice", "rpc_call", "RPC-CLI-NOTIFY-0"),
    ("server_handle_kept", "rpc_call", "RPC-SRV-02"),
]


@pytest.mark.parametrize("fault,machine,rule", WRONG)
def test_a_wrong_adapter_fails_with_a_counterexample_no_longer_than_the_shortest_path(
        fault: str, machine: str, rule: str) -> None:
    adapter = ReferenceAdapter(faults={fault})
    caps = adapter.capabilities()
    plan = sequences.plan(caps)
    machine_plan = plan.machines[machine]
    runner = CaseRunner(adapter, caps, step_timeout=5.0)
    try:
        failed = None
        for case, result in walk_machine(runner, machine_plan, set(machine_plan.transitions),
                                         WalkBudget(case_steps=400, cases=60)):
            if result.verdict is Verdict.FAIL:
                failed = shrink(runner, plan, case, result)
                break
        assert failed is not None, f"{fault} was not caught"
        assert any(r.startswith(rule) for r in failed.failed_rules), failed.failed_rules
        # The state where the wrong transition starts, from the trace's own observations.
        tracker = Tracker(MACHINES[machine], caps.pins,
                          [MACHINES[machine].make(**failed.replay["slots"][0]["config"])])
        binding = replayed(failed.replay.get("values"))  # concrete echoed values mapped back
        for step in failed.trace[:-1]:
            args = tuple((p.name, step.args[p.name])
                         for p in MACHINES[machine].operation(step.op).params)
            code, outputs = binding.observed(machine, step.op, step.code or 0, step.outputs)
            assert tracker.observe(step.op, args, code, outputs).ok
        (state,) = tracker.states
        shortest = explorer.shortest_path(machine_plan.graph, machine_plan.initial, state)
        assert len(failed.trace) <= len(shortest) + 1
    finally:
        runner.close()
        adapter.shutdown()


def test_an_unknown_adapter_is_a_usage_error_that_says_what_to_pass(
        capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "--adapter", "no.such:thing", "--out", "/nonexistent/x"]) == 2
    err = capsys.readouterr().err
    assert "module:attribute" in err and "reference" in err and "--adapter-cmd" in err


def test_run_needs_exactly_one_adapter(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "--out", "/tmp/x"]) == 2
    assert "exactly one of" in capsys.readouterr().err


def _callgate(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "callgate.conformance.cli.main", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_expectations_turn_a_known_failure_into_exit_0(tmp_path: Path) -> None:
    # Without the parallel cases: a generated parallel case would show the same deviation again.
    common = ["run", "--adapter", "tests.fakes:std_event_keeps_signal", "--budget", "standard",
              "--seed", "2", "--no-parallel"]
    without = _callgate(*common, "--out", str(tmp_path / "a"))
    assert without.returncode == 1, without.stdout + without.stderr
    known = _callgate(*common, "--out", str(tmp_path / "b"), "--expectations",
                      "tests/data/expectations/fake-events.toml")
    assert known.returncode == 0, known.stdout + known.stderr
    report = json.loads((tmp_path / "b" / "report.json").read_text())
    # Several cases may show the deviation (the walk's state checks and the stateful cases).
    assert report["summary"]["expected_fail"] >= 1 and report["summary"]["failed"] == 0
    for name in ("report.json", "junit.xml", "report.md", "report.html", "results.jsonl"):
        assert (tmp_path / "b" / name).is_file()

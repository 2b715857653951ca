"""Results streams for the reporting tests: real cases run through the runner, written as a run would.

`sample_results()` runs a few cases of the `event` machine through `CaseRunner` against the fake
adapters of tests/fakes.py (a pass, a failure with its trace, an adapter crash, a missing
capability) and adds a hand-made COM failure, so every verdict and two families appear.
`write_stream()` writes them as results.jsonl with run_start and run_end, or cut short like a
killed run. `HOSTILE` is markup an adapter might send; the stream carries it in several places.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from dataclasses import replace
from functools import cache
from pathlib import Path
from typing import Any

from callgate.conformance.cli import report as cli_report
from callgate.conformance.judge.runner import Case, CaseRunner, transition_key
from callgate.conformance.protocol.adapter import SlotSpec
from callgate.conformance.results import CaseResult, StepRecord, Summary, Verdict
from callgate.model.families import MACHINES
from callgate.model.transitions import Action, reachable, successors
from tests.fakes import PINS, EventAdapter

HOSTILE = '<script>alert("x")</script><img src="http://example.invalid/x.png"> | `tick` **bold** ]]>\x01'
E0 = (SlotSpec("e0", "event", {}),)
COM_STATE = "factory=True cancellable=True phase={} cancel=False out={} held={} orphan=False"


def _event_case(case_id: str, *steps: tuple[str, dict[str, str]]) -> Case:
    actions = tuple(Action("e0", op, tuple(args.items())) for op, args in steps)
    return Case(case_id, "directed", f"event case {case_id}", E0, actions,
                rules=("COM-SYNC-01", "COM-SYNC-03"))


Steps = tuple[tuple[str, dict[str, str]], ...]
STD_EVENT_TWICE: Steps = (("CoCreateInstance", {"clsid": "StdEvent"}), ("Signal", {}),
                   ("Wait", {"timeout": "zero"}), ("Wait", {"timeout": "zero"}))
MANUAL: Steps = (("CoCreateInstance", {"clsid": "ManualResetEvent"}), ("Signal", {}),
          ("Wait", {"timeout": "zero"}), ("Reset", {}), ("Wait", {"timeout": "zero"}))


def _run(fault: str, case: Case) -> CaseResult:
    adapter = EventAdapter(fault)
    runner = CaseRunner(adapter, adapter.capabilities(), step_timeout=2.0)
    try:
        return runner.run(case)
    finally:
        runner.close()


def com_failure() -> CaseResult:
    """A hand-made COM failure: Finish_ on a signalled call returned E_FAIL."""
    ok = "S_OK (0x00000000)"
    trace = [
        StepRecord("s0", "CreateCall", {"riid": "async", "aggregate": False}, 0, ok, {},
                   ["S_OK [created]"], True, ["COM-CF-02"], COM_STATE.format("NONE", 0, False)),
        StepRecord("s0", "Begin_", {}, 0, ok, {}, ["S_OK [accepted]"], True, ["COM-BEGIN-01"],
                   COM_STATE.format("IDLE", 0, False)),
        StepRecord("s0", "server_signal", {"out": 1, "then_impersonate": False}, 0, ok, {},
                   ["S_OK [signalled]"], True, ["COM-SRV-05"], COM_STATE.format("PENDING", 0, True)),
        StepRecord("s0", "Finish_", {}, 0x80004005, "E_FAIL (0x80004005)", {"out": 0},
                   ["S_OK (0x00000000) with out=1 [finished]"], False, ["COM-FIN-01", "COM-FIN-04"],
                   COM_STATE.format("SIGNALED", 1, False)),
    ]
    return CaseResult(
        id="com_call-tour-007", kind="directed", description="transition tour of com_call, path 7",
        rules=["COM-CF-02", "COM-BEGIN-01", "COM-SRV-05", "COM-FIN-01", "COM-FIN-04"],
        verdict=Verdict.FAIL, steps=4, seconds=0.02,
        message="s0.Finish_(): observed E_FAIL (0x80004005); allowed: S_OK (0x00000000) with out=1",
        trace=trace, slots={"s0": "com_call"}, failed_rules=["COM-FIN-01", "COM-FIN-04"],
        original_length=9,
        replay={"slots": [{"name": "s0", "machine": "com_call", "config": {}}],
                "steps": [{"slot": "s0", "op": s.op, "args": s.args} for s in trace]})


@cache
def _sample() -> tuple[CaseResult, ...]:
    passed = _run("", _event_case("event-tour-000", *STD_EVENT_TWICE))
    manual = _run("", _event_case("event-tour-001", *MANUAL))
    failed = _run("std_event_keeps_signal", _event_case("event-tour-002", *STD_EVENT_TWICE))
    crashed = _run("crash_on_wait", _event_case("event-tour-003", *STD_EVENT_TWICE))
    crashed = replace(crashed, message=crashed.message + " " + HOSTILE,
                      evidence=crashed.evidence + "\n" + HOSTILE)
    missing = _run("", Case("container-tour-000", "directed", "container",
                            (SlotSpec("k0", "container", {}),),
                            (Action("k0", "CoCreateInstance", ()),), rules=("COM-CONT-01",)))
    for result, verdict in ((passed, Verdict.PASS), (manual, Verdict.PASS), (failed, Verdict.FAIL),
                            (crashed, Verdict.ERROR), (missing, Verdict.NOT_APPLICABLE)):
        assert result.verdict is verdict, (result.id, result.verdict, result.message)
    return passed, manual, failed, crashed, missing, com_failure()


def sample_results() -> list[CaseResult]:
    """pass, pass, fail (event), error (event, hostile text), not_applicable, fail (com_call)."""
    return list(_sample())


@cache
def universe() -> tuple[dict[str, int], tuple[str, ...]]:
    """transitions_total and transitions of run_start, for the event and com_call machines."""
    totals: dict[str, int] = {}
    keys: set[str] = set()
    for name in ("event", "com_call"):
        machine = MACHINES[name]
        mine = {transition_key(name, state, Action("s0", op, args))
                for state in reachable(machine, PINS) for op, args, _ in successors(machine, state, PINS)}
        totals[name] = len(mine)
        keys |= mine
    return totals, tuple(sorted(keys))


def run_start(adapter_name: str = "tests.fakes:EventAdapter", implementation: str = "fake-events",
              expectations: dict[str, Any] | None = None) -> dict[str, Any]:
    totals, keys = universe()
    event: dict[str, Any] = {
        "event": "run_start", "schema": 1, "callgate_version": "0.1.0",
        "started": "2025-01-02T03:04:05+00:00",
        "command": f"callgate run --adapter {adapter_name} --out out", "seed": 7, "budget": "quick",
        "adapter": {"name": adapter_name, "implementation": implementation, "version": "1",
                    "capabilities": sorted(EventAdapter().capabilities().features),
                    "pins": dict(PINS), "notes": "notes with " + HOSTILE},
        "environment": {"python": "3.11.2", "platform": "Linux", "machine": "x86_64",
                        "argv": ["callgate"]},
        "transitions_total": totals, "transitions": list(keys),
    }
    if expectations is not None:
        event["expectations"] = expectations
    return event


def write_stream(path: Path, cases: Sequence[CaseResult] | None = None, *, complete: bool = True,
                 start: dict[str, Any] | None = None) -> Path:
    """results.jsonl as a run writes it. `complete=False` is a killed run: no run_end, and the
    last case line cut in the middle."""
    cases = sample_results() if cases is None else list(cases)
    lines = [json.dumps(start or run_start())]
    lines += [json.dumps({"event": "case", "case": c.to_json()}) for c in cases]
    summary = Summary.of(cases)
    if complete:
        lines.append(json.dumps({"event": "run_end", "finished": "2025-01-02T03:04:09+00:00",
                                 "seconds": 4.25, "summary": {"passed": summary.passed}}))
        text = "\n".join(lines) + "\n"
    else:
        text = "\n".join(lines)
        text = text[: len(text) - len(lines[-1]) // 2]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def many_results(n: int) -> list[CaseResult]:
    """`n` cases made from the sample (unique IDs): for timing and size checks."""
    base = sample_results()
    return [replace(base[i % len(base)], id=f"{base[i % len(base)].id}-{i:05d}") for i in range(n)]


def report_cli(*argv: str) -> int:
    """The reporting subcommands (`report`, `compare`, `schema`) as `callgate` registers them."""
    parser = argparse.ArgumentParser(prog="callgate")
    cli_report.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(list(argv))
    result: int = args.func(args)
    return result

"""`--record-trace` records the parallel cases' branches, overlapping as they ran, and
`check-trace` judges the recorded runs as the gate judged the case."""

from __future__ import annotations

from pathlib import Path

import pytest

from callgate.conformance.cases.parallel import race_cases, run_parallel
from callgate.conformance.implementations.reference.adapter import ReferenceAdapter
from callgate.conformance.judge.runner import CaseRunner
from callgate.conformance.results import Verdict
from callgate.conformance.trace.check import check
from callgate.conformance.trace.format import load
from callgate.conformance.trace.record import TraceRecorder

RACE = {c.id: c for c in race_cases()}["race-begin-begin"]


@pytest.mark.parametrize("faults", [(), ("begin_check_then_set_race",)])
def test_a_recorded_parallel_case_checks_as_the_gate_judged(tmp_path: Path,
                                                            faults: tuple[str, ...]) -> None:
    adapter = ReferenceAdapter(faults=list(faults))
    runner = CaseRunner(adapter, adapter.capabilities(), 5.0)
    path = tmp_path / "trace.jsonl"
    runner.recorder = TraceRecorder(path, runner.capabilities.pins)
    try:
        gate = run_parallel(runner, RACE, runs=10, stagger=0.002, seed=1)
    finally:
        runner.close()
        adapter.shutdown()
    assert gate.verdict is (Verdict.FAIL if faults else Verdict.PASS), gate.message
    trace = load([path])
    branch_calls = [c for c in trace.calls if str(c.tid).startswith("branch ")]
    assert {c.tid for c in branch_calls} == {"branch 1", "branch 2"}
    assert all(c.responded is not None and c.invoked <= c.responded for c in branch_calls)
    cases = [c for c in check(trace).cases if c.id.startswith("trace/object/")]
    assert len(cases) == gate.runs  # one session, and so one object, per run
    if gate.verdict is Verdict.PASS:
        assert {c.verdict for c in cases} == {Verdict.PASS}, [c.message for c in cases]
        # The runs' Begin_ overlapped: judged as a group, by linearizability.
        assert any(c.linearizability == "linearizable" for c in cases)
    else:
        failed = [c for c in cases if c.verdict is Verdict.FAIL]
        assert len(failed) == 1 and failed[0].linearizability == "not_linearizable"
        assert set(gate.failed_rules) <= set(failed[0].failed_rules), (
            gate.failed_rules, failed[0].failed_rules)
        assert [c.verdict for c in cases[:-1]] == [Verdict.PASS] * (len(cases) - 1)


def test_machines_without_a_call_kind_are_recorded(tmp_path: Path) -> None:
    # rpc_order has no "kind" of call line: its calls are written without one (the object line
    # names the machine), where recording once broke the case with a KeyError.
    from callgate.conformance.gate import run_cases
    from callgate.conformance.implementations.reference.adapter import make_adapter
    from callgate.conformance.judge.runner import Case
    from callgate.conformance.protocol.adapter import SlotSpec
    from callgate.model.transitions import Action

    case = Case("order", "directed", "one registration", (SlotSpec("s0", "rpc_order", {}),),
                (Action("s0", "RpcAsyncRegisterInfo", ()),))
    path = tmp_path / "run.trace"
    (result,) = run_cases(make_adapter(), [case], record_trace=path)
    assert result.verdict is Verdict.PASS, result.message
    (judged,) = [c for c in check(load([path])).cases if c.id.startswith("trace/object/")]
    assert judged.verdict is Verdict.PASS, judged.message

"""Repetition cases: each machine's cycles from its rest state, taken many times in one session."""

from __future__ import annotations

from callgate.conformance.cases import repeat, sequences
from callgate.conformance.implementations.reference.adapter import ReferenceAdapter
from callgate.conformance.judge.runner import Case, CaseRunner
from callgate.conformance.results import CaseResult, Verdict


def _run(plan: sequences.Plan, machine: str, faults: tuple[str, ...] = ()
         ) -> list[tuple[Case, CaseResult]]:
    adapter = ReferenceAdapter(faults=faults)
    runner = CaseRunner(adapter, adapter.capabilities(), 10.0)
    try:
        return list(repeat.repeat_machine(runner, plan.machines[machine]))
    finally:
        runner.close()
        adapter.shutdown()


def test_a_call_object_is_taken_through_a_whole_call_again_and_again(plan: sequences.Plan
                                                                     ) -> None:
    rest, cycles = repeat.cycles(plan.machines["com_call"])
    assert rest is not None and plan.machines["com_call"].machine.view(rest)["phase"] == "IDLE"
    assert [[a.op for a in c.actions] for c in cycles] == [["Begin_", "server_signal", "Finish_"]]
    # RPC handles are reused without re-initialising (the reference pins reuse_allowed), with
    # the wait for the notification the model says has come.
    _, rpc = repeat.cycles(plan.machines["rpc_call"])
    assert rpc and all("wait_notification" in [a.op for a in c.actions] for c in rpc)


def test_reference_passes_every_repetition(plan: sequences.Plan) -> None:
    results = [r for _, r in _run(plan, "event")]
    assert [r.verdict for r in results] == [Verdict.PASS]
    # One session, the cycle taken REPEATS times and the state looked at after each lap.
    assert results[0].steps == 1 + repeat.REPEATS * 3


def test_a_fault_that_shows_after_several_calls_is_caught(plan: sequences.Plan) -> None:
    # reset_pool_exhausted: the sixth Reset does nothing; every single Reset still answers
    # S_OK, so only the look after a lap (Wait with a zero timeout) shows it.
    results = [r for _, r in _run(plan, "event", ("reset_pool_exhausted",))]
    failed = [r for r in results if r.verdict is Verdict.FAIL]
    assert failed and failed[0].id == "event-repeat-000"
    assert "Wait(timeout=zero)" in failed[0].message
    # The summary claims nothing for a cycle that failed: with none passed, not applicable.
    assert results[-1].id == "event-repeat"
    assert results[-1].verdict is Verdict.NOT_APPLICABLE

"""The coverage walk against a failing implementation: each failure is reported once, and the
walk goes on to cover what can still be reached another way."""

from __future__ import annotations

from callgate.conformance.cases import sequences
from callgate.conformance.cases.walk import walk_machine
from callgate.conformance.judge.runner import CaseRunner
from callgate.conformance.results import Verdict
from tests.fakes import EventAdapter


def _walk(fault: str) -> tuple[list[tuple[str, str]], set[str], int]:
    adapter = EventAdapter(fault)
    caps = adapter.capabilities()
    plan = sequences.plan(caps).machines["event"]
    pending = set(plan.transitions)
    runner = CaseRunner(adapter, caps, step_timeout=2.0)
    failures: list[tuple[str, str]] = []
    cases = 0
    try:
        for _, result in walk_machine(runner, plan, pending):
            cases += 1
            if result.verdict is Verdict.FAIL:
                last = result.trace[-1]
                failures.append((last.op, repr(sorted(last.args.items()))))
    finally:
        runner.close()
    return failures, pending, cases


def test_a_class_that_is_not_registered_fails_once_and_the_other_class_is_still_covered() -> None:
    failures, pending, cases = _walk("no_std_event")
    assert failures == [("CoCreateInstance", repr([("clsid", "StdEvent")]))]
    # Every ManualResetEvent transition is still covered; only StdEvent's stay out of reach.
    assert not [key for key in pending if "ManualResetEvent" in key], sorted(pending)
    assert all("StdEvent" in key for key in pending)
    assert cases < 10


def test_a_wrong_transition_deep_in_the_graph_is_not_failed_again_and_again() -> None:
    failures, pending, _ = _walk("std_event_keeps_signal")
    assert failures, "the fault must be caught"
    assert len(failures) == len(set(failures)), failures
    assert not [key for key in pending if "ManualResetEvent" in key], sorted(pending)

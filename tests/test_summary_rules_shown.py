"""A summary case that passes (the merged-form continuations, the repetition cases, the
identifying sequences) cites only
rules its passing sessions showed: a request the adapter declared absent is never sent, so its
rules must come out `not_applicable`, never `pass` through a summary (docs/verdict.md)."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable

from callgate.conformance.cases import forms, identify, repeat, sequences
from callgate.conformance.cases.walk import model_legs
from callgate.conformance.implementations.reference.adapter import ReferenceAdapter
from callgate.conformance.judge.runner import CaseRunner
from callgate.conformance.report.reporting import rules_matrix
from callgate.conformance.results import CaseResult, Verdict


def _run(only: str, absent: str, drive: str) -> list[CaseResult]:
    adapter = ReferenceAdapter()
    caps = adapter.capabilities()
    plan = sequences.plan(caps, only=(only,))
    declared = dataclasses.replace(caps, absent={**caps.absent, absent: "test: declared absent"})
    runner = CaseRunner(adapter, declared, 10.0)
    try:
        machine = plan.machines[only]
        made: Iterable[tuple[object, CaseResult]] = (
            forms.forms_machine(runner, machine, 80) if drive == "forms"
            else identify.identify_machine(runner, machine, model_legs(machine),
                                           identify.IdentifyBudget(300, class_steps=300))
            if drive == "identify" else repeat.repeat_machine(runner, machine))
        return [result for _, result in made]
    finally:
        runner.close()
        adapter.shutdown()


def _shown(results: list[CaseResult]) -> set[str]:
    """The rules an accepted step of a passing session cites."""
    return {rule for r in results if r.verdict is Verdict.PASS
            for t in r.trace if t.ok for rule in t.rules}


def _check(results: list[CaseResult], declined_op: str) -> None:
    declined = [r for r in results if r.verdict is Verdict.NOT_APPLICABLE
                and "declared absent" in r.message]
    assert declined, "the test needs a session that reached the declared request"
    summary = results[-1]
    assert summary.verdict is Verdict.PASS
    assert set(summary.rules) <= _shown(results) | {
        rule for r in results if r.verdict is Verdict.PASS for rule in r.rules}
    only_declined = {rule for r in declined for t in r.trace
                     if not t.ok and t.op == declined_op for rule in t.rules} - _shown(results)
    assert only_declined, "the declined request's rules are shown elsewhere: no test"
    verdicts = {e["id"]: e["verdict"] for e in rules_matrix(results)}
    for rule in only_declined:
        assert verdicts.get(rule) != "pass", rule


def test_merged_form_summary_does_not_hold_a_rule_only_a_declared_absence_reached() -> None:
    _check(_run("rpc_call", "rpc_call.RpcAsyncGetCallStatus", "forms"), "RpcAsyncGetCallStatus")


def test_repetition_summary_does_not_hold_a_rule_only_a_declared_absence_reached() -> None:
    _check(_run("thread_cancel", "thread_cancel.CoDisableCallCancellation", "repeat"),
           "CoDisableCallCancellation")


def test_identification_summary_does_not_hold_a_rule_only_a_declared_absence_reached() -> None:
    _check(_run("event", "event.GetHandle", "identify"), "GetHandle")


def test_identification_summary_without_a_passing_session_passes_nothing() -> None:
    # With the acquiring operation declared absent no session passes (each stops at the
    # declared absence, not_applicable): the summary must not say `pass` (it did: it counted
    # every session that was not skipped, whatever its verdict).
    results = _run("event", "event.CoCreateInstance", "identify")
    sessions, summary = results[:-1], results[-1]
    assert sessions and not any(r.verdict is Verdict.PASS for r in sessions)
    assert summary.verdict is Verdict.NOT_APPLICABLE
    assert not summary.rules

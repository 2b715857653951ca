"""The races across coupled objects (issue 18): sound, passed by the reference implementation,
and failed by the seeded faults in what joins two objects."""

from __future__ import annotations

import pytest

from callgate.conformance.cases.parallel import interleavings, race_cases, run_parallel
from callgate.conformance.cases.parallel.coupled import coupled_races
from callgate.conformance.implementations.reference.adapter import PINS, ReferenceAdapter
from callgate.conformance.judge.runner import CaseRunner
from callgate.conformance.results import Verdict
from callgate.model.rules import catalogue

RACES = {c.id: c for c in coupled_races()}


def _verdict(case_id: str, faults: tuple[str, ...]) -> Verdict:
    adapter = ReferenceAdapter(jitter=0.001, seed=3, faults=faults)
    runner = CaseRunner(adapter, adapter.capabilities(), 5.0)
    try:
        return run_parallel(runner, RACES[case_id], 4, 0.001, 5).verdict
    finally:
        runner.close()
        adapter.shutdown()


def test_the_coupled_races_are_named_races_sound_and_cite_known_rules() -> None:
    named = {c.id for c in race_cases()}
    known = catalogue()
    for case in RACES.values():
        assert case.id in named
        plan = interleavings(case.slots, case.prefix, case.branches, PINS, case.suffix)
        assert plan.sound, (case.id, plan.problem)
        assert case.rules and set(case.rules) <= set(known)


@pytest.mark.parametrize("case_id", sorted(RACES))
def test_the_reference_passes(case_id: str) -> None:
    assert _verdict(case_id, ()) is Verdict.PASS


@pytest.mark.parametrize(("case_id", "fault"), [
    ("race-one-server-signal-other-wait", "call_objects_share_event"),
    ("race-one-server-signal-other-wait", "server_signals_latest_call"),
    ("race-call-event-waits-signal", "call_event_never_reset"),
])
def test_a_fault_in_the_coupling_fails_the_race(case_id: str, fault: str) -> None:
    # Deterministic: a Wait(zero) outside the branches (the other call object's in the suffix,
    # the second call's in the prefix) shows the fault in every schedule.
    assert _verdict(case_id, (fault,)) is Verdict.FAIL

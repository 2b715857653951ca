"""Multi-object cases: the pair criterion, its count in the report, and a cross-object fault."""

from __future__ import annotations

import re
from typing import cast

import pytest

from callgate.conformance.cases import multi, sequences
from callgate.conformance.implementations.reference.adapter import ReferenceAdapter
from callgate.conformance.judge.runner import CaseRunner
from callgate.conformance.report.reporting import pair_coverage
from callgate.conformance.results import CaseResult, RunRecord, Verdict
from callgate.model.transitions import State

EVENTS = multi.COMPOSITIONS[2]
CALLS = multi.COMPOSITIONS[0]


@pytest.fixture(scope="module")
def plan() -> sequences.Plan:
    adapter = ReferenceAdapter()
    try:
        return sequences.plan(adapter.capabilities())
    finally:
        adapter.shutdown()


def _walk(plan: sequences.Plan, composition: multi.Composition, faults: tuple[str, ...] = ()
          ) -> tuple[list[CaseResult], set[str]]:
    adapter = ReferenceAdapter(faults=faults)
    runner = CaseRunner(adapter, adapter.capabilities(), 10.0)
    covered: set[str] = set()
    try:
        results = [r for _, r in multi.walk_pairs(runner, plan.machines[composition.machine],
                                                   composition, multi.MultiBudget(), covered)]
    finally:
        runner.close()
        adapter.shutdown()
    return results, covered


def test_event_pairs_are_every_drawn_transition_times_each_phase(plan: sequences.Plan) -> None:
    machine = plan.machines["event"]
    universe = multi.pair_universe(machine, EVENTS)
    drawn = {multi.abstract(machine.machine, cast(State, s), a.op, a.args)
             for s, a in machine.graph.transitions}  # every event state is reachable
    assert len(universe) == 2 * len(drawn)
    assert {k.rpartition("|while ")[2] for k in universe} == {"signaled=False", "signaled=True"}


def test_reference_passes_and_covers_every_event_pair(plan: sequences.Plan) -> None:
    results, covered = _walk(plan, EVENTS)
    assert results and all(r.verdict is Verdict.PASS for r in results)
    assert covered == set(multi.pair_universe(plan.machines["event"], EVENTS))
    for result in results:  # every case cites the rules of its steps
        assert result.rules and all(re.fullmatch(r"[A-Z]+(-[A-Z]+)*-\d+", r)
                                    for r in result.rules)
        assert set(result.slots) == {"e0", "e1"}


@pytest.mark.parametrize("fault", ["cancel_most_recent_call", "release_abandons_server_calls"])
def test_a_cross_object_fault_is_caught(plan: sequences.Plan, fault: str) -> None:
    results, _ = _walk(plan, CALLS, (fault,))
    assert results[-1].verdict in (Verdict.FAIL, Verdict.ERROR)
    assert all(r.verdict is Verdict.PASS for r in results[:-1])


def test_event_fault_is_caught_by_the_pair_walk(plan: sequences.Plan) -> None:
    results, _ = _walk(plan, EVENTS, ("event_kernel_handle_shared",))
    assert results[-1].verdict is Verdict.FAIL
    assert "Wait" in results[-1].message or "Signal" in results[-1].message


def _record(universe: dict[str, list[str]], pairs: list[list[str]]) -> RunRecord:
    cases = [CaseResult(f"c{i}", "multi", "", [], Verdict.PASS, 1, 0.0, pairs=p)
             for i, p in enumerate(pairs)]
    return RunRecord({"pairs": universe}, cases, None)


def test_pair_coverage_counts_covered_and_names_what_is_missing() -> None:
    universe = {"x": ["x|t1|while p", "x|t2|while p", "x|t1|while q"]}
    report = pair_coverage(_record(universe, [["x|t1|while p"], ["x|t1|while p", "x|zz|while p"]]))
    assert report == {"x": {"total": 3, "covered": 1, "missing_count": 2,
                            "missing": ["t1|while q", "t2|while p"]}}
    assert pair_coverage(_record({}, [["x|t1|while p"]])) == {}

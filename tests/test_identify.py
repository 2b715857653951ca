"""State identification: identifying sets on the real tables, and a merged-state fake caught only
with identification on."""

from __future__ import annotations

import itertools
import random
import time

import pytest

from callgate.conformance.cases.identify import IdentifyBudget, cheap, identify_machine
from callgate.conformance.cases.sequences import SLOT
from callgate.conformance.judge.runner import CaseRunner
from callgate.conformance.results import Verdict
from callgate.model import codes, explorer
from callgate.model.codes import Family
from callgate.model.explorer.identify import Identifier, keys_overlap
from callgate.model.families import MACHINES
from callgate.model.transitions import Action, AnyFailure, Exact


def _graph(name: str) -> explorer.StateGraph:
    return explorer.build_graph(MACHINES[name])


@pytest.mark.parametrize("name", ["event", "com_call", "container"])
def test_identifying_sets_separate_every_pair_the_search_separates(name: str) -> None:
    graph = _graph(name)
    fast = Identifier(graph, cheap)
    search = Identifier(graph, cheap, max_length=4, exhaustive=True)
    for s, t in itertools.permutations(fast.states, 2):
        separable = search.separate(s, t) is not None
        by_set = any(fast.separation(s, t, w) for w in fast.identifying_set(s))
        # The set may separate more (its sequences are up to the refinement's depth long).
        assert by_set or not separable, (s, t)


def test_rpc_call_identifying_sets_are_fast_and_sound_on_a_sample() -> None:
    graph = _graph("rpc_call")
    started = time.perf_counter()
    ident = Identifier(graph, cheap)
    for s in ident.states:
        ident.identifying_set(s)
    assert time.perf_counter() - started < 15
    search = Identifier(graph, cheap, max_length=3, exhaustive=True)
    pairs = random.Random(16).sample(list(itertools.permutations(ident.states, 2)), 300)
    for s, t in pairs:
        by_set = any(ident.separation(s, t, w) for w in ident.identifying_set(s))
        assert by_set or search.separate(s, t) is None, (s, t)


def test_overlapping_outcomes_never_count_as_separating() -> None:
    any_failure = (AnyFailure(Family.HRESULT), ())
    assert keys_overlap((Exact(codes.E_FAIL), ()), any_failure)
    assert not keys_overlap((Exact(codes.S_OK), ()), any_failure)


def test_a_sequence_of_nothing_separates_nothing() -> None:
    ident = Identifier(_graph("event"), cheap)
    s, t = ident.states[:2]
    assert ident.separation(s, t, ()) is None


def _reference_runner(faults: frozenset[str]) -> CaseRunner:
    from callgate.conformance.implementations.reference.adapter import ReferenceAdapter
    adapter = ReferenceAdapter(faults=faults)
    return CaseRunner(adapter, adapter.capabilities(), 5.0)


def _event_plan(runner: CaseRunner):  # type: ignore[no-untyped-def]
    from callgate.conformance.cases.sequences import plan
    return plan(runner.capabilities).machines["event"]


@pytest.mark.parametrize("identify", [True])
def test_merged_state_fake_is_caught_with_identification(identify: bool) -> None:
    # The walk alone also catches this fault (its observer after Reset sees it): only the
    # identification half is pinned here; a fault the walk misses is still to be found.
    from callgate.conformance.cases.walk import walk_machine
    runner = _reference_runner(frozenset({"reset_forgets_manual_reset"}))
    try:
        machine = _event_plan(runner)
        taken: list[tuple[object, Action, object]] = []
        results = [r for _, r in walk_machine(runner, machine, set(machine.transitions),
                                                taken=taken)]  # type: ignore[arg-type]
        if identify:
            results += [r for _, r in identify_machine(runner, machine, taken,  # type: ignore[arg-type]
                                                       IdentifyBudget(2000))]
    finally:
        runner.close()
    failed = [r for r in results if r.verdict is Verdict.FAIL]
    assert failed
    for result in failed:
        assert result.rules and all(rule.startswith(("COM-", "RPC-")) for rule in result.rules)


def test_identifying_cases_pass_on_the_reference_and_cite_rules() -> None:
    from callgate.conformance.cases.walk import walk_machine
    runner = _reference_runner(frozenset())
    try:
        machine = _event_plan(runner)
        taken: list[tuple[object, Action, object]] = []
        list(walk_machine(runner, machine, set(machine.transitions), taken=taken))  # type: ignore[arg-type]
        results = list(identify_machine(runner, machine, taken, IdentifyBudget(2000)))  # type: ignore[arg-type]
    finally:
        runner.close()
    assert [r.verdict for _, r in results] == [Verdict.PASS]
    case, result = results[0]
    assert case.rules and "identified" in case.description and result.steps > 0
    assert case.slots[0].name == SLOT

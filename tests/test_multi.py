"""Multi-object cases: the pair criterion, its count in the report, and a cross-object fault."""

from __future__ import annotations

import re
from typing import cast

import pytest

from callgate.conformance.cases import multi, sequences
from callgate.conformance.cases.slots import default_slot
from callgate.conformance.implementations.reference.adapter import ReferenceAdapter
from callgate.conformance.judge.runner import Case, CaseRunner
from callgate.conformance.report.reporting import pair_coverage
from callgate.conformance.results import CaseResult, RunRecord, Verdict
from callgate.model.transitions import Action, State

BY_NAME = {c.name: c for c in multi.COMPOSITIONS}
EVENTS = BY_NAME["event-pair"]
CALLS = BY_NAME["com_call-pair"]
CALL_TRIPLE = BY_NAME["com_call-triple"]
RPC_CALLS = BY_NAME["rpc_call-pair"]


def _cases(plan: sequences.Plan, composition: multi.Composition, faults: tuple[str, ...] = ()
           ) -> tuple[list[tuple[Case, CaseResult]], set[str]]:
    adapter = ReferenceAdapter(faults=faults)
    runner = CaseRunner(adapter, adapter.capabilities(), 10.0)
    covered: set[str] = set()
    try:
        cases = list(multi.walk_pairs(runner, plan.machines[composition.machine], composition,
                                      multi.MultiBudget(), covered))
    finally:
        runner.close()
        adapter.shutdown()
    return cases, covered


def _walk(plan: sequences.Plan, composition: multi.Composition, faults: tuple[str, ...] = ()
          ) -> tuple[list[CaseResult], set[str]]:
    cases, covered = _cases(plan, composition, faults)
    return [r for _, r in cases], covered


def test_event_pairs_are_every_drawn_transition_times_each_phase(plan: sequences.Plan) -> None:
    machine = plan.machines["event"]
    universe = multi.pair_universe(machine, EVENTS)
    drawn = {multi.abstract(machine.machine, cast(State, s), a.op, a.args)
             for s, a in machine.graph.transitions}  # every event state is reachable
    # The other event's phase is split by its class (PHASE_DETAIL): two classes, two phases.
    assert len(universe) == 4 * len(drawn)
    assert {k.rpartition("|while ")[2] for k in universe} == {
        f"kind={kind},signaled={signaled}" for kind in ("ManualResetEvent", "StdEvent")
        for signaled in (False, True)}


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


@pytest.mark.parametrize(("composition", "fault"), [
    # Shared between two StdEvents only: the walk must put the other event in each class.
    ("event-pair", "std_event_signal_neighbour"),
    # Per-process where per-thread is due: two client threads, one with a cancel object.
    ("thread_cancel-pair", "cancel_objects_per_process"),
])
def test_state_shared_between_two_objects_of_one_class_is_caught(
        plan: sequences.Plan, composition: str, fault: str) -> None:
    results, _ = _walk(plan, BY_NAME[composition], (fault,))
    assert results[-1].verdict is Verdict.FAIL
    assert all(r.verdict is Verdict.PASS for r in results[:-1])


def test_the_thread_pair_walks_each_count_with_and_without_a_registration(
        plan: sequences.Plan) -> None:
    universe = multi.pair_universe(plan.machines["thread_cancel"], BY_NAME["thread_cancel-pair"])
    assert {k.rpartition("|while ")[2] for k in universe} == {
        f"registered={r},count={c}" for r in (0, 1) for c in (0, 1, 2)}


def _record(universe: dict[str, list[str]], pairs: list[list[str]]) -> RunRecord:
    cases = [CaseResult(f"c{i}", "multi", "", [], Verdict.PASS, 1, 0.0, pairs=p)
             for i, p in enumerate(pairs)]
    return RunRecord({"pairs": universe}, cases, None)


def test_pair_coverage_counts_covered_and_names_what_is_missing() -> None:
    universe = {"x": ["x|t1|while p", "x|t2|while p", "x|t1|while q"]}
    report = pair_coverage(_record(universe, [["x|t1|while p"], ["x|t1|while p", "x|zz|while p"]]))
    assert report == {"x": {"total": 3, "covered": 1, "missing_count": 2,
                            "missing": ["t1|while q", "t2|while p"],
                            "not_drivable": [], "not_drivable_count": 0}}
    assert pair_coverage(_record({}, [["x|t1|while p"]])) == {}


def test_pairs_no_walk_can_take_are_reported_apart_with_the_reason() -> None:
    universe = {"x": ["x|t1|while p", "x|t2|while p", "x|t1|while q"]}
    record = _record(universe, [["x|t1|while p"]])
    record.start["pairs_not_drivable"] = {"x": {"x|t2|while p": "never sent",
                                                "x|t1|while p": "never sent"}}
    report = pair_coverage(record)["x"]
    # A covered pair stays covered whatever the analysis said; only uncovered ones move.
    assert report["covered"] == 1
    assert report["missing"] == ["t1|while q"] and report["missing_count"] == 1
    assert report["not_drivable"] == [{"pair": "t2|while p", "reason": "never sent"}]
    assert report["not_drivable_count"] == 1


def test_the_two_com_call_pairs_left_are_the_infinite_wait_no_look_establishes(
        plan: sequences.Plan) -> None:
    reasons = multi.not_drivable(plan.machines["com_call"], CALLS)
    assert sorted(k.removeprefix(CALLS.name + "|") for k in reasons) == [
        "com_call|phase=SIGNALED|Wait(timeout=infinite)|while phase=PENDING",
        "com_call|phase=SIGNALED|Wait(timeout=infinite)|while phase=SIGNALED"]
    assert all("zero timeout" in r and "changes the state" in r for r in reasons.values())
    assert multi.not_drivable(plan.machines["event"], EVENTS) == {}


def test_the_pair_universe_and_pairs_not_drivable_are_computed_once_and_handed_out_as_copies(
        plan: sequences.Plan) -> None:
    machine = plan.machines["com_call"]
    universe = multi.pair_universe(machine, CALLS)
    assert universe == multi._pair_universe(machine, CALLS)  # the cache holds the same
    universe.clear()  # a caller changing its copy changes nothing for the next
    assert multi.pair_universe(machine, CALLS) == multi._pair_universe(machine, CALLS) != []
    reasons = multi.not_drivable(machine, CALLS)
    reasons.clear()
    assert multi.not_drivable(machine, CALLS) == multi._not_drivable(machine, CALLS) != {}


def test_an_infinite_wait_is_sendable_only_where_a_look_can_establish_it(
        plan: sequences.Plan) -> None:
    wait = Action("", "Wait", (("timeout", "infinite"),))
    calls = multi._Graph.of(plan.machines["com_call"])
    signalled = [s for s in calls.moves if calls.machine.view(s)["phase"] == "SIGNALED"
                 and wait in calls.actions.get(s, ())]
    assert signalled and not any(multi._sendable(calls, s, wait) for s in signalled)
    # A signalled auto-reset event: the zero look consumes the signal, and Signal brings it
    # back, so the wait is established ([look, Signal]) and sendable.
    events = multi._Graph.of(plan.machines["event"])
    view = events.machine.view
    auto = [s for s in events.moves if view(s).get("signaled") is True
            and view(s).get("kind") not in ("NONE", "ManualResetEvent")
            and any(a.op == "Wait" and dict(a.args).get("timeout") == "infinite"
                    for a in events.actions.get(s, ()))]
    assert auto
    event_wait = next(a for a in events.actions[auto[0]] if a.op == "Wait"
                      and dict(a.args).get("timeout") == "infinite")
    assert multi._sendable(events, auto[0], event_wait)
    # Anything without an INFINITE timeout is always sendable.
    assert multi._sendable(calls, signalled[0], Action("", "Wait", (("timeout", "zero"),)))


@pytest.mark.parametrize(("composition", "fault"), [(RPC_CALLS, "rpc_reply_per_binding"),
                                                    (CALLS, "finish_out_of_last_signal")])
def test_crossed_values_catch_a_result_kept_for_several_objects(
        plan: sequences.Plan, composition: multi.Composition, fault: str) -> None:
    results, _ = _walk(plan, composition, (fault,))
    assert len(results) == 1 and results[0].id == f"{composition.name}-crossed"
    assert results[0].verdict is Verdict.FAIL
    assert results[0].steps < 20  # found by the crossing, not deep in a walk


def _crossed(plan: sequences.Plan, composition: multi.Composition
             ) -> tuple[Case, CaseResult]:
    machine = plan.machines[composition.machine]
    adapter = ReferenceAdapter()
    runner = CaseRunner(adapter, adapter.capabilities(), 10.0)
    g = multi._Graph.of(machine)
    reader = multi._Reader(g, runner.capabilities.pins)
    specs = tuple(default_slot(n) for n in composition.slots)
    try:
        return multi._crossed_case(runner, g, reader, composition, specs)
    finally:
        runner.close()
        adapter.shutdown()


@pytest.mark.parametrize("composition", [CALLS, RPC_CALLS])
def test_the_crossing_reads_back_both_values_in_both_orders(
        plan: sequences.Plan, composition: multi.Composition) -> None:
    case, result = _crossed(plan, composition)
    assert result.verdict is Verdict.PASS
    op = multi.ECHOES[composition.machine][1][0]
    reads = [t.slot for t in case.steps if t.op == op]
    first, second = composition.slots[:2]
    assert reads == [first, second, second, first]
    assert result.rules


def test_a_crossing_that_cannot_be_done_is_not_applicable(
        plan: sequences.Plan, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(multi._Reader, "of", lambda self, state: None)
    _, result = _crossed(plan, CALLS)
    assert result.verdict is Verdict.NOT_APPLICABLE
    assert "cannot be brought to hold" in result.message


def test_the_triple_walks_the_pairs_with_a_third_call_in_flight(plan: sequences.Plan) -> None:
    cases, covered = _cases(plan, CALL_TRIPLE)
    assert all(r.verdict is Verdict.PASS for _, r in cases)
    machine = plan.machines["com_call"]
    universe = set(multi.pair_universe(machine, CALL_TRIPLE))
    assert covered == universe - set(multi.not_drivable(machine, CALL_TRIPLE))
    walks = [c for c, r in cases if not c.id.endswith("crossed") and r.pairs]
    assert len(walks) >= 3
    for case in walks:
        bystander = CALL_TRIPLE.slots[int(case.id.rpartition("-")[2]) % 3]
        assert {t.slot for t in case.steps} == set(CALL_TRIPLE.slots)
        # The bystander goes first, and into flight (Begin_ accepted).
        assert [(t.slot, t.op) for t in case.steps[:2]] == [(bystander, "CreateCall"),
                                                             (bystander, "Begin_")]


def test_the_triple_catches_a_per_thread_current_call(plan: sequences.Plan) -> None:
    results, _ = _walk(plan, CALL_TRIPLE, ("cancel_most_recent_call",))
    assert results[-1].verdict in (Verdict.FAIL, Verdict.ERROR)


def test_coupled_stateful_sets_only_when_asked() -> None:
    from callgate.conformance.gate import stateful_slot_sets
    from callgate.conformance.implementations.reference.adapter import ReferenceAdapter as Ref
    adapter = Ref()
    try:
        features = adapter.capabilities().features
    finally:
        adapter.shutdown()
    plain = [[s.name for s in slots] for slots in stateful_slot_sets(features, 1)]
    coupled = [[s.name for s in slots] for slots in stateful_slot_sets(features, 1, True)]
    assert coupled[:len(plain)] == plain
    assert coupled[len(plain):] == [["c0", "c1", "c2"], ["r0", "r1", "r2"], ["e0", "e1"],
                                    ["t0", "t1"]]
    assert len(stateful_slot_sets(features, 2, True)) == 2 * len(coupled)


def test_a_cross_object_counterexample_is_measured_against_both_objects_paths(
        plan: sequences.Plan) -> None:
    from dataclasses import replace

    from callgate.conformance import mutants
    results, _ = _walk(plan, CALLS, ("finish_out_of_last_signal",))
    failed = results[-1]
    assert failed.verdict is Verdict.FAIL and len(failed.trace) == 7
    # c0 and c1 each need 3 steps to be SIGNALED (CreateCall, Begin_, server_signal); then
    # c0's Finish_ shows the fault at once.
    _, shortest, observing = mutants.faulty_transition(failed, plan, "COM-FIN-01")
    assert (shortest, observing) == (6, 0)
    assert mutants.is_minimal(len(failed.trace), shortest, observing, True)
    # Counted with the failing object's path alone (3), the other call's steps would make it
    # look too long: the bound counts every object driven, whatever the case's kind.
    _, same, _ = mutants.faulty_transition(replace(failed, kind="directed"), plan, "COM-FIN-01")
    assert same == shortest
    assert not mutants.is_minimal(len(failed.trace), 3, observing, True)


def test_observers_tell_a_state_from_the_states_one_step_of_its_own_away(
        plan: sequences.Plan) -> None:
    # A pending RPC call completed behind its back looks like its own step to READY: one
    # operation (server_test_cancel) does not tell that, so the cover adds one that does.
    machine = plan.machines["rpc_call"]
    observer = multi.observer(machine, plan.capabilities.pins)
    states = {cast(State, e.source) for e in machine.graph.edges()}
    sets = {tuple(a.op for a in observer.of(s)) for s in states
            if multi.phase_of(machine.machine, s) == "phase=PENDING"}
    assert any(len(ops) > 1 and "RpcAsyncCompleteCall" in ops for ops in sets)


def test_observer_neighbours_by_index_are_the_plain_scan(plan: sequences.Plan) -> None:
    """The observers' neighbours found through an index are the states one field away that a
    scan of every state finds; and one observer serves every walk under the same pins."""
    machine = plan.machines["com_call"]
    observer = multi.observer(machine, plan.capabilities.pins)
    assert multi.observer(machine, plan.capabilities.pins) is observer
    assert multi.observer(machine, {}) is not observer
    total = 0
    for state in observer.states:
        scan = {s for s in observer.states
                if sum(x != y for x, y in zip(s, state, strict=True)) == 1}
        assert observer._one_field_away(state) == scan
        total += len(scan)
    assert total > 0

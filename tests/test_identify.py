"""State identification: identifying sets on the real tables, and a merged-state fake caught only
with identification on."""

from __future__ import annotations

import itertools
import random
import time
from pathlib import Path

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


@pytest.mark.slow
@pytest.mark.serial  # bounds the wall time: run alone
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


def _plan(runner: CaseRunner, machine: str):  # type: ignore[no-untyped-def]
    from callgate.conformance.mutants import plan_for  # one plan per process, shared
    return plan_for(runner.capabilities).machines[machine]


def _event_plan(runner: CaseRunner):  # type: ignore[no-untyped-def]
    return _plan(runner, "event")


@pytest.mark.slow
@pytest.mark.parametrize("identify", [True])
def test_merged_state_fake_is_caught_with_identification(identify: bool) -> None:
    # The walk alone also catches this fault (its observer after Reset sees it): only the
    # identification half is pinned here; test_a_forgotten_cancel_is_caught_only_with_identification
    # has a fault the walk misses.
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


def _event_summary(budget: IdentifyBudget, faults: frozenset[str] = frozenset()) -> list[str]:
    from callgate.conformance.cases.walk import walk_machine
    runner = _reference_runner(faults)
    try:
        machine = _event_plan(runner)
        taken: list[tuple[object, Action, object]] = []
        list(walk_machine(runner, machine, set(machine.transitions), taken=taken))  # type: ignore[arg-type]
        results = list(identify_machine(runner, machine, taken, budget))  # type: ignore[arg-type]
    finally:
        runner.close()
    return [case.description for case, _ in results]


def test_the_class_phase_identifies_every_class_of_the_machine() -> None:
    summary = _event_summary(IdentifyBudget(0, class_steps=1000))[-1]
    ident = Identifier(_graph("event"), cheap)
    wanted = {ident.classes()[ident.index[s]] for s in ident.states if ident.identifying_set(s)}
    assert f"identified {len(wanted)} of {len(wanted)} classes" in summary
    assert "not identified" not in summary


def test_a_set_cut_short_by_the_budget_identifies_nothing() -> None:
    # One step of class budget: one session runs, and a class whose set has more sequences
    # than that must not be counted as identified.
    summary = _event_summary(IdentifyBudget(0, class_steps=1))[-1]
    assert "classes not identified" in summary
    assert "identified 0 of 0" not in summary


@pytest.mark.slow
def test_a_forgotten_cancel_is_caught_only_with_identification() -> None:
    # client_test_cancel_consumes: the client's TestCancel on a cancelled pending call takes the
    # request away from the server. The walk checks TestCancel by repeating it (which still
    # says cancelled); identifying the state after it runs server_test_cancel.
    from callgate.conformance.cases.walk import walk_machine
    runner = _reference_runner(frozenset({"client_test_cancel_consumes"}))
    try:
        machine = _plan(runner, "com_call")
        taken: list[tuple[object, Action, object]] = []
        walked = [r for _, r in walk_machine(runner, machine, set(machine.transitions),
                                               taken=taken)]  # type: ignore[arg-type]
        identified = [r for _, r in identify_machine(runner, machine, taken,  # type: ignore[arg-type]
                                                     IdentifyBudget(3000, class_steps=10_000))]
    finally:
        runner.close()
    assert all(r.verdict is Verdict.PASS for r in walked)
    failed = [r for r in identified if r.verdict is Verdict.FAIL]
    assert failed and "-ident-" in failed[0].id
    assert "COM-CANCEL-10" in failed[0].failed_rules


def test_the_gate_runs_identification_only_when_asked(tmp_path: Path) -> None:
    import json

    from callgate.conformance.budgets import BUDGETS
    from callgate.conformance.gate import RunOptions, run_gate
    from tests.fakes import EventAdapter

    ids = {}
    for identify in (True, False):
        out = tmp_path / str(identify)
        options = RunOptions("tests.fakes:EventAdapter", BUDGETS["quick"], 0, out, 5.0,
                             stateful=False, parallel=False, multi=False, identify=identify)
        run_gate(EventAdapter(), options)
        report = json.loads((out / "report.json").read_text())
        ids[identify] = [c["id"] for c in report["cases"]]
    assert any(i.endswith("-ident") for i in ids[True])
    assert not any("-ident" in i for i in ids[False])


def test_the_mutant_kind_identify_switches_identification(monkeypatch: pytest.MonkeyPatch) -> None:
    from callgate.conformance import mutants
    from callgate.conformance.budgets import BUDGETS

    seen: list[bool] = []

    def fake_run_gate(adapter: object, options: object, progress: object = None) -> None:
        seen.append(options.identify)  # type: ignore[attr-defined]

    monkeypatch.setattr(mutants, "run_gate", fake_run_gate)
    # A mutant runs one gate per job (a machine's walk): every job of a run follows its kinds.
    mutants.run_mutant("client_test_cancel_consumes", BUDGETS["quick"], 0, ("directed",))
    without, seen[:] = list(seen), []
    mutants.run_mutant("client_test_cancel_consumes", BUDGETS["quick"], 0,
                       ("directed", "identify"))
    assert without and not any(without)
    assert seen and all(seen)
    assert "identify" in mutants.KINDS

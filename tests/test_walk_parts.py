"""A large machine's walk cut into parts that run as units of their own: every transition in
exactly one part, whole states together, the parts together cover what the whole walk covers
(and catch what it catches), the identification unit starts from the model's legs, and the
units are handed out longest first."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from callgate.conformance import units
from callgate.conformance.budgets import BUDGETS
from callgate.conformance.cases import sequences
from callgate.conformance.cases.walk import _index, model_legs, walk_machine, walk_parts
from callgate.conformance.judge.runner import CaseRunner
from callgate.conformance.results import Verdict
from tests.fakes import EventAdapter


def _plan(fault: str = "") -> sequences.MachinePlan:
    return sequences.plan(EventAdapter(fault).capabilities()).machines["event"]


def _state_of(key: str) -> str:
    return key.split("|")[1]


@pytest.mark.parametrize("count", [1, 2, 3, 5])
def test_every_transition_is_in_exactly_one_part_with_its_whole_state(count: int) -> None:
    plan = _plan()
    parts = walk_parts(plan, count)
    assert len(parts) == count
    everything = set(plan.transitions)
    assert set().union(*parts) == everything
    assert sum(len(p) for p in parts) == len(everything)  # no transition in two parts
    for part in parts:  # a state's transitions all in one part
        assert all(_state_of(k) not in {_state_of(o) for o in other}
                   for other in parts if other is not part for k in part)
    biggest_state = max(len(acts) for acts in _index(plan).defined.values())
    sizes = [len(p) for p in parts]
    assert max(sizes) - min(sizes) <= 2 * biggest_state  # about equal
    assert walk_parts(plan, count) == parts  # the plan alone decides


def _walks(fault: str, count: int) -> Iterator[tuple[set[str], list[Verdict], list[str]]]:
    """Each part's walk against the fake event adapter: covered, verdicts, case IDs."""
    adapter = EventAdapter(fault)
    caps = adapter.capabilities()
    plan = sequences.plan(caps).machines["event"]
    runner = CaseRunner(adapter, caps, step_timeout=2.0)
    try:
        for number, part in enumerate(walk_parts(plan, count), 1):
            covered: set[str] = set()
            verdicts, ids = [], []
            for case, result in walk_machine(runner, plan, set(part),
                                             label=f"p{number}" if count > 1 else ""):
                covered |= set(result.covered)
                verdicts.append(result.verdict)
                ids.append(case.id)
            yield covered, verdicts, ids
    finally:
        runner.close()


def test_the_parts_cover_what_the_whole_walk_covers() -> None:
    (whole, verdicts, ids), = _walks("", 1)
    assert whole == set(_plan().transitions) and set(verdicts) == {Verdict.PASS}
    assert ids[0] == "event-walk-000"
    walked = list(_walks("", 3))
    assert set().union(*(covered for covered, _, _ in walked)) == whole
    assert [ids[0] for _, _, ids in walked] == ["event-walk-p1-000", "event-walk-p2-000",
                                                 "event-walk-p3-000"]


def test_a_fault_the_whole_walk_catches_is_caught_by_some_part() -> None:
    (_, whole, _), = _walks("std_event_keeps_signal", 1)
    assert Verdict.FAIL in whole
    parts = [verdicts for _, verdicts, _ in _walks("std_event_keeps_signal", 3)]
    assert any(Verdict.FAIL in verdicts for verdicts in parts)


def test_the_model_legs_are_every_move_of_the_graph() -> None:
    plan = _plan()
    legs = model_legs(plan)
    moves = {(s, a, t) for s, ms in _index(plan).moves.items() for a, t, _ in ms}
    assert set(legs) == moves and len(legs) == len(moves)
    assert legs[0][0] in plan.initial  # from the initial states outwards


def _units(monkeypatch: pytest.MonkeyPatch, part_size: int) -> list[units.Unit]:
    from pathlib import Path

    from callgate.conformance.gate import RunOptions

    monkeypatch.setattr(units, "WALK_PART_TRANSITIONS", part_size)
    caps = EventAdapter("").capabilities()
    plan = sequences.plan(caps)
    options = RunOptions("tests.fakes:EventAdapter", BUDGETS["standard"], 0, Path("unused"),
                         plan=plan)
    return units.plan_units(plan, caps, options)


def test_a_machine_larger_than_a_part_is_walked_in_parts_then_identified(
        monkeypatch: pytest.MonkeyPatch) -> None:
    whole = _units(monkeypatch, 2000)
    assert [u.id for u in whole if u.key == "event" and u.kind in ("walk", "ident")] == [
        "walk-event", "ident-event"]
    cut = _units(monkeypatch, 10)
    size = len(_plan().transitions)
    walks = [u for u in cut if u.kind == "walk" and u.key == "event"]
    assert [u.id for u in walks] == [f"walk-event-p{i}" for i in range(1, len(walks) + 1)]
    assert len(walks) == -(-size // 10) and {u.parts for u in walks} == {len(walks)}
    assert len({u.id for u in cut}) == len(cut)  # IDs unique


def test_units_start_longest_first_ties_in_the_runs_order() -> None:
    chosen = [units.Unit("a", "race", cost=1), units.Unit("b", "walk", cost=9),
              units.Unit("c", "walk", cost=1), units.Unit("d", "ident", cost=9)]
    assert units.longest_first(chosen) == [1, 3, 0, 2]


@pytest.mark.parametrize("faults, verdict", [(frozenset(), Verdict.PASS),
                                             (frozenset({"reset_forgets_manual_reset"}),
                                              Verdict.FAIL)])
def test_identification_from_the_model_legs_alone_passes_and_catches(
        faults: frozenset[str], verdict: Verdict) -> None:
    """The `ident-MACHINE` unit: no walk before it, the model's legs in place of the walk's."""
    from callgate.conformance.cases.identify import IdentifyBudget, identify_machine
    from tests.test_identify import _event_plan, _reference_runner

    runner = _reference_runner(faults)
    try:
        machine = _event_plan(runner)
        results = [r for _, r in identify_machine(runner, machine, model_legs(machine),
                                                  IdentifyBudget(2000, class_steps=1000))]
    finally:
        runner.close()
    assert verdict in {r.verdict for r in results}
    if verdict is Verdict.PASS:
        assert {r.verdict for r in results} == {Verdict.PASS}
        assert "identified 4 of 4 classes" in (results[-1].description or "")

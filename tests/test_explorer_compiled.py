"""The compiled explorers (integer-coded tables: `explore_compiled` sweeps codes one by one,
`explore_bitset` steps sets of codes) against the reference `build_graph`: the same states,
edges, DEFINED transitions, deadlocks and invariant verdicts, and broken invariants and stuck
states caught."""

from __future__ import annotations

import functools
from collections.abc import Callable

import pytest

from callgate.model import coupled, explorer, verify
from callgate.model.explorer.compiled import (
    Exploration,
    SlotInvariant,
    compile_target,
    explore_bitset,
    explore_compiled,
)
from callgate.model.families import MACHINES
from callgate.model.transitions import Args, Composition, Machine, ModelError, State

ENGINES: dict[str, Callable[..., Exploration]] = {"sweep": explore_compiled,
                                                   "bitset": explore_bitset}


def _comp(name: str, *machines: str) -> Composition:
    return Composition(name, tuple((f"s{i}_{m}", MACHINES[m]) for i, m in enumerate(machines)))


TARGETS: dict[str, Machine | Composition] = {
    "container": MACHINES["container"],
    "two_call_objects": verify.DEFAULT_COMPOSITION,
    "event_cowait_event": _comp("event_cowait_event", "event", "cowait", "event"),
    "call_cancel_event": _comp("call_cancel_event", "com_call", "thread_cancel", "event"),
}


def _only_begin(op: str, args: Args) -> bool:
    """An adapter that can create and begin a call but never finish it: stuck states."""
    return op in {"CreateCall", "Begin_", "QueryInterface"}


@functools.cache
def _reference(target: Machine | Composition, allow: Callable[[str, Args], bool] | None = None
               ) -> tuple[explorer.StateGraph, tuple[int, int, int, int]]:
    graph = explorer.build_graph(target, allow=allow)
    return graph, (graph.states, graph.edge_count, len(graph.transitions),
                   len(explorer.unquiescent_states(graph)))


def _figures(found: Exploration) -> tuple[int, int, int, int]:
    return found.states, found.edges, found.transitions, found.unquiescent


@pytest.mark.parametrize("engine", sorted(ENGINES))
@pytest.mark.parametrize("name", sorted(TARGETS))
def test_compiled_counts_equal_the_reference(engine: str, name: str) -> None:
    _, expected = _reference(TARGETS[name])
    assert _figures(ENGINES[engine](TARGETS[name])) == expected


@pytest.mark.parametrize("engine", sorted(ENGINES))
def test_stuck_states_are_found_as_the_reference_finds_them(engine: str) -> None:
    target = _comp("calls_never_finished", "com_call", "event")
    graph, expected = _reference(target, _only_begin)
    assert expected[3] > 0  # the restriction does leave states that cannot become quiescent
    found = ENGINES[engine](target, allow=_only_begin)
    assert _figures(found) == expected
    assert found.stuck is not None
    assert found.stuck in set(explorer.unquiescent_states(graph))


def _phase_pairs(graph: explorer.StateGraph, a: int, b: int) -> set[tuple[State, State]]:
    return {(node[a], node[b]) for node in graph.graph.nodes}


@pytest.mark.parametrize("engine", sorted(ENGINES))
def test_invariant_verdicts_equal_the_reference_and_a_broken_one_is_caught(engine: str) -> None:
    target = TARGETS["call_cancel_event"]
    assert isinstance(target, Composition)
    graph, _ = _reference(target)
    slots = tuple(slot for slot, _ in target.slots)
    pairs = _phase_pairs(graph, 0, 2)
    dropped = sorted(pairs, key=repr)[len(pairs) // 2]
    holds = SlotInvariant("reachable pairs", (slots[0], slots[2]),
                          lambda states: tuple(states) in pairs)
    broken = SlotInvariant("one reachable pair missing", (slots[0], slots[2]),
                           lambda states: tuple(states) in pairs and tuple(states) != dropped)
    verdicts = ENGINES[engine](target, invariants=[holds, broken]).verdicts
    reference = [all(inv.holds((n[0], n[2])) for n in graph.graph.nodes) for inv in (holds, broken)]
    assert [v.holds for v in verdicts] == reference == [True, False]
    witness = verdicts[1].witness
    assert witness is not None and witness in set(graph.graph.nodes)
    assert (witness[0], witness[2]) == dropped


@pytest.mark.parametrize("engine", sorted(ENGINES))
def test_a_coupled_composition_or_an_unknown_slot_is_refused(engine: str) -> None:
    with pytest.raises(ModelError, match="coupled"):
        ENGINES[engine](coupled.COUPLED[0])
    bad = SlotInvariant("no such slot", ("nowhere",), lambda states: True)
    with pytest.raises(ModelError, match="nowhere"):
        ENGINES[engine](MACHINES["event"], invariants=[bad])


def test_codes_are_mixed_radix_with_the_last_slot_least_significant() -> None:
    compiled = compile_target(TARGETS["event_cowait_event"])
    sizes = [c.size for c in compiled]
    assert [c.stride for c in compiled] == [sizes[1] * sizes[2], sizes[2], 1]
    for c in compiled:
        for index, offsets in enumerate(c.forward):
            assert all(0 <= index + o // c.stride < c.size and o % c.stride == 0 for o in offsets)

"""The walk's state check finds a state's one-field neighbours by an index: the same states, in
the same order, as comparing every pair of states field by field."""

from __future__ import annotations

from callgate.conformance.cases.sequences import SLOT, MachinePlan
from callgate.conformance.cases.walk import StateCheck
from callgate.conformance.protocol.adapter import Capabilities
from callgate.model import explorer
from callgate.model.families import MACHINES
from callgate.model.transitions import Action, State


def test_neighbours_are_the_states_one_field_away() -> None:
    for name in ("com_call", "rpc_notif"):
        machine = MACHINES[name]
        graph = explorer.build_graph(machine)
        caps = Capabilities("test", "1", frozenset(), {})
        check = StateCheck(MachinePlan(machine, graph, list(machine.initial), caps), {})
        states = check._states
        assert len(states) > 10
        total = 0
        for target in states:
            expected = [s for s in states
                        if sum(a != b for a, b in zip(s, target, strict=True)) == 1]
            assert check._neighbours(target) == expected
            total += len(expected)
        assert total > 0  # the machines do have neighbouring states


def _plain_observer(check: StateCheck, source: State, action: Action, target: State
                    ) -> Action | None:
    """The observer as it was chosen before scores were counted once per target: the loop of
    `target` that tells the most of `source` and `target`'s neighbours apart from it."""
    loops = check._loops.get(target, [])
    if source == target:
        return action if action in loops else None
    wrong = [source, *(s for s in check._neighbours(target) if s != source)]
    found, best = None, 0
    for candidate in loops:
        here = check._expected(target, candidate)
        score = sum(1 for w in wrong if here is not None and (
            there := check._expected(w, candidate)) is not None and there != here)
        if score > best:
            found, best = candidate, score
    return found


def test_observers_are_those_the_plain_count_chooses() -> None:
    for name in ("com_call", "rpc_notif"):
        machine = MACHINES[name]
        graph = explorer.build_graph(machine)
        caps = Capabilities("test", "1", frozenset(), {})
        check = StateCheck(MachinePlan(machine, graph, list(machine.initial), caps), {})
        chosen = 0
        for edge in graph.edges():
            action = Action(SLOT, edge.op, edge.args)
            source: State = edge.source  # type: ignore[assignment]
            target: State = edge.target  # type: ignore[assignment]
            want = _plain_observer(check, source, action, target)
            assert check.observer(source, action, target) == want
            chosen += want is not None
        assert chosen > 10  # observers were found, not only None compared


def test_loops_are_in_the_order_of_every_edge_sorted() -> None:
    """Each state's loops (the observers to choose from, in the order that breaks ties) as
    sorting every (source, action) with its targets and keeping the loops gave them."""
    for name in ("com_call", "rpc_notif"):
        machine = MACHINES[name]
        graph = explorer.build_graph(machine)
        caps = Capabilities("test", "1", frozenset(), {})
        check = StateCheck(MachinePlan(machine, graph, list(machine.initial), caps), {})
        targets: dict[tuple[State, Action], set[State]] = {}
        for edge in graph.edges():
            key = (edge.source, Action(SLOT, edge.op, edge.args))
            targets.setdefault(key, set()).add(edge.target)  # type: ignore[arg-type]
        plain: dict[State, list[Action]] = {}
        for (source, action), ends in sorted(targets.items(), key=repr):
            if ends == {source} and StateCheck._cheap(action):
                plain.setdefault(source, []).append(action)
        assert check._loops == plain
        assert sum(len(v) > 1 for v in plain.values()) > 5  # the order is tested, not only sets

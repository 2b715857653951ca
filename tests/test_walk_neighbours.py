"""The walk's state check finds a state's one-field neighbours by an index: the same states, in
the same order, as comparing every pair of states field by field."""

from __future__ import annotations

from callgate.conformance.cases.sequences import MachinePlan
from callgate.conformance.cases.walk import StateCheck
from callgate.conformance.protocol.adapter import Capabilities
from callgate.model import explorer
from callgate.model.families import MACHINES


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

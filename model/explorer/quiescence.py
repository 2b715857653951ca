"""Deadlock freedom of a state graph: from every reachable state a quiescent one is reachable.

A state is quiescent when every slot's machine says so (`Machine.is_quiescent`: nothing in
flight, no call pending on a client, none held by the test server; COM-FIN-04, COM-REL-01,
RPC-CLI-COMPLETE-06, RPC-SRV-02). Which states those are is a fact of each family, declared on
its machine; nothing here names a family.
"""

from __future__ import annotations

from collections import deque

from callgate.model.explorer.graph import Node, StateGraph


def is_quiescent(graph: StateGraph, node: Node) -> bool:
    """Every slot of the node is quiescent."""
    return all(machine.is_quiescent(state)
               for (_, machine), state in zip(graph.slots, graph.slot_states(node), strict=True))


def unquiescent_states(graph: StateGraph) -> list[Node]:
    """Reachable states from which no quiescent state is reachable (deadlock freedom: none)."""
    targets = [n for n in graph.graph.nodes if is_quiescent(graph, n)]
    back = set(targets)
    frontier = deque(targets)
    while frontier:
        node = frontier.popleft()
        for pred in graph.graph.predecessors(node):
            if pred not in back:
                back.add(pred)
                frontier.append(pred)
    return [n for n in graph.graph.nodes if n not in back]


def sink_states(graph: StateGraph) -> list[Node]:
    """Reachable states with no outgoing edge."""
    return [n for n in graph.graph.nodes if graph.graph.out_degree(n) == 0]

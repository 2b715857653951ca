"""Paths through a state graph: shortest paths, the breadth-first tree, and tours.

* `shortest_path(graph, initial_states, target) -> list[Edge]`: a shortest path from an initial
  state to a state, or through an edge (the path ends with that edge).
* `summed_shortest_paths(goals) -> int | None`: the lengths of shortest paths to several
  objects' states, each in its own graph, added up (None when one is not known).
* `tour(graph, initial_states=None, cover="edges"|"transitions") -> list[list[Edge]]`: paths, each
  starting at an initial state, that together traverse every edge (or take every transition at
  least once). Edge tours are Chinese-postman optimal up to the connecting paths; a harness that
  follows a tour re-plans with `shortest_path` when an implementation picks another outcome.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Collection, Iterable, Mapping, Sequence
from typing import Literal

import networkx as nx

from callgate.model.explorer.graph import Edge, Node, StateGraph
from callgate.model.transitions import Action, ModelError

Cover = Literal["edges", "transitions"]


# --- shortest paths -------------------------------------------------------------------------


def _bfs_tree(graph: StateGraph, sources: Iterable[Node]) -> dict[Node, Edge | None]:
    parent: dict[Node, Edge | None] = {s: None for s in sources}
    frontier = deque(parent)
    while frontier:
        node = frontier.popleft()
        for edge in graph.out_edges(node):
            if edge.target not in parent:
                parent[edge.target] = edge
                frontier.append(edge.target)
    return parent


def _path_to(parent: Mapping[Node, Edge | None], node: Node) -> list[Edge]:
    path: list[Edge] = []
    edge = parent[node]
    while edge is not None:
        path.append(edge)
        edge = parent[edge.source]
    path.reverse()
    return path


def shortest_path(graph: StateGraph, initial_states: Iterable[Node] | None, target: Node | Edge
                  ) -> list[Edge]:
    """A shortest path from one of `initial_states` (default: the graph's) to `target`: a state,
    or an `Edge`, in which case the path ends by taking that edge."""
    sources = list(initial_states) if initial_states is not None else list(graph.initial)
    goal = target.source if isinstance(target, Edge) else target
    parent = _bfs_tree(graph, sources)
    if goal not in parent:
        raise ModelError(f"{graph.name}: {graph.describe(goal) if goal in graph.graph else goal!r} "
                         f"is not reachable from the given initial states")
    path = _path_to(parent, goal)
    return [*path, target] if isinstance(target, Edge) else path


def summed_shortest_paths(goals: Iterable[tuple[StateGraph, Iterable[Node] | None,
                                                Collection[Node] | None]]) -> int | None:
    """The lengths of shortest paths added up over several objects: for each goal (a graph, the
    initial states to start from (None: the graph's), and the states the object may be in),
    a shortest path from those initial states to its state. None when an object's states are
    not exactly one state (where it is is not known) or that state cannot be reached."""
    total = 0
    for graph, initial_states, states in goals:
        if states is None or len(states) != 1:
            return None
        try:
            total += len(shortest_path(graph, initial_states, next(iter(states))))
        except ModelError:
            return None
    return total


def _depth(parent: Mapping[Node, Edge | None], node: Node) -> int:
    depth = 0
    edge = parent[node]
    while edge is not None:
        depth += 1
        edge = parent[edge.source]
    return depth


def parents(graph: StateGraph) -> dict[Node, Edge | None]:
    """A breadth-first tree: each reachable state's edge from its parent (None for initial)."""
    return _bfs_tree(graph, graph.initial)


# --- tours ----------------------------------------------------------------------------------

_RESET = ("__reset__",)


def tour(graph: StateGraph, initial_states: Iterable[Node] | None = None,
         cover: Cover = "edges") -> list[list[Edge]]:
    """Paths, each from an initial state, that cover every edge (or every transition) reachable
    from `initial_states` (default: the graph's initial states).

    `cover="edges"` solves the Chinese postman problem with free restarts (a min-cost flow
    duplicates the fewest edges), then joins parts the flow left apart with shortest paths.
    `cover="transitions"` takes each DEFINED (state, action) at least once: the same postman, with
    one edge of each transition required (a self-loop where there is one) and the others free
    to use as connections.
    """
    sources = list(dict.fromkeys(initial_states if initial_states is not None else graph.initial))
    if not sources:
        raise ModelError("a tour needs at least one initial state")
    if cover == "edges":
        return _edge_tour(graph, sources)
    if cover == "transitions":
        return _transition_tour(graph, sources)
    raise ValueError(f"cover must be 'edges' or 'transitions', not {cover!r}")


def tour_length(paths: Sequence[Sequence[Edge]]) -> int:
    return sum(len(p) for p in paths)


def covered_edges(paths: Iterable[Iterable[Edge]]) -> set[tuple[Node, tuple[object, ...]]]:
    return {(e.source, e.key) for p in paths for e in p}


def _reachable_edges(graph: StateGraph, sources: Sequence[Node]) -> tuple[set[Node], list[Edge]]:
    nodes = set(_bfs_tree(graph, sources))
    return nodes, [e for e in graph.edges() if e.source in nodes]


def _edge_tour(graph: StateGraph, sources: Sequence[Node]) -> list[list[Edge]]:
    nodes, edges = _reachable_edges(graph, sources)
    return _postman(graph, sources, nodes, edges, edges)


def _transition_tour(graph: StateGraph, sources: Sequence[Node]) -> list[list[Edge]]:
    nodes, edges = _reachable_edges(graph, sources)
    # One edge per transition must be taken; a self-loop, where the transition has one, costs
    # no balancing.
    chosen: dict[tuple[Node, Action], Edge] = {}
    for e in edges:
        key = (e.source, e.action)
        if key not in chosen or (e.target == e.source and chosen[key].target != e.source):
            chosen[key] = e
    return _postman(graph, sources, nodes, edges, list(chosen.values()))


def _postman(graph: StateGraph, sources: Sequence[Node], nodes: set[Node], edges: Sequence[Edge],
             required: Sequence[Edge]) -> list[list[Edge]]:
    """Paths from `sources` that take every `required` edge, any of `edges` serving to connect.

    The directed (rural) postman with free restarts: a min-cost flow balances the required
    edges with the fewest extra steps, restarts cost nothing, and parts the flow left apart are
    joined by shortest paths from an initial state.
    """
    if not required:
        return []
    hub: Node = _RESET
    flow_net = nx.DiGraph()
    representative: dict[tuple[Node, Node], Edge] = {}
    balance: dict[Node, int] = dict.fromkeys(nodes, 0)
    for e in edges:
        representative.setdefault((e.source, e.target), e)
    for e in required:
        balance[e.source] += 1
        balance[e.target] -= 1
    for (u, v) in representative:
        if u != v:
            flow_net.add_edge(u, v, weight=1)
    for node in nodes:
        flow_net.add_edge(node, hub, weight=0)
    for s in sources:
        flow_net.add_edge(hub, s, weight=0)
    # demand = inflow - outflow of the extra arcs = out-degree - in-degree of the node
    for node, b in balance.items():
        flow_net.nodes[node]["demand"] = b
    flow_net.nodes[hub]["demand"] = 0
    flow = nx.min_cost_flow(flow_net)

    # The Euler multigraph: every edge once, the flow's copies, restarts through the hub.
    adjacency: dict[Node, list[tuple[Node, Edge | None]]] = {hub: []}
    for node in nodes:
        adjacency[node] = []

    def add(u: Node, v: Node, edge: Edge | None) -> None:
        adjacency[u].append((v, edge))

    for e in required:
        add(e.source, e.target, e)
    for u, targets in flow.items():
        for v, amount in targets.items():
            for _ in range(amount):
                add(u, v, None if hub in (u, v) else representative[(u, v)])
    # Parts of the graph the flow left balanced on their own are not yet joined to the hub:
    # reach each with a shortest path from an initial state, and restart after it.
    tree: dict[Node, Edge | None] | None = None
    for component in _components(adjacency):
        if hub in component:
            continue
        entry = next((s for s in sources if s in component), None)
        if entry is not None:
            add(hub, entry, None)
            add(entry, hub, None)
            continue
        tree = tree if tree is not None else _bfs_tree(graph, sources)
        target = min(component, key=lambda n: _depth(tree, n))
        path = _path_to(tree, target)
        add(hub, path[0].source, None)
        for e in path:
            add(e.source, e.target, e)
        add(target, hub, None)

    paths: list[list[Edge]] = []
    current: list[Edge] = []
    for v, edge in _euler_circuit(adjacency, hub):
        if edge is not None:
            current.append(edge)
        elif v == hub and current:
            paths.append(current)
            current = []
    if current:
        paths.append(current)
    return paths


def _components(adjacency: Mapping[Node, list[tuple[Node, Edge | None]]]) -> list[set[Node]]:
    """Weakly connected components of the nodes that have arcs."""
    root: dict[Node, Node] = {}

    def find(x: Node) -> Node:
        while root[x] != x:
            root[x] = root[root[x]]
            x = root[x]
        return x

    for u, arcs in adjacency.items():
        for v, _ in arcs:
            for x in (u, v):
                root.setdefault(x, x)
            ru, rv = find(u), find(v)
            if ru != rv:
                root[ru] = rv
    groups: dict[Node, set[Node]] = {}
    for x in root:
        groups.setdefault(find(x), set()).add(x)
    return list(groups.values())


def _euler_circuit(adjacency: dict[Node, list[tuple[Node, Edge | None]]], start: Node
                   ) -> list[tuple[Node, Edge | None]]:
    """Hierholzer's algorithm on a balanced multigraph: (node reached, arc taken), in order.

    Consumes `adjacency`.
    """
    stack: list[tuple[Node, Edge | None]] = [(start, None)]
    circuit: list[tuple[Node, Edge | None]] = []
    while stack:
        node, _ = stack[-1]
        arcs = adjacency.get(node)
        if arcs:
            stack.append(arcs.pop())
        else:
            circuit.append(stack.pop())
    circuit.reverse()
    return circuit[1:]

"""The reachable state graph of a machine or composition (networkx), tours, shortest paths, drawings.

Public API that the harness calls (keep these names and signatures):

* `build_graph(target, pins=None, allow=None) -> StateGraph`: every state reachable from the
  initial states of a `Machine` or a `Composition` through DEFINED transitions. Nodes are states
  (a machine's `State`, or a tuple of slot states for a composition); each edge is one allowed
  outcome of one action and carries an `Edge` (action, outcome label and index, code, rules).
  `allow(op, args)`, when given, drops actions an adapter cannot perform.
  `StateGraph.transitions` is the set of (state, `Action`) pairs whose row is DEFINED.
* `tour(graph, initial_states=None, cover="edges"|"transitions") -> list[list[Edge]]`: paths, each
  starting at an initial state, that together traverse every edge (or take every transition at
  least once). Edge tours are Chinese-postman optimal up to the connecting paths; a harness that
  follows a tour re-plans with `shortest_path` when an implementation picks another outcome.
* `shortest_path(graph, initial_states, target) -> list[Edge]`: a shortest path from an initial
  state to a state, or through an edge (the path ends with that edge).

Also: lean counting exploration for large compositions (`explore_counts`), deadlock freedom
(`unquiescent_states`: from every reachable state a quiescent one is reachable), and drawings as
Graphviz DOT, SVG (through `dot`) and Mermaid.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections import deque
from collections.abc import Callable, Hashable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Literal

import networkx as nx

from callgate.model.transitions import (
    Action,
    Allowed,
    Args,
    Composition,
    Kind,
    Machine,
    ModelError,
    Pins,
    State,
    Value,
    find_row,
    step,
)

Node = Hashable
Allow = Callable[[str, Args], bool]
Cover = Literal["edges", "transitions"]


@dataclass(frozen=True)
class Edge:
    """One edge of a state graph: an allowed outcome of an action, from `source` to `target`.

    `outcome` indexes the row's outcomes (and, unpinned, `step()`'s allowed outcomes);
    `allowed` is that outcome resolved in the source state.
    """

    source: Node
    target: Node
    slot: str
    op: str
    args: Args
    outcome: int
    allowed: Allowed = field(compare=False, repr=False)

    @property
    def key(self) -> tuple[str, str, Args, int]:
        """The edge's key among parallel edges: (slot, op, args, outcome index)."""
        return (self.slot, self.op, self.args, self.outcome)

    @cached_property
    def action(self) -> Action:
        return Action(self.slot, self.op, self.args)

    @property
    def label(self) -> str:
        return self.allowed.label

    @cached_property
    def code(self) -> str:
        return str(self.allowed.code)

    @property
    def rules(self) -> tuple[str, ...]:
        return self.allowed.rules

    def __str__(self) -> str:
        return f"{self.action} -> {self.code} [{self.label}]"


@dataclass(frozen=True)
class Figures:
    """The size of an exploration, and how long it took."""

    states: int
    edges: int
    transitions: int
    seconds: float


@dataclass
class StateGraph:
    """A reachable state graph. `graph` is a networkx MultiDiGraph whose edges carry `edge`."""

    name: str
    slots: tuple[tuple[str, Machine], ...]
    initial: tuple[Node, ...]
    graph: nx.MultiDiGraph
    transitions: frozenset[tuple[Node, Action]]
    seconds: float
    composite: bool
    _adjacency: dict[Node, list[Edge]] | None = field(default=None, repr=False)

    @property
    def states(self) -> int:
        return int(self.graph.number_of_nodes())

    @property
    def edge_count(self) -> int:
        return int(self.graph.number_of_edges())

    def edges(self) -> Iterator[Edge]:
        for _, _, data in self.graph.edges(data=True):
            yield data["edge"]

    def out_edges(self, node: Node) -> list[Edge]:
        """The edges leaving `node` (from a cache built on first use)."""
        if self._adjacency is None:
            adjacency: dict[Node, list[Edge]] = {n: [] for n in self.graph.nodes}
            for edge in self.edges():
                adjacency[edge.source].append(edge)
            self._adjacency = adjacency
        return self._adjacency.get(node, [])

    def figures(self) -> Figures:
        return Figures(self.states, self.edge_count, len(self.transitions), self.seconds)

    def slot_states(self, node: Node) -> tuple[State, ...]:
        """The slot states of a node (one, for a machine's graph)."""
        return node if self.composite else (node,)  # type: ignore[return-value]

    def describe(self, node: Node) -> str:
        parts = []
        for (slot, machine), state in zip(self.slots, self.slot_states(node), strict=True):
            text = machine.describe(state)
            parts.append(f"{slot}[{text}]" if self.composite else text)
        return " ".join(parts)


# --- building -------------------------------------------------------------------------------


def _outcome_indices(machine: Machine, state: State, op: str, args: Args, pins: Pins) -> list[int]:
    row = find_row(machine, state, op, args)
    return [i for i, o in enumerate(row.outcomes)
            if all(pins.get(point, choice) == choice for point, choice in o.when)]


SlotMoves = tuple[list[tuple[str, Args, int, Allowed]], list[tuple[str, Args]]]


def _moves(machine: Machine, state: State, pins: Pins, allow: Allow | None) -> SlotMoves:
    """Every allowed outcome out of `state`, and the DEFINED (op, args) pairs."""
    moves: list[tuple[str, Args, int, Allowed]] = []
    defined: list[tuple[str, Args]] = []
    for operation in machine.operations:
        for args in operation.all_args():
            if allow is not None and not allow(operation.name, args):
                continue
            result = step(machine, state, operation.name, args, pins)
            if result.kind is not Kind.DEFINED:
                continue
            defined.append((operation.name, args))
            indices = _outcome_indices(machine, state, operation.name, args, pins)
            moves += [(operation.name, args, i, a)
                      for i, a in zip(indices, result.allowed, strict=True)]
    return moves, defined


def _slots(target: Machine | Composition) -> tuple[tuple[tuple[str, Machine], ...], bool]:
    if isinstance(target, Machine):
        return ((target.name, target),), False
    return target.slots, True


def build_graph(target: Machine | Composition, pins: Pins | None = None,
                allow: Allow | None = None) -> StateGraph:
    """The reachable state graph of a machine or a composition under `pins`.

    `allow(op, args)` drops actions an adapter cannot perform (the graph then holds what is
    reachable with the rest).
    """
    start = time.perf_counter()
    pins = dict(pins or {})
    slots, composite = _slots(target)
    cache: dict[tuple[str, State], SlotMoves] = {}

    def moves(machine: Machine, state: State) -> SlotMoves:
        key = (machine.name, state)
        if key not in cache:
            cache[key] = _moves(machine, state, pins, allow)
        return cache[key]

    initial: list[Node]
    if composite:
        assert isinstance(target, Composition)
        initial = list(dict.fromkeys(target.initial_states()))
    else:
        assert isinstance(target, Machine)
        initial = list(dict.fromkeys(target.initial))
    graph = nx.MultiDiGraph(name=target.name)
    transitions: set[tuple[Node, Action]] = set()
    seen: set[Node] = set(initial)
    frontier = deque(initial)
    graph.add_nodes_from(initial)
    while frontier:
        node = frontier.popleft()
        parts: tuple[State, ...] = node if composite else (node,)  # type: ignore[assignment]
        for position, (slot, machine) in enumerate(slots):
            found, defined = moves(machine, parts[position])
            transitions.update((node, Action(slot, op, args)) for op, args in defined)
            for op, args, index, allowed in found:
                if composite:
                    nxt: Node = (*parts[:position], allowed.next_state, *parts[position + 1:])
                else:
                    nxt = allowed.next_state
                edge = Edge(node, nxt, slot, op, args, index, allowed)
                graph.add_edge(node, nxt, key=edge.key, edge=edge)
                if nxt not in seen:
                    seen.add(nxt)
                    frontier.append(nxt)
    return StateGraph(target.name, slots, tuple(initial), graph, frozenset(transitions),
                      time.perf_counter() - start, composite)


def explore_counts(target: Machine | Composition, pins: Pins | None = None) -> Figures:
    """States, edges and DEFINED transitions reachable, without building a networkx graph.

    For compositions too large to hold as a graph (the benchmark's): per-slot successors are
    computed once per slot state and combined.
    """
    start = time.perf_counter()
    pins = dict(pins or {})
    slots, composite = _slots(target)
    cache: dict[tuple[str, State], tuple[list[State], int]] = {}

    def successors(machine: Machine, state: State) -> tuple[list[State], int]:
        key = (machine.name, state)
        if key not in cache:
            found, defined = _moves(machine, state, pins, None)
            cache[key] = ([a.next_state for _, _, _, a in found], len(defined))
        return cache[key]

    if composite:
        assert isinstance(target, Composition)
        initial: list[tuple[State, ...]] = list(dict.fromkeys(target.initial_states()))
    else:
        assert isinstance(target, Machine)
        initial = [(s,) for s in dict.fromkeys(target.initial)]
    seen = set(initial)
    frontier = deque(initial)
    edges = transitions = 0
    while frontier:
        parts = frontier.popleft()
        for position, (_, machine) in enumerate(slots):
            nexts, defined = successors(machine, parts[position])
            edges += len(nexts)
            transitions += defined
            for slot_next in nexts:
                nxt = (*parts[:position], slot_next, *parts[position + 1:])
                if nxt not in seen:
                    seen.add(nxt)
                    frontier.append(nxt)
    return Figures(len(seen), edges, transitions, time.perf_counter() - start)


# --- deadlock freedom -----------------------------------------------------------------------


def _com_quiescent(machine: Machine, state: State) -> bool:
    view = machine.view(state)
    return view["phase"] in ("NONE", "IDLE", "RELEASED") and not view["held"] and not view["orphan"]


def _rpc_quiescent(machine: Machine, state: State) -> bool:
    view = machine.view(state)
    return view["phase"] in ("RAW", "INIT", "DONE") and view["server"] in ("none", "gone")


# A quiescent state has nothing in flight: no call pending on a client, none held by the test
# server (COM-FIN-04, COM-REL-01, RPC-CLI-COMPLETE-06, RPC-SRV-02). Events and containers carry
# no calls, so every state of theirs is quiescent.
QUIESCENT: dict[str, Callable[[Machine, State], bool]] = {
    "com_call": _com_quiescent,
    "event": lambda machine, state: True,
    "container": lambda machine, state: True,
    "rpc_call": _rpc_quiescent,
}


def is_quiescent(graph: StateGraph, node: Node) -> bool:
    """Every slot of the node is quiescent."""
    for (_, machine), state in zip(graph.slots, graph.slot_states(node), strict=True):
        test = QUIESCENT.get(machine.name)
        if test is None:
            raise ModelError(f"no quiescence predicate for machine {machine.name}; add one to "
                             f"callgate.model.explorer.QUIESCENT")
        if not test(machine, state):
            return False
    return True


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


# --- paths ----------------------------------------------------------------------------------


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


def covered_edges(paths: Iterable[Iterable[Edge]]) -> set[tuple[Node, tuple[str, str, Args, int]]]:
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


# --- drawings -------------------------------------------------------------------------------


class ToolMissing(Exception):
    """An external program (Graphviz `dot`) is not installed."""


# Graphs with more states than this are drawn projected on a few fields (the full drawing of
# rpc_call's 642 states takes Graphviz minutes and nobody can read it).
DRAW_LIMIT = 100
DRAW_FIELDS: dict[str, tuple[str, ...]] = {
    "rpc_call": ("phase", "cancel", "server", "result"),
    "container": ("created", "sig0", "sig1"),
}

Key = tuple[tuple[Value, ...], ...]


@dataclass(frozen=True)
class Picture:
    """A graph as drawn: states grouped by the fields shown, parallel edges merged."""

    name: str
    labels: dict[Key, str]
    initial: frozenset[Key]
    edges: dict[tuple[Key, Key], list[str]]
    note: str


def _varying_fields(graph: StateGraph) -> list[list[int]]:
    """Per slot, the indices of fields that take more than one value in the graph."""
    result = []
    for position, (_, machine) in enumerate(graph.slots):
        values: list[set[object]] = [set() for _ in machine.fields]
        for node in graph.graph.nodes:
            for i, v in enumerate(graph.slot_states(node)[position]):
                values[i].add(v)
        result.append([i for i, vs in enumerate(values) if len(vs) > 1] or [0])
    return result


def picture(graph: StateGraph, fields: Mapping[str, Sequence[str]] | None = None,
            full: bool = False) -> Picture:
    """What to draw: every state (fields that vary), or, for a graph over `DRAW_LIMIT` states
    (unless `full`), states projected on `fields` (default `DRAW_FIELDS`) per machine."""
    shown = _varying_fields(graph)
    chosen = dict(DRAW_FIELDS if fields is None else fields)
    projected: list[str] = []
    if not full and (fields is not None or graph.states > DRAW_LIMIT):
        for position, (_, machine) in enumerate(graph.slots):
            if machine.name in chosen:
                shown[position] = [machine.index(f) for f in chosen[machine.name]]
                projected.append(f"{machine.name} on {', '.join(chosen[machine.name])}")

    def key(node: Node) -> Key:
        return tuple(tuple(state[i] for i in shown[position])
                     for position, state in enumerate(graph.slot_states(node)))

    labels: dict[Key, str] = {}
    for node in graph.graph.nodes:
        k = key(node)
        if k in labels:
            continue
        lines = []
        for position, ((slot, machine), values) in enumerate(zip(graph.slots, k, strict=True)):
            parts = [f"{machine.fields[i].name}={v}"
                     for i, v in zip(shown[position], values, strict=True)]
            if graph.composite:
                lines.append(f"{slot}: " + " ".join(parts))
            else:  # three fields a line keeps the boxes readable
                lines += [" ".join(parts[j:j + 3]) for j in range(0, len(parts), 3)]
        labels[k] = "\n".join(lines)
    merged: dict[tuple[Key, Key], set[str]] = {}
    for e in graph.edges():
        name = f"{e.slot}.{e.op}" if graph.composite else e.op
        merged.setdefault((key(e.source), key(e.target)), set()).add(name)
    note = f"{graph.states} states, {graph.edge_count} edges"
    if projected:
        note += "; drawn projected: " + "; ".join(projected)
    return Picture(graph.name, labels, frozenset(key(n) for n in graph.initial),
                   {k: sorted(v) for k, v in merged.items()}, note)


def node_label(graph: StateGraph, node: Node) -> str:
    """The fields of a state that vary across the graph, one slot per line."""
    shown = _varying_fields(graph)
    lines = []
    for position, ((slot, machine), state) in enumerate(
            zip(graph.slots, graph.slot_states(node), strict=True)):
        text = " ".join(f"{machine.fields[i].name}={state[i]}" for i in shown[position])
        lines.append(f"{slot}: {text}" if graph.composite else text)
    return "\n".join(lines)


def _dot_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _edge_label(ops: list[str]) -> str:
    return ", ".join(ops[:4]) + (f" +{len(ops) - 4}" if len(ops) > 4 else "")


def to_dot(graphs: Sequence[StateGraph], title: str = "",
           fields: Mapping[str, Sequence[str]] | None = None, full: bool = False) -> str:
    """Graphviz DOT of one or more graphs (one cluster each); see `picture` for projection."""
    lines = [f'digraph "{_dot_escape(title or graphs[0].name)}" {{',
             "  rankdir=LR;", '  node [shape=box, style=rounded, fontname="Helvetica", fontsize=9];',
             '  edge [fontname="Helvetica", fontsize=8];']
    for g_index, graph in enumerate(graphs):
        drawn = picture(graph, fields, full)
        ids = {k: f"g{g_index}s{i}" for i, k in enumerate(drawn.labels)}
        indent = "    " if len(graphs) > 1 else "  "
        if len(graphs) > 1:
            lines.append(f"  subgraph cluster_{g_index} {{")
            lines.append(f'    label="{_dot_escape(drawn.name + " (" + drawn.note + ")")}";')
        else:
            lines.append(f'  label="{_dot_escape(drawn.name + " (" + drawn.note + ")")}";')
        for k, ident in ids.items():
            style = ", penwidth=2" if k in drawn.initial else ""
            lines.append(f'{indent}{ident} [label="{_dot_escape(drawn.labels[k])}"{style}];')
        for (u, v), ops in drawn.edges.items():
            lines.append(f'{indent}{ids[u]} -> {ids[v]} [label="{_dot_escape(_edge_label(ops))}"];')
        if len(graphs) > 1:
            lines.append("  }")
    lines.append("}")
    return "\n".join(lines) + "\n"


def _mermaid_text(text: str) -> str:
    return text.replace('"', "'").replace("\n", "<br/>").replace("|", "/")


def to_mermaid(graphs: Sequence[StateGraph], fields: Mapping[str, Sequence[str]] | None = None,
               full: bool = False) -> str:
    """A Mermaid flowchart (for Markdown) of one or more graphs; see `picture` for projection."""
    lines = ["flowchart LR"]
    for g_index, graph in enumerate(graphs):
        drawn = picture(graph, fields, full)
        ids = {k: f"g{g_index}s{i}" for i, k in enumerate(drawn.labels)}
        indent = "    " if len(graphs) > 1 else "  "
        if len(graphs) > 1:
            lines.append(f'  subgraph g{g_index}["{_mermaid_text(drawn.name)}"]')
        for k, ident in ids.items():
            lines.append(f'{indent}{ident}["{_mermaid_text(drawn.labels[k])}"]')
        for (u, v), ops in drawn.edges.items():
            lines.append(f'{indent}{ids[u]} -->|"{_mermaid_text(_edge_label(ops))}"| {ids[v]}')
        if len(graphs) > 1:
            lines.append("  end")
    return "\n".join(lines) + "\n"


DOT_HINT = ("Graphviz `dot` is not installed; install it with "
            "`tools/install-system-packages.sh graphviz:dot` (Debian: apt-get install graphviz)")


def render_svg(dot_text: str, dot: str | None = None, timeout: float = 120.0) -> str:
    """SVG from DOT text through Graphviz `dot -Tsvg`. Raises ToolMissing without `dot`."""
    exe = dot or shutil.which("dot")
    if exe is None:
        raise ToolMissing(DOT_HINT)
    try:
        done = subprocess.run([exe, "-Tsvg"], input=dot_text, capture_output=True, text=True,
                              timeout=timeout, check=False)
    except FileNotFoundError as exc:
        raise ToolMissing(DOT_HINT) from exc
    except subprocess.TimeoutExpired as exc:
        raise ModelError(f"dot took more than {timeout:.0f} s to lay the graph out; draw it "
                         "projected (the default) rather than in full") from exc
    if done.returncode != 0:
        raise ModelError(f"dot failed ({done.returncode}): {done.stderr.strip()}")
    return done.stdout

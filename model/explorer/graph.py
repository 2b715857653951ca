"""The reachable state graph of a machine or composition (networkx), and its lean counts.

* `build_graph(target, pins=None, allow=None) -> StateGraph`: every state reachable from the
  initial states of a `Machine` or a `Composition` through DEFINED transitions. Nodes are states
  (a machine's `State`, or a tuple of slot states for a composition); each edge is one allowed
  outcome of one action and carries an `Edge` (action, outcome label and index, code, rules).
  `allow(op, args)`, when given, drops actions an adapter cannot perform.
  `StateGraph.transitions` is the set of (state, `Action`) pairs whose row is DEFINED.
* `explore_counts(target, pins=None) -> Figures`: states, edges and transitions without holding
  a graph, for compositions too large to hold (the benchmark's).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Hashable, Iterator
from dataclasses import dataclass, field
from functools import cached_property

import networkx as nx

from callgate.model.transitions import (
    Action,
    Allowed,
    Args,
    Composition,
    Kind,
    Machine,
    Pins,
    State,
    find_row,
    step,
)

Node = Hashable
Allow = Callable[[str, Args], bool]


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
    # In a coupled composition: the follower actions this step performed with it, each with the
    # index of its outcome (empty for a step of one slot).
    joint: tuple[tuple[Action, int], ...] = ()

    @property
    def key(self) -> tuple[object, ...]:
        """The edge's key among parallel edges: (slot, op, args, outcome index), and the
        followers' actions and outcomes when it drove any."""
        base = (self.slot, self.op, self.args, self.outcome)
        return (*base, self.joint) if self.joint else base

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
        if target.coupled:
            return _build_coupled(target, initial, pins, allow, start)
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


def _outcome_index(machine: Machine, state: State, action: Action, pins: Pins,
                   allowed: Allowed) -> int:
    """The row outcome index of one allowed outcome of `action` in `state`."""
    result = step(machine, state, action.op, action.args, pins)
    indices = _outcome_indices(machine, state, action.op, action.args, pins)
    return next(i for i, a in zip(indices, result.allowed, strict=True) if a == allowed)


def _build_coupled(comp: Composition, initial: list[Node], pins: Pins, allow: Allow | None,
                   start: float) -> StateGraph:
    """The reachable graph of a coupled composition, step by step as `Composition.moves` defines
    it (links and shared fields); an edge of a linked step names its followers in `Edge.joint`.
    A slot's own moves are computed once per slot state; only a link's leader goes through
    `Composition.moves`."""
    graph = nx.MultiDiGraph(name=comp.name)
    transitions: set[tuple[Node, Action]] = set()
    leaders = {link.leader for link in comp.links}
    cache: dict[tuple[int, State], SlotMoves] = {}

    def offered(slot: str) -> Allow:
        def check(op: str, args: Args) -> bool:
            return comp.offered(Action(slot, op, args)) and (allow is None or allow(op, args))
        return check

    checks = [offered(slot) for slot, _ in comp.slots]
    seen: set[Node] = set(initial)
    frontier = deque(initial)
    graph.add_nodes_from(initial)
    while frontier:
        node = frontier.popleft()
        parts: tuple[State, ...] = node  # type: ignore[assignment]
        for position, (slot, machine) in enumerate(comp.slots):
            key = (position, parts[position])
            if key not in cache:
                cache[key] = _moves(machine, parts[position], pins, checks[position])
            found, defined = cache[key]
            transitions.update((node, Action(slot, op, args)) for op, args in defined)
            edges: list[Edge] = []
            for op, args, index, allowed in found:
                action = Action(slot, op, args)
                if action in leaders:
                    continue
                after = list(parts)
                after[position] = allowed.next_state
                nxt = comp._share(parts, after, (position,))
                if nxt is not None:
                    edges.append(Edge(node, nxt, slot, op, args, index, allowed))
            for op, args in defined:
                action = Action(slot, op, args)
                if action not in leaders:
                    continue
                for done, nxt in comp.moves(parts, action, pins):
                    (_, lead), *rest = done
                    joint = tuple((f, _outcome_index(comp.machine(f.slot),
                                                     parts[comp.position(f.slot)], f, pins, o))
                                  for f, o in rest)
                    edges.append(Edge(node, nxt, slot, op, args,
                                      _outcome_index(machine, parts[position], action, pins, lead),
                                      lead, joint))
            for edge in edges:
                graph.add_edge(node, edge.target, key=edge.key, edge=edge)
                if edge.target not in seen:
                    seen.add(edge.target)
                    frontier.append(edge.target)
    return StateGraph(comp.name, comp.slots, tuple(initial), graph, frozenset(transitions),
                      time.perf_counter() - start, True)


def explore_counts(target: Machine | Composition, pins: Pins | None = None) -> Figures:
    """States, edges and DEFINED transitions reachable, without building a networkx graph.

    For compositions too large to hold as a graph (the benchmark's): per-slot successors are
    computed once per slot state and combined.
    """
    if isinstance(target, Composition) and target.coupled:
        return build_graph(target, pins).figures()
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

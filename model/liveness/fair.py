"""Fair cycles in a finite graph: the search every liveness counterexample comes from, and a short
fair cycle through what it finds.

The graph is given as arcs between hashable nodes; each arc is one step (an operation with its
arguments) and says whether it left the machine's state unchanged (a stutter). Three fairness
conditions decide which infinite runs count (`callgate.model.liveness` states them exactly):

* weak fairness of `Fairness.weak` operations: one that is enabled in every state of a cycle is
  taken somewhere on it;
* strong fairness of `Fairness.strong` operations: one that is enabled in some state of a cycle
  is taken somewhere on it;
* progress of time: an action (operation and arguments) taken on a cycle in a state where it has
  an outcome that changes the state takes such an outcome there, somewhere on the cycle.

`fair_component` is Emerson and Lei's refinement of strongly connected components for such
conditions (as in SPIN's and NuSMV's fair-cycle searches): a component that holds a cycle
through all of its arcs that is fair is returned; one that breaks a condition as a whole either
holds no fair cycle (weak fairness) or loses the states or arcs no fair cycle can use (strong
fairness, progress), and the rest is split again. `fair_cycle` then builds a cycle inside the
component that takes only what the conditions demand, so a counterexample stays readable.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Hashable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import NamedTuple, TypeVar, cast

from callgate.model.transitions import Args

Node = Hashable
N = TypeVar("N", bound=Hashable)
Action = tuple[str, Args]


class Arc(NamedTuple):
    """One step between two nodes: `op(args)`, whether it left the machine's state as it was,
    and what it stands for (`tag`, for printing). A named tuple, not a dataclass: the searches
    make tens of thousands of them."""

    source: Node
    target: Node
    op: str
    args: Args
    stutter: bool
    tag: object = None

    @property
    def action(self) -> Action:
        return (self.op, self.args)


@dataclass(frozen=True)
class Fairness:
    """Which operations are weakly fair (the test server's) and strongly fair (the client's
    tries); progress of time always holds."""

    weak: frozenset[str]
    strong: frozenset[str]


@dataclass(frozen=True)
class Arena:
    """What fairness is judged against: the operations enabled at each node in the whole graph
    (not only inside the region searched), and whether an action has a state-changing outcome
    there."""

    enabled: Callable[[Node], frozenset[str]]
    progresses: Callable[[Node, Action], bool]


@dataclass(frozen=True)
class Component:
    """A strongly connected set of nodes whose arcs, all taken in turn, make a fair cycle."""

    nodes: frozenset[Node]
    arcs: tuple[Arc, ...]


def sccs(nodes: Iterable[Node], successors: Callable[[Node], Iterable[Node]]) -> list[set[Node]]:
    """Strongly connected components of the subgraph on `nodes` (Tarjan's algorithm, iterative)."""
    members = set(nodes)
    index: dict[Node, int] = {}
    low: dict[Node, int] = {}
    on_stack: set[Node] = set()
    stack: list[Node] = []
    found: list[set[Node]] = []

    def visit(node: Node) -> tuple[Node, Iterator[Node]]:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        return node, iter([n for n in successors(node) if n in members])

    for root in members:
        if root in index:
            continue
        work = [visit(root)]
        while work:
            node, pending = work[-1]
            child = next((n for n in pending if n not in index or n in on_stack), None)
            if child is not None:
                if child in index:
                    low[node] = min(low[node], index[child])
                else:
                    work.append(visit(child))
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component: set[Node] = set()
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.add(member)
                    if member == node:
                        break
                found.append(component)
    return found


def fair_component(arcs: Mapping[N, Sequence[Arc]], arena: Arena, fairness: Fairness
                   ) -> Component | None:
    """A component of the graph `arcs` (node -> arcs leaving it, all kept inside the region
    searched) on which a fair cycle runs, or None if no cycle of the graph is fair."""
    removed: set[tuple[Node, Action]] = set()

    def inside(node: Node, members: set[Node]) -> list[Arc]:
        return [a for a in arcs.get(cast(N, node), ()) if a.target in members
                and (node, a.action) not in removed]

    def refine(members: set[Node]) -> tuple[Component | None, set[Node] | None]:
        """The fair component `members` is, or the part of it still worth splitting (None:
        nothing), after the three conditions judged on all of its arcs."""
        while True:
            internal = [a for n in members for a in inside(n, members)]
            if not internal:
                return None, None
            taken = {a.op for a in internal}
            # Weak fairness: an operation enabled everywhere here and never taken here rules
            # out every cycle inside (each would have it enabled throughout).
            if any(op not in taken and all(op in arena.enabled(n) for n in members)
                   for op in fairness.weak):
                return None, None
            # Strong fairness: a fair cycle cannot visit a state where such an operation is
            # enabled, since it cannot take it without leaving. Progress: an action whose
            # state-changing outcomes all leave cannot be taken infinitely often by a fair
            # cycle inside. Both shrink the component, which is split again (a single state
            # stays itself, so it is judged again at once).
            blocked = {n for n in members if (arena.enabled(n) & fairness.strong) - taken}
            stuck = _stuck_actions(internal, arena)
            if not blocked and not stuck:
                return Component(frozenset(members), tuple(internal)), None
            removed.update(stuck)
            members = members - blocked
            if len(members) > 1:
                return None, members

    work: list[set[Node]] = [set(arcs)]
    while work:
        candidates = work.pop()

        def successors(node: Node, among: set[Node] = candidates) -> list[Node]:
            return [a.target for a in inside(node, among)]

        for members in sccs(candidates, successors):
            found, rest = refine(members)
            if found is not None:
                return found
            if rest is not None:
                work.append(rest)
    return None


def _stuck_actions(internal: Sequence[Arc], arena: Arena) -> set[tuple[Node, Action]]:
    moves: dict[tuple[Node, Action], bool] = {}
    for a in internal:
        key = (a.source, a.action)
        moves[key] = moves.get(key, False) or not a.stutter
    return {key for key, moved in moves.items() if not moved and arena.progresses(*key)}


def fair_cycle(component: Component, arena: Arena, fairness: Fairness, start: Node) -> list[Arc]:
    """A cycle from `start` inside `component` that is fair, taking only the arcs and visiting
    only the states the fairness conditions demand (each added in turn until none is missing)."""
    if start not in component.nodes:
        raise ValueError("the start of a fair cycle must lie in its component")
    out: dict[Node, list[Arc]] = {n: [] for n in component.nodes}
    for a in component.arcs:
        out[a.source].append(a)
    waypoints: list[Arc | Node] = []
    while True:
        cycle = _closed_walk(out, start, waypoints)
        missing = _missing(cycle, component, arena, fairness)
        if missing is None:
            return cycle
        waypoints.append(missing)


def _missing(cycle: Sequence[Arc], component: Component, arena: Arena, fairness: Fairness
             ) -> Arc | Node | None:
    """An arc to take or a state to visit that the cycle still needs to be fair, or None."""
    visited = [a.source for a in cycle]
    taken_ops = {a.op for a in cycle}
    for op in sorted(fairness.weak):
        if op in taken_ops or not all(op in arena.enabled(n) for n in visited):
            continue
        arc = next((a for a in component.arcs if a.op == op), None)
        if arc is not None:
            return arc
        return next(n for n in component.nodes if op not in arena.enabled(n))
    for op in sorted(fairness.strong):
        if op not in taken_ops and any(op in arena.enabled(n) for n in visited):
            return next(a for a in component.arcs if a.op == op)
    moved = {(a.source, a.action) for a in cycle if not a.stutter}
    for a in cycle:
        key = (a.source, a.action)
        if key not in moved and arena.progresses(*key):
            return next(b for b in component.arcs if (b.source, b.action) == key and not b.stutter)
    return None


def _closed_walk(out: Mapping[Node, Sequence[Arc]], start: Node, waypoints: Sequence[Arc | Node]
                 ) -> list[Arc]:
    """From `start`, through each waypoint (an arc taken, or a state visited) in order, and back;
    at least one arc long."""
    walk: list[Arc] = []
    here = start
    for point in waypoints:
        if isinstance(point, Arc):
            walk += _path(out, here, point.source)
            walk.append(point)
            here = point.target
        else:
            walk += _path(out, here, point)
            here = point
    if here != start or not walk:
        walk += _path(out, here, start, at_least_one=not walk)
    return walk


def _path(out: Mapping[Node, Sequence[Arc]], source: Node, target: Node,
          at_least_one: bool = False) -> list[Arc]:
    """A shortest path inside the component (breadth first); with `at_least_one`, a shortest
    non-empty one (a cycle when source is target)."""
    if source == target and not at_least_one:
        return []
    # The source is not marked as seen, so that a path back to it (a cycle) is found too.
    parent: dict[Node, Arc] = {}
    frontier: deque[Node] = deque([source])
    while frontier and target not in parent:
        node = frontier.popleft()
        for a in out[node]:
            if a.target not in parent:
                parent[a.target] = a
                frontier.append(a.target)
    if target not in parent:
        raise ValueError("no path inside the component: it is not strongly connected")
    path: list[Arc] = []
    node = target
    while True:
        arc = parent[node]
        path.append(arc)
        node = arc.source
        if node == source:
            break
    path.reverse()
    return path

"""Deciding the liveness properties on a machine's state graph, under every pinning of its
variation points, with a lasso (or a path, for the "at most once" parts) as the counterexample."""

from __future__ import annotations

import itertools
import time
from collections import deque
from collections.abc import Callable, Hashable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TypeVar, cast

from callgate.model.explorer import Edge, StateGraph, build_graph
from callgate.model.liveness.fair import Arc, Arena, Fairness, fair_component, fair_cycle
from callgate.model.liveness.properties import (
    PROPERTIES,
    Calls,
    Finishes,
    Guard,
    Holding,
    NotifiedOnce,
    Property,
    ServerEnds,
    machine_of,
)
from callgate.model.proofs.results import CheckResult, Counterexample, Result, TraceStep, fields_of
from callgate.model.transitions import Actor, Exact, Machine, ModelError, State, Value
from callgate.model.variations import BY_NAME as POINTS

Node = Hashable
N = TypeVar("N", bound=Hashable)
Pins = tuple[tuple[str, str], ...]
Tracked = tuple[State, int]  # a state and the marks seen since the current call began
KIND = "liveness"


def _source(e: Edge) -> State:
    return cast(State, e.source)


def _target(e: Edge) -> State:
    return cast(State, e.target)


# --- the graph, once per machine, and under one pinning -------------------------------------


@dataclass
class Explored:
    """A machine's unpinned reachable graph, prepared once for every pinning and property: the
    edges out of each state and the operations DEFINED there (whatever the pins: a pinning only
    narrows outcomes)."""

    machine: Machine
    graph: StateGraph
    states: list[State]
    out: dict[State, list[Edge]]
    enabled: dict[State, frozenset[str]]
    server_ops: frozenset[str]
    client_ops: frozenset[str]
    _where: dict[Guard, frozenset[State]] = field(default_factory=dict)
    _counts: dict[Holding, dict[State, int]] = field(default_factory=dict)

    def where(self, guard: Guard) -> frozenset[State]:
        """The reachable states the guard admits."""
        if guard not in self._where:
            where = [(self.machine.index(name), frozenset(values)) for name, values in guard]
            self._where[guard] = frozenset(s for s in self.states
                                           if all(s[i] in values for i, values in where))
        return self._where[guard]

    def count(self, holding: Holding) -> dict[State, int]:
        """The calls a holding counts in each reachable state."""
        if holding not in self._counts:
            i = self.machine.index(holding.field)
            values = frozenset(holding.values)
            self._counts[holding] = {s: (1 if s[i] in values else 0) if values else int(s[i])
                                     for s in self.states}
        return self._counts[holding]

    @classmethod
    def of(cls, machine: Machine, graph: StateGraph) -> Explored:
        states: list[State] = list(graph.graph.nodes)
        found: dict[State, set[str]] = {s: set() for s in states}
        for node, action in graph.transitions:
            found[cast(State, node)].add(action.op)
        return cls(machine, graph, states, {s: graph.out_edges(s) for s in states},
                   {s: frozenset(ops) for s, ops in found.items()},
                   frozenset(o.name for o in machine.operations if o.actor is Actor.SERVER),
                   frozenset(o.name for o in machine.operations if o.actor is Actor.CLIENT))


def pinnings(machine: Machine) -> list[Pins]:
    """Every complete choice of the variation points the machine's outcomes name, in the order
    `callgate.model.variations` lists their choices; [()] when they name none."""
    named = dict.fromkeys(p for row in machine.rows for o in row.outcomes for p, _ in o.when)
    unknown = [p for p in named if p not in POINTS]
    if unknown:
        raise ModelError(f"{machine.name}: outcomes name unknown variation points {unknown}")
    points = list(named)
    return [tuple(zip(points, choice, strict=True))
            for choice in itertools.product(*(POINTS[p].choices for p in points))]


def relevant_pinnings(explored: Explored, key: Callable[[Edge], Hashable]) -> list[Pins]:
    """The pinnings that can give different verdicts: a point whose every choice keeps the same
    steps (same source, `key`, and other conditions) is fixed to its first choice, since the
    analyses see nothing else of a step."""
    full = pinnings(explored.machine)
    if full == [()]:
        return full
    points = [p for p, _ in full[0]]
    seen: dict[str, dict[str, set[Hashable]]] = {
        p: {c: set() for c in POINTS[p].choices} for p in points}
    for state in explored.states:
        for e in explored.out[state]:
            when = e.allowed.when
            if not when:
                continue
            view = (state, key(e))
            for point, choice in when:
                seen[point][choice].add((view, tuple(w for w in when if w[0] != point)))
    keep = [p for p in points if len({frozenset(v) for v in seen[p].values()}) > 1]
    fixed = {p: POINTS[p].choices[0] for p in points if p not in keep}
    return [tuple((p, fixed.get(p) or dict(zip(keep, choice, strict=True))[p]) for p in points)
            for choice in itertools.product(*(POINTS[p].choices for p in keep))]


@dataclass
class Pinned:
    """The reachable part of a machine's state graph under one pinning: kept edges per state,
    a breadth-first tree for shortest prefixes, and the facts fairness is judged against."""

    explored: Explored
    pins: Pins
    initial: tuple[State, ...]
    out: dict[State, list[Edge]]
    parent: dict[State, Edge | None]
    moves: dict[State, frozenset[tuple[str, tuple[tuple[str, Value], ...]]]]

    @classmethod
    def of(cls, explored: Explored, pins: Pins) -> Pinned:
        chosen = dict(pins)
        initial = tuple(cast(State, s) for s in explored.graph.initial)
        parent: dict[State, Edge | None] = {s: None for s in initial}
        out: dict[State, list[Edge]] = {}
        admitted: dict[tuple[tuple[str, str], ...], bool] = {}
        frontier: deque[State] = deque(initial)
        while frontier:
            state = frontier.popleft()
            kept = []
            for e in explored.out[state]:
                when = e.allowed.when
                if when not in admitted:
                    admitted[when] = all(chosen.get(p, c) == c for p, c in when)
                if admitted[when]:
                    kept.append(e)
                    target = _target(e)
                    if target not in parent:
                        parent[target] = e
                        frontier.append(target)
            out[state] = kept
        moves = {s: frozenset((e.op, e.args) for e in kept if e.target != s)
                 for s, kept in out.items()}
        return cls(explored, pins, initial, out, parent, moves)

    @property
    def machine(self) -> Machine:
        return self.explored.machine

    @property
    def server_ops(self) -> frozenset[str]:
        return self.explored.server_ops

    @property
    def enabled(self) -> dict[State, frozenset[str]]:
        return self.explored.enabled

    def progresses(self, state: State, action: tuple[str, tuple[tuple[str, Value], ...]]) -> bool:
        """The action has an outcome that changes the state here (under this pinning)."""
        return action in self.moves[state]

    def prefix(self, state: State) -> list[Edge]:
        """A shortest path from an initial state to `state`."""
        path: list[Edge] = []
        edge = self.parent[state]
        while edge is not None:
            path.append(edge)
            edge = self.parent[_source(edge)]
        path.reverse()
        return path


# --- conditions on states and steps ---------------------------------------------------------


def _finishing(calls: Calls, in_flight: frozenset[State]) -> Callable[[Edge], bool]:
    not_final = {c.value for c in calls.not_final}

    def finishing(e: Edge) -> bool:
        code = e.allowed.code
        return (e.op in calls.finish and e.source in in_flight
                and not (isinstance(code, Exact) and code.code.value in not_final))
    return finishing


def _begins(in_flight: frozenset[State]) -> Callable[[Edge], bool]:
    return lambda e: e.source not in in_flight and e.target in in_flight


def _notification(prop: NotifiedOnce) -> Callable[[Edge], bool]:
    return lambda e: e.op == prop.op and e.allowed.code.admits(prop.notified)


def validate(prop: Property, machine: Machine) -> list[str]:
    """What a property names that the machine lacks (fields, values, operations)."""
    problems: list[str] = []
    fields = {f.name: f for f in machine.fields}
    ops = {o.name for o in machine.operations}

    def guard(what: str, g: Guard) -> None:
        for name, values in g:
            if name not in fields:
                problems.append(f"{what} names field {name!r}, which {machine.name} lacks")
            elif set(values) - set(fields[name].domain):
                problems.append(f"{what}: {name} has no values "
                                f"{sorted(map(str, set(values) - set(fields[name].domain)))}")

    def operations(what: str, names: Sequence[str]) -> None:
        problems.extend(f"{what} names operation {n!r}, which {machine.name} lacks"
                        for n in names if n not in ops)

    if isinstance(prop, ServerEnds):
        for h in prop.holds:
            if h.field not in fields:
                problems.append(f"a holding names field {h.field!r}, which {machine.name} lacks")
            elif h.values:
                guard("a holding", ((h.field, h.values),))
            elif not all(isinstance(v, int) for v in fields[h.field].domain):
                problems.append(f"holding {h.field!r} has no values and the field is not a count")
        return problems
    guard("in_flight", prop.calls.in_flight)
    operations("finish", prop.calls.finish)
    operations("abandon", prop.calls.abandon)
    if isinstance(prop, NotifiedOnce):
        guard("begun", prop.begun)
        guard("completed", prop.completed)
        guard("expects", prop.expects)
        operations("op", (prop.op,))
    return problems


# --- counterexamples ------------------------------------------------------------------------


@dataclass(frozen=True)
class Violation:
    """Why a property fails under one pinning: a path (its last step is the wrong one), a
    deadlock (the run stops where it must go on) or a lasso (the prefix, then a cycle repeated
    forever that the fairness conditions allow)."""

    kind: str
    what: str
    prefix: tuple[Edge, ...]
    cycle: tuple[Edge, ...] = ()
    notes: tuple[str, ...] = ()


def _steps(machine: Machine, edges: Sequence[Edge]) -> tuple[TraceStep, ...]:
    return tuple(TraceStep(e.slot, fields_of(machine, _source(e)), e.op, e.args, e.label, e.code,
                           e.rules, fields_of(machine, _target(e)))
                 for e in edges)


def _counterexample(prop: Property, view: Pinned, v: Violation) -> Counterexample:
    machine = view.machine
    edges = v.prefix or v.cycle
    start = _source(edges[0]) if edges else view.initial[0]
    return Counterexample(v.kind, prop.name, v.what,
                          ((machine.name, fields_of(machine, start)),),
                          _steps(machine, v.prefix), cycle=_steps(machine, v.cycle),
                          pins=view.pins)


# --- the analyses ---------------------------------------------------------------------------


def _monitor(view: Pinned, begins: Callable[[Edge], bool], mark: Callable[[Edge], bool]
             ) -> tuple[dict[Tracked, tuple[Tracked, Edge] | None], Violation | None]:
    """Breadth first over (state, marks seen in the current call), a new call resetting the
    count: the reachable pairs (with parents), or the shortest path to a second mark."""
    parent: dict[Tracked, tuple[Tracked, Edge] | None] = {(s, 0): None for s in view.initial}
    frontier: deque[Tracked] = deque(parent)
    while frontier:
        node = frontier.popleft()
        state, seen = node
        for e in view.out[state]:
            if begins(e):
                nxt = (_target(e), 0)
            elif mark(e):
                if seen:
                    return parent, Violation("path", "", (*_monitor_path(parent, node), e))
                nxt = (_target(e), 1)
            else:
                nxt = (_target(e), seen)
            if nxt not in parent:
                parent[nxt] = (node, e)
                frontier.append(nxt)
    return parent, None


def _monitor_path(parent: Mapping[Tracked, tuple[Tracked, Edge] | None], node: Tracked
                  ) -> list[Edge]:
    path: list[Edge] = []
    link = parent[node]
    while link is not None:
        node, edge = link
        path.append(edge)
        link = parent[node]
    path.reverse()
    return path


def _stays(view: Pinned, region: Sequence[N], arcs: Mapping[N, list[Arc]],
           state_of: Callable[[N], State], prefix: Callable[[N], list[Edge]],
           strong: frozenset[str], what: str) -> Violation | None:
    """A run that stays in `region` forever although it is fair: a deadlock (a state of the
    region where nothing is DEFINED) or a fair cycle (a lasso), each with the shortest prefix."""
    for node in region:
        if not view.out[state_of(node)]:
            return Violation("deadlock", f"{what}: no operation is DEFINED in this state, so "
                                         "the run stops here", tuple(prefix(node)))
    fairness = Fairness(view.server_ops, strong)
    arena = Arena(lambda n: view.enabled[state_of(cast(N, n))],
                  lambda n, action: view.progresses(state_of(cast(N, n)), action))
    component = fair_component(arcs, arena, fairness)
    if component is None:
        return None
    order: dict[Node, int] = {n: i for i, n in enumerate(region)}
    start = min(component.nodes, key=lambda n: order.get(n, len(order)))
    cycle = fair_cycle(component, arena, fairness, start)
    edges = tuple(cast(Edge, a.tag) for a in cycle)
    visited = [a.source for a in cycle]
    server = sorted({a.op for a in cycle} & view.server_ops)
    notes = ["fair: the test server takes every operation DEFINED throughout the cycle"
             + (f" (it takes {', '.join(server)})" if server else " (none is DEFINED throughout)")]
    for op in sorted(strong):
        if op in {a.op for a in cycle}:
            notes.append(f"{op} is taken on the cycle, yet nothing ends")
        elif not any(op in arena.enabled(n) for n in visited):
            notes.append(f"{op} is DEFINED nowhere on the cycle")
    return Violation("lasso", what, tuple(prefix(cast(N, start))), edges, tuple(notes))


def _arc(source: Hashable, target: Hashable, e: Edge) -> Arc:
    return Arc(source, target, e.op, e.args, e.source == e.target, e)


def _finishes(prop: Finishes, view: Pinned) -> Violation | None:
    calls = prop.calls
    in_flight = view.explored.where(calls.in_flight)
    finishing = _finishing(calls, in_flight)
    ended = ", ".join((*calls.finish, *calls.abandon))
    region = [s for s in view.parent if s in in_flight]
    for state in region:
        for e in view.out[state]:
            if e.target not in in_flight and not finishing(e) and e.op not in calls.abandon:
                return Violation("path", f"the call left flight by {e.op} -> {e.code} without "
                                         f"being finished or abandoned (only {ended} may end "
                                         "it): the call is lost", (*view.prefix(state), e))
    _, twice = _monitor(view, _begins(in_flight), finishing)
    if twice is not None:
        last = twice.prefix[-1]
        return Violation("path", f"a second {last.op} -> {last.code} finished the same call "
                                 "again: a call is finished once", twice.prefix)
    arcs = {s: [_arc(s, e.target, e) for e in view.out[s] if e.target in in_flight]
            for s in region}
    return _stays(view, region, arcs, _same, view.prefix, frozenset(calls.finish),
                  f"the call stays in flight forever although the client keeps trying "
                  f"{', '.join(calls.finish)} and the test server acts")


def _same(state: State) -> State:
    return state


def _notified_once(prop: NotifiedOnce, view: Pinned) -> Violation | None:
    explored = view.explored
    begun, completed = explored.where(prop.begun), explored.where(prop.completed)
    expects = explored.where(prop.expects)
    notification = _notification(prop)
    for state in view.parent:
        for e in view.out[state]:
            if not notification(e):
                continue
            if state not in begun:
                why = "with no call on the handle"
            elif state not in expects:
                why = "for a call whose notification type asks for none"
            elif state not in completed:
                why = "before the call completed"
            else:
                continue
            return Violation("path", f"a notification arrived {why}", (*view.prefix(state), e))
    begins = _begins(explored.where(prop.calls.in_flight))
    parent, twice = _monitor(view, begins, notification)
    if twice is not None:
        return Violation("path", "a second notification arrived for the same call",
                         twice.prefix)
    awaiting = begun & expects
    region = [n for n in parent if n[1] == 0 and n[0] in awaiting]
    members = set(region)
    arcs = {n: [_arc(n, (e.target, 0), e) for e in view.out[n[0]]
                if (e.target, 0) in members and not begins(e) and not notification(e)]
            for n in region}
    return _stays(view, region, arcs, lambda n: n[0], lambda n: _monitor_path(parent, n),
                  frozenset({prop.op}),
                  f"the call's notification never arrives although the client keeps waiting "
                  f"for it ({prop.op}) and the test server acts")


def _server_ends(prop: ServerEnds, view: Pinned) -> Violation | None:
    explored = view.explored
    counts = [(h, explored.count(h)) for h in prop.holds]
    total = {s: sum(count[s] for _, count in counts) for s in view.parent}
    for state in view.parent:
        for e in view.out[state]:
            if e.op in explored.client_ops and total[_target(e)] < total[state]:
                return Violation("path", f"the client's {e.op} -> {e.code} drops a call the "
                                         f"test server still holds ({total[state]} held before, "
                                         f"{total[_target(e)]} after): the model loses it",
                                 (*view.prefix(state), e))
    for holding, count in counts:
        region = [s for s in view.parent if count[s] > 0]
        members = set(region)
        arcs = {s: [_arc(s, e.target, e) for e in view.out[s] if e.target in members
                    and not (e.op in explored.server_ops and count[_target(e)] < count[s])]
                for s in region}
        found = _stays(view, region, arcs, _same, view.prefix, frozenset(),
                       f"the test server holds a call ({holding.field}) forever without ending it")
        if found is not None:
            return found
    return None


ANALYSES: dict[type, Callable[[Property, Pinned], Violation | None]] = {
    Finishes: _finishes,  # type: ignore[dict-item]
    NotifiedOnce: _notified_once,  # type: ignore[dict-item]
    ServerEnds: _server_ends,  # type: ignore[dict-item]
}


def _edge_key(props: Sequence[Property]) -> Callable[[Edge], Hashable]:
    """What the analyses of `props` see of a step: its action and target, and whether its code
    is a "not yet" one or a notification."""
    not_final = {c.value for p in props if not isinstance(p, ServerEnds) for c in p.calls.not_final}
    notified = [_notification(p) for p in props if isinstance(p, NotifiedOnce)]

    def key(e: Edge) -> Hashable:
        code = e.allowed.code
        pending = isinstance(code, Exact) and code.code.value in not_final
        return (e.op, e.args, e.target, pending, tuple(n(e) for n in notified))
    return key


# --- the checks -----------------------------------------------------------------------------


def _proved_detail(prop: Property, count: int) -> str:
    pins = (f"under each of {count} pinnings of the variation points that change a step the "
            "check sees" if count > 1 else "")
    if isinstance(prop, Finishes):
        what = ("every exit from flight is " + " or ".join((*prop.calls.finish,
                                                           *prop.calls.abandon))
                + ", at most one finish per call, and no fair run keeps a call in flight")
    elif isinstance(prop, NotifiedOnce):
        what = ("notifications only after completion and only when asked for, at most one "
                "per call, and no fair run keeps an expected one from arriving")
    else:
        what = ("no client step drops a held call, and no fair run keeps one held without "
                "the server ending it")
    return f"{what} {pins}".strip()


def check_liveness(machine: Machine, graph: StateGraph | None = None,
                   properties: Sequence[Property] | None = None) -> list[CheckResult]:
    """Every property about `machine` (default: those of `PROPERTIES` naming it), each a
    CheckResult: PROVED, or COUNTEREXAMPLE with a lasso or path, or ERROR when the property's
    conditions name what the machine lacks or its graph cannot be built."""
    props = [p for p in (PROPERTIES if properties is None else properties)
             if machine_of(p) == machine.name]
    if not props:
        return []
    start = time.perf_counter()
    results: dict[str, CheckResult] = {}
    live: list[Property] = []
    for prop in props:
        problems = validate(prop, machine)
        if problems:
            results[prop.name] = CheckResult(
                prop.name, KIND, Result.ERROR, 0.0,
                "cannot check: " + "; ".join(problems) + ". Update the property's conditions "
                "in model/liveness/properties.py to the table's fields", prop.rules)
        else:
            live.append(prop)
    try:
        graph = graph if graph is not None else build_graph(machine)
        explored = Explored.of(machine, graph)
        choices = relevant_pinnings(explored, _edge_key(live))
    except ModelError as exc:
        for prop in live:
            results[prop.name] = CheckResult(prop.name, KIND, Result.ERROR,
                                             time.perf_counter() - start,
                                             f"cannot check: {exc}", prop.rules)
        return [results[p.name] for p in props]
    spent: dict[str, float] = dict.fromkeys((p.name for p in live), 0.0)
    violations: dict[str, tuple[Pinned, Violation]] = {}
    for pins in choices:
        pending = [p for p in live if p.name not in violations]
        if not pending:
            break
        view = Pinned.of(explored, pins)
        for prop in pending:
            began = time.perf_counter()
            found = ANALYSES[type(prop)](prop, view)
            spent[prop.name] += time.perf_counter() - began
            if found is not None:
                violations[prop.name] = (view, found)
    shared = (time.perf_counter() - start - sum(spent.values())) / max(1, len(live))
    for prop in live:
        seconds = spent[prop.name] + shared
        if prop.name in violations:
            view, found = violations[prop.name]
            pinned = ", ".join(f"{p}={c}" for p, c in view.pins)
            detail = found.what + (f" (under {pinned})" if pinned else "")
            if found.notes:
                detail += "; " + "; ".join(found.notes)
            results[prop.name] = CheckResult(prop.name, KIND, Result.COUNTEREXAMPLE, seconds,
                                             detail, prop.rules,
                                             counterexample=_counterexample(prop, view, found))
        else:
            results[prop.name] = CheckResult(prop.name, KIND, Result.PROVED, seconds,
                                             _proved_detail(prop, len(choices)), prop.rules)
    return [results[p.name] for p in props]


def iter_lasso(cex: Counterexample) -> Iterator[str]:
    """A counterexample as lines for people: the pins, the start, the numbered steps (each with
    the rules its row cites and the fields it changed), then, for a lasso, the cycle that repeats
    forever, or where a deadlocked run stops."""
    if cex.pins:
        yield "under " + ", ".join(f"{p}={c}" for p, c in cex.pins)
    for slot, fields in cex.initial:
        yield f"start {slot}: " + " ".join(f"{k}={v}" for k, v in fields)
    for i, st in enumerate(cex.steps, 1):
        yield f"{i}. {_step_text(st)}"
    if cex.kind == "lasso":
        yield "then forever:"
        for i, st in enumerate(cex.cycle, 1):
            yield f"  {i}. {_step_text(st)}"
    elif cex.kind == "deadlock":
        yield "then nothing is DEFINED: the run stops with the call unfinished"


def _step_text(st: TraceStep) -> str:
    args = ", ".join(f"{k}={v}" for k, v in st.args)
    rules = f" {{{', '.join(st.rules)}}}" if st.rules else ""
    text = f"{st.slot}.{st.op}({args}) -> {st.code} [{st.outcome}]{rules}"
    before = dict(st.state)
    after = dict(st.next_state)
    if not after:  # a table counterexample: the step is where the table is wrong
        return text
    changed = " ".join(f"{k}={v}" for k, v in after.items() if before.get(k, v) != v
                       or k not in before)
    return text + (f"  => {changed}" if changed else "  (no change)")

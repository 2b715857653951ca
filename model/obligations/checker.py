"""The obligation checker: exhaustive enumeration of each machine's reachable states, with the
family's observer alongside, for every combination of the variation-point choices its tables name.

One graph per machine serves every pinning. Its nodes are (table state, observer record), walked
breadth-first over every allowed outcome of every operation; then one more walk, for all full
pinnings at once, gives the nodes each pinning C reaches through the outcomes C allows, with their
depth: each node carries the set of pinnings that reach it, as the bits of one integer, so the
walk passes each node once per depth at which some pinning first reaches it, not once per pinning.
A parent link (for the shortest trace) is found only for a counterexample's pinning, by a walk of
that pinning alone. A check is judged once per node, not once per pinning: it starts
with nothing pinned, and when it asks about a variation point (its pin, or a probe whose outcomes
depend on it, see `core.NeedsPin`) it is evaluated again once per choice of that point. Its
result under a choice counts where some pinning that agrees with the choice reaches the node. Only
the points a check actually touches are enumerated, which is what keeps this fast.

* `Always`: the predicate holds on every node, for every choice of the points it touches.
* `Whenever`: at every node and arguments where the premise holds, the definedness it asks, its
  conclusion on every allowed outcome, and each alternative it names on some allowed outcome.
* `Reach`: for each full pinning C, every node of C satisfying `start` reaches (backwards closure
  over C's moves, restricted as asked) a node of C satisfying `goal`. One closure serves every
  pinning: each node carries the pinnings (bits) under which it reaches a goal node, and a
  predecessor gains those of them that also allow the move and reach the predecessor.

An obligation whose premise is met nowhere is vacuous: it shows nothing, so it fails (DESIGN.md
principle 11). A gap in a table is not a crash: the move's probe carries the error, and an
obligation that needs the answer reports it as its counterexample.

A counterexample is the trace, under the pinning that reaches it soonest, from an initial state to
the state (and step) that breaks the obligation, with that pinning and the observer's record in
`what`.
"""

from __future__ import annotations

import itertools
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import partial
from types import MappingProxyType
from typing import Any, TypeVar

from callgate.model import variations
from callgate.model.obligations.core import (
    After,
    Always,
    NeedsPin,
    Now,
    Obligation,
    Observer,
    Probe,
    Reach,
    Tables,
    Whenever,
    compatible,
)
from callgate.model.proofs.results import (
    CheckResult,
    Conflict,
    Counterexample,
    Result,
    TraceStep,
    fields_of,
)
from callgate.model.transitions import Allowed, Args, Kind, Machine, State, Value

Node = tuple[State, int]  # table state, observer record id
NO_PINS: Mapping[str, str] = MappingProxyType({})
T = TypeVar("T")


@dataclass(frozen=True)
class Move:
    """One operation with its arguments at one node: the table's answer (every outcome, before
    any pinning), and the node each outcome leads to."""

    op: str
    args: Args
    argmap: Mapping[str, Value]
    probe: Probe
    targets: tuple[tuple[Allowed, Node], ...]
    points: tuple[str, ...] = ()  # the variation points its outcomes name


def variation_points(machine: Machine) -> dict[str, tuple[str, ...]]:
    """The variation points the machine's outcomes name, each with its documented choices."""
    named: dict[str, set[str]] = {}
    for row in machine.rows:
        for outcome in row.outcomes:
            for point, choice in outcome.when:
                named.setdefault(point, set()).add(choice)
    return {p: (variations.BY_NAME[p].choices if p in variations.BY_NAME else tuple(sorted(c)))
            for p, c in sorted(named.items())}


def pinnings(machine: Machine) -> list[dict[str, str]]:
    """Every full combination of the choices of the machine's variation points."""
    points = variation_points(machine)
    return [dict(zip(points, combo, strict=True)) for combo in itertools.product(*points.values())]


@dataclass
class Pinned:
    """The nodes reachable under one full pinning: breadth-first depth of each, and (computed
    when a counterexample needs it, see `parents`) the parent link of each."""

    pins: Mapping[str, str]
    depth: dict[Node, int] = field(default_factory=dict)
    parent: dict[Node, tuple[Node, Move, Allowed] | None] = field(default_factory=dict)


@dataclass
class Graph:
    """The reachable graph of one machine with every outcome of every pinning (the union), the
    observer's records, and for each full pinning the part of it that pinning reaches (`pinned`,
    and as bits per node in `reach`)."""

    machine: Machine
    observer: Observer[Any]
    points: dict[str, tuple[str, ...]]
    # Every point may be asked about; `Now.pin` looks in the pins first, so a pinned one never is.
    open_points: frozenset[str] = frozenset()
    records: list[Any] = field(default_factory=list)
    record_ids: dict[Any, int] = field(default_factory=dict)
    order: list[Node] = field(default_factory=list)
    moves: dict[Node, list[Move]] = field(default_factory=dict)
    by_op: dict[str, list[tuple[Node, Move]]] = field(default_factory=dict)
    pinned: list[Pinned] = field(default_factory=list)
    plain_nows: dict[Node, Now[Any]] = field(default_factory=dict)
    # From each node, one transition to each other node per operation and variation-point
    # condition (target, condition, the move and outcome): what reachability needs.
    forward: dict[Node, list[tuple[Node, tuple[tuple[str, str], ...], Move, Allowed]]] = field(
        default_factory=dict)
    # The pinnings as bits (bit i: `pinned[i]`): per node, the pinnings that reach it.
    reach: dict[Node, int] = field(default_factory=dict)
    agree_masks: dict[tuple[tuple[str, str], ...], int] = field(default_factory=dict)
    when_masks: dict[tuple[tuple[str, str], ...], int] = field(default_factory=dict)
    # Per (actors, without) of a `Reach`: each node's predecessors over the moves it allows,
    # with the pinnings that allow each (self-loops left out).
    preds: dict[tuple[object, ...], dict[Node, list[tuple[Node, int]]]] = field(
        default_factory=dict)
    # Each move's outcomes as a check reads them, per pins (the moves live as long as the graph).
    afters: dict[tuple[int, tuple[tuple[str, str], ...]], list[After[Any]]] = field(
        default_factory=dict)

    def record(self, value: Any) -> int:
        found = self.record_ids.get(value)
        if found is None:
            found = self.record_ids[value] = len(self.records)
            self.records.append(value)
        return found

    def plain(self, node: Node) -> Now[Any]:
        """The node with nothing pinned (memoised: most checks ask this first)."""
        found = self.plain_nows.get(node)
        if found is None:
            found = self.plain_nows[node] = self.now(node, NO_PINS)
        return found

    def now(self, node: Node, pins: Mapping[str, str]) -> Now[Any]:
        """The node as a check sees it under `pins`; the points they leave out are open."""
        if not pins and node in self.plain_nows:
            return self.plain_nows[node]
        return Now(self.machine, node[0], self.records[node[1]], pins, self.open_points)

    def agreeing(self, partial: Mapping[str, str]) -> int:
        """The full pinnings (as bits) that agree with `partial`."""
        key = tuple(sorted(partial.items()))
        found = self.agree_masks.get(key)
        if found is None:
            found = self.agree_masks[key] = sum(
                1 << i for i, p in enumerate(self.pinned)
                if all(p.pins[k] == v for k, v in key))
        return found

    def allowing(self, when: tuple[tuple[str, str], ...]) -> int:
        """The full pinnings (as bits) under which an outcome's condition holds."""
        found = self.when_masks.get(when)
        if found is None:
            found = self.when_masks[when] = sum(
                1 << i for i, p in enumerate(self.pinned) if compatible(when, p.pins))
        return found

    def reached(self, node: Node, partial: Mapping[str, str]) -> bool:
        """Some full pinning that agrees with `partial` reaches `node`."""
        return bool(self.reach.get(node, 0) & self.agreeing(partial))

    def shallowest(self, node: Node, mask: int) -> Pinned | None:
        """Of the pinnings in `mask` that reach `node`, the one reaching it soonest (the first
        of those, on a tie)."""
        best: Pinned | None = None
        bits = self.reach.get(node, 0) & mask
        while bits:
            low = bits & -bits
            pinned = self.pinned[low.bit_length() - 1]
            if best is None or pinned.depth[node] < best.depth[node]:
                best = pinned
            bits ^= low
        return best

    def where(self, node: Node, partial: Mapping[str, str]) -> list[Pinned]:
        """The full pinnings that agree with `partial` and reach `node`, shallowest first."""
        bits = self.reach.get(node, 0) & self.agreeing(partial)
        found = [p for i, p in enumerate(self.pinned) if bits >> i & 1]
        return sorted(found, key=lambda p: p.depth[node])


def explore(machine: Machine, observer: Observer[Any]) -> Graph:
    """Breadth-first walk over (state, record) from the initial states, with every outcome; then,
    for each full pinning, the nodes it reaches through the outcomes it allows."""
    points = variation_points(machine)
    graph = Graph(machine, observer, points, frozenset(points))
    tables = Tables.of(machine)
    # The observer's memo. Outcomes are keyed by identity: `step` memoises them, so the same
    # outcome is the same object (and hashing one in full is slow).
    memo: dict[tuple[int, str, Args, int], int] = {}
    calls: list[tuple[str, Args, Mapping[str, Value]]] = [
        (op.name, args, MappingProxyType(dict(args)))
        for op in machine.operations for args in op.all_args()]
    start = graph.record(observer.start)
    queued: set[Node] = set()
    queue: deque[Node] = deque()
    for state in machine.initial:
        if (state, start) not in queued:
            queued.add((state, start))
            queue.append((state, start))
    # Per table state, the table's answer to every call, and the moves that lead nowhere (shared
    # by every node of that state, whatever the observer's record).
    answers: dict[State, list[tuple[str, Args, Mapping[str, Value], Probe, Move | None,
                                    tuple[str, ...]]]] = {}
    while queue:
        node = queue.popleft()
        graph.order.append(node)
        state, record = node
        known = answers.get(state)
        if known is None:
            known = answers[state] = []
            for op, args, argmap in calls:
                answer = tables.probe(state, op, args, {})
                still = (Move(op, args, argmap, answer, ()) if answer.kind is not Kind.DEFINED
                         else None)
                named = tuple(sorted({p for a in answer.outcomes for p, _ in a.when}))
                known.append((op, args, argmap, answer, still, named))
        moves: list[Move] = []
        for op, args, argmap, answer, still, named in known:
            if still is not None:
                moves.append(still)
                continue
            targets: list[tuple[Allowed, Node]] = []
            for allowed in answer.outcomes:
                key = (record, op, args, id(allowed))
                after = memo.get(key)
                if after is None:
                    after = memo[key] = graph.record(
                        observer.after(graph.records[record], op, argmap, allowed))
                target = (allowed.next_state, after)
                targets.append((allowed, target))
                if target not in queued:
                    queued.add(target)
                    queue.append(target)
            moves.append(Move(op, args, argmap, answer, tuple(targets), named))
        graph.moves[node] = moves
    for node in graph.order:
        onward: dict[tuple[Node, tuple[tuple[str, str], ...], str], tuple[Move, Allowed]] = {}
        for move in graph.moves[node]:
            graph.by_op.setdefault(move.op, []).append((node, move))
            for allowed, target in move.targets:
                if target != node:
                    onward.setdefault((target, allowed.when, move.op), (move, allowed))
        graph.forward[node] = [(t, w, m, a) for (t, w, _), (m, a) in onward.items()]
    graph.pinned = [Pinned(MappingProxyType(pins)) for pins in pinnings(machine) or [{}]]
    _reach_all(graph)
    return graph


def _reach_all(graph: Graph) -> None:
    """The nodes each full pinning reaches, with their breadth-first depth: one walk for all
    pinnings at once, level by level, each node carrying the pinnings (bits) that reach it at
    that level. The same depths as a walk per pinning."""
    full = (1 << len(graph.pinned)) - 1
    seen = graph.reach
    frontier: dict[Node, int] = {}
    for state in graph.machine.initial:
        frontier[(state, 0)] = full
        seen[(state, 0)] = full
    level = 0
    pinned = graph.pinned
    allowing = graph.allowing
    while frontier:
        for node, bits in frontier.items():
            while bits:
                low = bits & -bits
                pinned[low.bit_length() - 1].depth[node] = level
                bits ^= low
        onward: dict[Node, int] = {}
        for node, bits in frontier.items():
            for target, when, _, _ in graph.forward[node]:
                new = bits & allowing(when) & ~seen.get(target, 0)
                if new:
                    onward[target] = onward.get(target, 0) | new
        for target, bits in onward.items():
            seen[target] = seen.get(target, 0) | bits
        frontier = onward
        level += 1


def parents(graph: Graph, pinned: Pinned) -> dict[Node, tuple[Node, Move, Allowed] | None]:
    """The breadth-first parent link of each node `pinned` reaches (computed once, when a
    counterexample's trace needs it)."""
    if pinned.parent:
        return pinned.parent
    parent = pinned.parent
    queue: deque[Node] = deque()
    for state in graph.machine.initial:
        node = (state, 0)
        if node not in parent:
            parent[node] = None
            queue.append(node)
    while queue:
        node = queue.popleft()
        for target, when, move, allowed in graph.forward[node]:
            if target not in parent and compatible(when, pinned.pins):
                parent[target] = (node, move, allowed)
                queue.append(target)
    return parent


# --- branching on open variation points -----------------------------------------------------


def branches(graph: Graph, pins: Mapping[str, str], body: Callable[[Mapping[str, str]], T]
             ) -> list[tuple[Mapping[str, str], T]]:
    """`body(pins)` for every choice of the open points it asks about: (pins used, result) leaves."""
    try:
        return [(pins, body(pins))]
    except NeedsPin as need:
        if need.point in pins or need.point not in graph.points:
            raise
        return [leaf for choice in graph.points[need.point]
                for leaf in branches(graph, {**pins, need.point: choice}, body)]


# --- judging one obligation -----------------------------------------------------------------


@dataclass(frozen=True)
class Breach:
    """Where an obligation fails: the node, the full pinning, and the step that breaks it."""

    node: Node
    under: Pinned
    what: str
    move: Move | None = None
    allowed: Allowed | None = None


@dataclass(frozen=True)
class Judged:
    """An obligation's premise was met somewhere (it is not vacuous), and its first breach."""

    applied: bool
    breach: Breach | None


def _first(found: Breach | None, node: Node, partial: Mapping[str, str], graph: Graph, what: str,
           move: Move | None = None, allowed: Allowed | None = None) -> Breach | None:
    """The shallower of `found` and a breach at `node` under some pinning agreeing with `partial`."""
    pinned = graph.shallowest(node, graph.agreeing(partial))
    if pinned is not None and (found is None or pinned.depth[node] < found.under.depth[found.node]):
        return Breach(node, pinned, what, move, allowed)
    return found


def _at(graph: Graph, predicate: Callable[[Now[Any]], bool], node: Node,
        pins: Mapping[str, str]) -> bool:
    return predicate(graph.now(node, pins))


def _judge_always(graph: Graph, check: Always) -> Judged:
    found: Breach | None = None
    for node in graph.order:
        for pins, ok in branches(graph, NO_PINS, partial(_at, graph, check.holds, node)):
            if not ok:
                found = _first(found, node, pins, graph, "the state predicate does not hold here")
    return Judged(any(graph.reached(n, {}) for n in graph.order[:1]), found)


def _step_once(graph: Graph, check: Whenever, node: Node, move: Move, premise_holds: bool,
               pins: Mapping[str, str]) -> tuple[bool, str, Allowed | None]:
    """(premise met, what broke or '', the outcome that broke it) under `pins`.

    `premise_holds`: the premise was already found to hold without asking about any pin.
    """
    now = graph.now(node, pins)
    if not premise_holds and not check.when(now, move.argmap):
        return False, "", None
    answer = move.probe
    if answer.kind is None:
        return True, f"no row answers: {answer.error}", None
    for point in move.points:  # which outcomes are allowed depends on these points
        if point not in pins:
            raise NeedsPin(point)
    outcomes = ([a for a in answer.outcomes if compatible(a.when, pins)] if move.points
                else list(answer.outcomes))
    defined = answer.kind is Kind.DEFINED and bool(outcomes)
    if check.never_defined:
        if defined:
            return True, "DEFINED, but the rule leaves no result to assert", outcomes[0]
        return True, "", None
    if check.defined and not defined:
        return True, (f"not DEFINED ({answer.kind.value})" if answer.kind is not Kind.DEFINED
                      else "DEFINED, but the pins exclude every outcome"), None
    if not defined:
        return False, "", None
    key = (id(move), tuple(pins.items()))
    afters = graph.afters.get(key)
    if afters is None:
        afters = graph.afters[key] = [After(a, graph.now(t, pins)) for a, t in move.targets
                                      if not move.points or compatible(a.when, pins)]
    if check.then is not None:
        for after in afters:
            if not check.then(now, move.argmap, after):
                return True, f"this outcome breaks it: {after.outcome.describe()}", after.outcome
    for i, wanted in enumerate(check.some, 1):
        if not any(wanted(now, move.argmap, after) for after in afters):
            allowed = "; ".join(a.describe() for a in outcomes)
            return True, (f"no allowed outcome is of the kind the rules also allow (alternative "
                          f"{i}); the table allows only: {allowed}"), None
    return True, "", None


def _judge_whenever(graph: Graph, check: Whenever) -> Judged:
    pairs = [pair for op in check.ops for pair in graph.by_op.get(op, ())]
    applied = False
    found: Breach | None = None
    for node, move in pairs:
        try:  # most premises read neither pins nor probes: settle those without branching
            if not check.when(graph.plain(node), move.argmap):
                continue
            holds = True
        except NeedsPin:
            holds = False
        for pins, (met, what, allowed) in branches(
                graph, NO_PINS, partial(_step_once, graph, check, node, move, holds)):
            if met and not applied:
                applied = graph.reached(node, pins)
            if what:
                found = _first(found, node, pins, graph, what, move, allowed)
    return Judged(applied or found is not None, found)


def _truth(graph: Graph, predicate: Callable[[Now[Any]], bool]) -> dict[Node, int]:
    """Per node that some pinning reaches, the pinnings (bits) under which the predicate holds
    there (for some choice of what it asks that agrees with the pinning); nodes where it holds
    under none are left out."""
    found: dict[Node, int] = {}
    for node in graph.order:
        reach = graph.reach.get(node, 0)
        bits = 0
        for pins, ok in branches(graph, NO_PINS, partial(_at, graph, predicate, node)):
            if ok:
                bits |= graph.agreeing(pins)
        if bits & reach:
            found[node] = bits & reach
    return found


def _predecessors(graph: Graph, check: Reach) -> dict[Node, list[tuple[Node, int]]]:
    """Each node's predecessors over the moves the check allows, with the pinnings (bits) that
    allow each such move (self-loops left out); built once per (actors, without)."""
    key = (check.actors, check.without)
    found = graph.preds.get(key)
    if found is None:
        found = graph.preds[key] = {}
        actor = {op.name: op.actor for op in graph.machine.operations}
        moving = {op: op not in check.without and (not check.actors or a in check.actors)
                  for op, a in actor.items()}
        for source in graph.order:
            reach = graph.reach.get(source, 0)
            for target, when, move, _ in graph.forward[source]:
                if moving[move.op]:
                    bits = graph.allowing(when) & reach
                    if bits:
                        found.setdefault(target, []).append((source, bits))
    return found


def _judge_reach(graph: Graph, check: Reach) -> Judged:
    """For all pinnings at once: the backward closure of the goal, each node carrying the
    pinnings (bits) under which it reaches a goal node; a start node missing a bit of its own
    is a breach under that pinning (the shallowest such node, the first pinning on a tie)."""
    starts = _truth(graph, check.start)
    if not starts:
        return Judged(False, None)
    good = dict(_truth(graph, check.goal))
    preds = _predecessors(graph, check)
    work = deque(good)
    while work:
        target = work.popleft()
        bits = good[target]
        for source, allowed in preds.get(target, ()):
            new = bits & allowed & ~good.get(source, 0)
            if new:
                good[source] = good.get(source, 0) | new
                work.append(source)
    # Per pinning, its shallowest breach (the first in exploration order on a tie).
    best: dict[int, Node] = {}
    for node, bits in starts.items():
        bad = bits & ~good.get(node, 0)
        while bad:
            low = bad & -bad
            i = low.bit_length() - 1
            depth = graph.pinned[i].depth
            if i not in best or depth[node] < depth[best[i]]:
                best[i] = node
            bad ^= low
    found: Breach | None = None
    for i in sorted(best):
        pinned, node = graph.pinned[i], best[i]
        if found is None or pinned.depth[node] < found.under.depth[found.node]:
            who = "/".join(a.value for a in check.actors) if check.actors else "anyone"
            avoiding = f", without {', '.join(check.without)}" if check.without else ""
            found = Breach(node, pinned, f"no state satisfying the goal is reachable from "
                                         f"here (moves by {who}{avoiding})")
    return Judged(True, found)


def judge(graph: Graph, obligation: Obligation) -> Judged:
    """Whether the premise of one obligation is met somewhere, and its first breach."""
    check = obligation.check
    if isinstance(check, Always):
        return _judge_always(graph, check)
    if isinstance(check, Whenever):
        return _judge_whenever(graph, check)
    if isinstance(check, Reach):
        return _judge_reach(graph, check)
    raise TypeError(f"obligation {obligation.id}: unknown check {check!r}")


# --- counterexamples ------------------------------------------------------------------------


def _trace_step(machine: Machine, source: Node, move: Move, allowed: Allowed) -> TraceStep:
    return TraceStep(machine.name, fields_of(machine, source[0]), move.op, move.args,
                     allowed.label, str(allowed.code), allowed.rules,
                     fields_of(machine, allowed.next_state))


def _last_step(machine: Machine, breach: Breach, move: Move) -> TraceStep:
    if breach.allowed is not None:
        return _trace_step(machine, breach.node, move, breach.allowed)
    kind = move.probe.kind.value if move.probe.kind is not None else "gap"
    rules = move.probe.outcomes[0].rules if move.probe.outcomes else ()
    return TraceStep(machine.name, fields_of(machine, breach.node[0]), move.op, move.args,
                     breach.what, kind, rules, fields_of(machine, breach.node[0]))


def counterexample(graph: Graph, obligation: Obligation, breach: Breach) -> Counterexample:
    """The shortest trace to the breach, as data; `what` names the pins and the observer's record."""
    machine = graph.machine
    path: list[tuple[Node, Move, Allowed]] = []
    node = breach.node
    links = parents(graph, breach.under)
    while (link := links[node]) is not None:
        path.append(link)
        node = link[0]
    path.reverse()
    steps = [_trace_step(machine, source, move, allowed) for source, move, allowed in path]
    if breach.move is not None:
        steps.append(_last_step(machine, breach, breach.move))
    pins = ", ".join(f"{p}={c}" for p, c in breach.under.pins.items()) or "none"
    what = (f"broken: {breach.what}; in state {machine.describe(breach.node[0])}; seen "
            f"{graph.records[breach.node[1]]}; pins {pins}")
    return Counterexample("trace", f"{obligation.id} ({', '.join(obligation.rules)})", what,
                          ((machine.name, fields_of(machine, node[0])),), tuple(steps))


# --- the results ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Verdict:
    """One obligation over every pinning of its machine."""

    obligation: Obligation
    applied: bool
    counterexample: Counterexample | None
    seconds: float
    pinnings: int
    problem: str = ""

    @property
    def holds(self) -> bool:
        return self.applied and self.counterexample is None and not self.problem


def verdicts(obligations: Iterable[Obligation], machines: Mapping[str, Machine],
             observers: Mapping[str, Observer[Any]]) -> list[Verdict]:
    """Judge each obligation on its machine's graph. A verdict's seconds are its own judging plus
    an even share of its machine's exploration."""
    by_machine: dict[str, list[Obligation]] = {}
    for obligation in obligations:
        by_machine.setdefault(obligation.machine, []).append(obligation)
    results: dict[str, Verdict] = {}
    order: list[str] = []
    try:
        for name, group in by_machine.items():
            order += [o.id for o in group]
            machine, observer = machines.get(name), observers.get(name)
            if machine is None or observer is None:
                missing = "machine" if machine is None else "observer"
                for o in group:
                    results[o.id] = Verdict(o, False, None, 0.0, 0, f"no {missing} named {name!r}")
                continue
            start = time.perf_counter()
            graph = explore(machine, observer)
            share = (time.perf_counter() - start) / len(group)
            count = len(pinnings(machine))
            for o in group:
                start = time.perf_counter()
                judged = judge(graph, o)
                found = (counterexample(graph, o, judged.breach) if judged.breach is not None
                         else None)
                results[o.id] = Verdict(o, judged.applied, found,
                                        time.perf_counter() - start + share, count)
    finally:
        Tables.forget()
    return [results[i] for i in order]


def to_check_result(verdict: Verdict, known: Mapping[str, str]) -> CheckResult:
    """A verdict in the shape of the other checks of `callgate model check`.

    A failing obligation listed in `known` (a finding whose table fix is pending) is an expected
    CONFLICT between the two writings, with its counterexample; a listed one that holds now says
    so in its detail (the list is stale).
    """
    o = verdict.obligation
    name = f"obligation[{o.id}]"
    detail = f"{o.kind.value}: {o.text}"
    if verdict.problem:
        return CheckResult(name, "obligation", Result.COUNTEREXAMPLE, verdict.seconds,
                           f"{detail} -- cannot be checked: {verdict.problem}", o.rules)
    if not verdict.applied:
        return CheckResult(name, "obligation", Result.COUNTEREXAMPLE, verdict.seconds,
                           f"{detail} -- vacuous: its premise holds in no reachable state under "
                           f"any of {verdict.pinnings} pinnings, so it shows nothing", o.rules)
    if verdict.counterexample is None:
        stale = (f" -- listed as a known finding ({known[o.id]}) but it holds now: remove it "
                 f"from KNOWN_FINDINGS" if o.id in known else "")
        return CheckResult(name, "obligation", Result.PROVED, verdict.seconds,
                           f"{detail} (over {verdict.pinnings} pinnings){stale}", o.rules)
    if o.id in known:
        conflict = Conflict((o.id, f"table {o.machine}"), o.rules, (), "known finding", True,
                            known[o.id])
        return CheckResult(name, "obligation", Result.CONFLICT, verdict.seconds,
                           f"{detail} -- known finding: {known[o.id]}", o.rules,
                           counterexample=verdict.counterexample, conflict=conflict)
    return CheckResult(name, "obligation", Result.COUNTEREXAMPLE, verdict.seconds,
                       f"{detail} -- the table disagrees: {verdict.counterexample.what}", o.rules,
                       counterexample=verdict.counterexample)


def coverage_result(problems: list[str]) -> CheckResult:
    """The catalogue check: every in-scope MUST rule has an obligation or a reason (at most ten)."""
    if problems:
        return CheckResult("obligation_coverage", "obligation", Result.COUNTEREXAMPLE, 0.0,
                           "; ".join(problems))
    return CheckResult("obligation_coverage", "obligation", Result.PROVED, 0.0,
                       "every in-scope MUST rule has an obligation or a listed reason")

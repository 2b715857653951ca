"""Directed cases that adapt: a coverage walk over a machine's graph, re-planned after every step.

A planned tour assumes which allowed outcome each step takes; an implementation may choose
another (a MAY outcome, or a reply still on its way). The walk therefore plans one step at a
time from the state the model is actually in: take a transition not yet covered here, or walk
the shortest way to the nearest state that has one. Each walk segment is one case (a fresh
session from an initial state); segments continue until every transition reachable with the
implementation's choices is covered, or no segment makes progress.
"""

from __future__ import annotations

import heapq
import time
from collections import deque
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field

from callgate.conformance.cases.sequences import SLOT, MachinePlan, config_of
from callgate.conformance.judge.execution import StepTimeout
from callgate.conformance.judge.perform import blocks
from callgate.conformance.judge.runner import (
    Case,
    CaseRunner,
    LiveCase,
    harness_evidence,
    transition_key,
)
from callgate.conformance.protocol.adapter import AdapterFault, SlotSpec
from callgate.conformance.results import CaseResult, Verdict
from callgate.model.transitions import Action, Kind, State, step


@dataclass
class WalkBudget:
    """Limits of one machine's walk."""

    case_steps: int = 600
    cases: int = 200


@dataclass
class _Graph:
    """Plain-dict adjacency of a machine graph: what the walk reads at every step."""

    defined: dict[State, list[Action]] = field(default_factory=dict)
    # Each move carries a small integer naming its (state, action) pair, so that the search,
    # which runs often, looks learned outcomes up by int instead of hashing actions.
    moves: dict[State, list[tuple[Action, State, int]]] = field(default_factory=dict)
    pair: dict[tuple[State, Action], int] = field(default_factory=dict)
    # The same moves over states numbered 0..n-1 (`ids`, `states`), for the nearest search
    # (`_Distances`): `out[s]` lists (target, pair number, action) in `moves`' order, `into[t]`
    # the (source, pair number) of each move into t, `ends[n]` the targets of pair n and
    # `origin[n]` its source.
    ids: dict[State, int] = field(default_factory=dict)
    states: list[State] = field(default_factory=list)
    out: list[list[tuple[int, int, Action]]] = field(default_factory=list)
    into: list[list[tuple[int, int]]] = field(default_factory=list)
    ends: list[list[int]] = field(default_factory=list)
    origin: list[int] = field(default_factory=list)

    def number(self, state: State) -> int:
        """The state's number, numbering it if it is new (a state no move touches)."""
        known = self.ids.get(state)
        if known is None:
            known = self.ids[state] = len(self.states)
            self.states.append(state)
            self.out.append([])
            self.into.append([])
        return known


_INDEXES: dict[int, tuple[MachinePlan, _Graph]] = {}


def _index(plan: MachinePlan) -> _Graph:
    """The plan's graph as the walk reads it, built once per plan (a mutant run walks the same
    plans again and again)."""
    known = _INDEXES.get(id(plan))
    if known is not None and known[0] is plan:
        return known[1]
    g = _build_index(plan)
    _INDEXES[id(plan)] = (plan, g)
    return g


def _build_index(plan: MachinePlan) -> _Graph:
    g = _Graph()
    for node, action in sorted(plan.graph.transitions, key=repr):
        g.defined.setdefault(node, []).append(Action(SLOT, action.op, action.args))  # type: ignore[arg-type]
    seen: set[tuple[State, Action, State]] = set()
    for edge in plan.graph.edges():
        source: State = edge.source  # type: ignore[assignment]
        target: State = edge.target  # type: ignore[assignment]
        action = Action(SLOT, edge.op, edge.args)
        if (source, action, target) not in seen:
            seen.add((source, action, target))
            number = g.pair.setdefault((source, action), len(g.pair))
            g.moves.setdefault(source, []).append((action, target, number))
    _number_moves(g, plan.initial)
    return g


def _number_moves(g: _Graph, initial: Iterable[State]) -> None:
    """Fill in the numbered form of `g.moves` (the initial states numbered first)."""
    for node in initial:
        g.number(node)
    g.ends = [[] for _ in g.pair]
    g.origin = [0] * len(g.pair)
    for source, moves in g.moves.items():
        here = g.number(source)
        for action, target, number in moves:
            there = g.number(target)
            g.out[here].append((there, number, action))
            g.into[there].append((here, number))
            g.origin[number] = here
            g.ends[number].append(there)


Leg = tuple[State, Action, State]  # one planned step: from, action, expected next state


_KEYS: dict[int, tuple[MachinePlan, dict[tuple[State, Action], str]]] = {}


def _keys(plan: MachinePlan) -> dict[tuple[State, Action], str]:
    """Each (state, action) pair of the plan's graph with its coverage key, built once per plan
    (every part of a walk, and every walk of a mutant run, reads the same)."""
    known = _KEYS.get(id(plan))
    if known is not None and known[0] is plan:
        return known[1]
    name = plan.machine.name
    key_of = {(s, a): transition_key(name, s, a) for s, acts in _index(plan).defined.items()
              for a in acts}
    _KEYS[id(plan)] = (plan, key_of)
    return key_of


def _order(plan: MachinePlan) -> list[State]:
    """The machine's states in breadth-first order from its initial states (moves in the
    index's order), then those no walk reaches, by repr."""
    g = _index(plan)
    order: dict[State, None] = dict.fromkeys(plan.initial)
    queue = deque(order)
    while queue:
        node = queue.popleft()
        for _, nxt, _ in g.moves.get(node, ()):
            if nxt not in order:
                order[nxt] = None
                queue.append(nxt)
    for node in sorted(g.defined, key=repr):
        order.setdefault(node, None)
    return list(order)


def _preorder(plan: MachinePlan) -> list[State]:
    """The machine's states in depth-first preorder from its initial states (moves in the
    index's order), then those no walk reaches, by repr."""
    g = _index(plan)
    order: dict[State, None] = {}
    for root in plan.initial:
        stack = [root]
        while stack:
            node = stack.pop()
            if node in order:
                continue
            order[node] = None
            stack.extend(nxt for _, nxt, _ in reversed(g.moves.get(node, ())) if nxt not in order)
    for node in sorted(g.defined, key=repr):
        order.setdefault(node, None)
    return list(order)


def model_legs(plan: MachinePlan) -> list[Leg]:
    """Every move of the machine's graph as a leg (from, action, next state): each allowed
    outcome of each transition, sources in breadth-first order. What state identification
    starts from when the walk ran in parts, in place of the legs one whole walk took (an
    outcome the implementation never takes is a leg its identification cannot follow: that
    session is counted as left by an allowed choice, not as a failure)."""
    g = _index(plan)
    return [(s, action, target) for s in _order(plan) for action, target, _ in g.moves.get(s, ())]


def walk_parts(plan: MachinePlan, count: int) -> list[set[str]]:
    """The machine's transitions cut into `count` parts of about equal size, each of which its
    own walk covers (so a large machine's walk can run in several processes at once).

    Each part is a run of whole states taken in depth-first preorder from the initial states,
    with every transition of a state in the same part: a run of a preorder is a few subtrees
    of the search, states that lie close together, so a part's walk seldom travels far (in
    breadth-first order a part is a layer of states at one depth spread over the graph; the
    parts of `rpc_call` then took 53,600 steps in all, in preorder 48,400, the whole walk
    43,200). The cut depends on the plan alone: the same parts
    in every process and shard, whatever the implementation does."""
    key_of = _keys(plan)
    g = _index(plan)
    keys = [[key_of[(s, a)] for a in g.defined.get(s, ())] for s in _preorder(plan)]
    total = sum(len(each) for each in keys)
    parts: list[set[str]] = [set() for _ in range(max(1, count))]
    done = 0
    for each in keys:
        # The part the state's first transition falls in, by its place in the whole order.
        parts[min(len(parts) - 1, done * len(parts) // max(1, total))].update(each)
        done += len(each)
    return parts


_FAR = 1 << 30  # the distance of a state from which no pending state can be reached


class _Distances:
    """How far each state is from the nearest state with pending transitions, over the moves the
    walk may plan, kept up to date as the walk goes on; and from it the walk's route.

    A move may be planned unless it is `broken` (the implementation already failed there: a
    failure is reported once, and the walk goes on to what can still be reached another way),
    or its (state, action) pair has a `learned` outcome and this move leads elsewhere (the walk
    plans with what the implementation does). The distances are found once by a breadth-first
    search backwards from every pending state, then repaired where a change can touch them
    (Ramalingam and Reps' repair for unit lengths): a state that stops being pending or a move
    that stops being plannable can only lengthen the distances of the states that relied on it;
    a learned outcome that replaces another makes one move plannable again, which can only
    shorten some. Late in a walk, with few transitions left, a search forwards from the current
    state visited most of the graph every time the walk planned again; a repair visits only the
    states whose distance changed.

    `route` then steps, from the start, along the first move (in the graph's order) to a state
    one step nearer: the same route as the plain breadth-first search forwards (its parent
    links, taking moves in the same order, give the shortest route that comes first in that
    order, as this does).
    """

    def __init__(self, g: _Graph, pending: Iterable[State],
                 learned: Mapping[int, State] | None = None,
                 broken: Iterable[int] = ()) -> None:
        self.g = g
        self.pending = bytearray(len(g.states))
        self.learned: dict[int, int] = {}  # pair number: the number of the state it led to
        self.broken: set[int] = set(broken)
        for number, target in (learned or {}).items():
            self.learned[number] = g.ids.get(target, -1)
        sources = [g.ids[state] for state in pending if state in g.ids]
        for node in sources:
            self.pending[node] = 1
        self.dist = [_FAR] * len(g.states)
        for node in sources:
            self.dist[node] = 0
        queue = deque(sources)
        dist, into, usable = self.dist, g.into, self._usable
        while queue:
            node = queue.popleft()
            further = dist[node] + 1
            for source, number in into[node]:
                if dist[source] > further and usable(number, node):
                    dist[source] = further
                    queue.append(source)

    def _usable(self, number: int, target: int) -> bool:
        """The move of pair `number` to `target` may be planned."""
        if number in self.broken:
            return False
        seen = self.learned.get(number)
        return seen is None or seen == target

    def reachable(self, state: State) -> bool:
        node = self.g.ids.get(state)
        return node is not None and self.dist[node] < _FAR

    def route(self, state: State) -> list[Leg] | None:
        """A shortest walk from `state` to a state with pending transitions, as legs ([] if
        `state` has some, None if none is reachable)."""
        node = self.g.ids.get(state)
        if node is None:
            return None
        dist, out, states, usable = self.dist, self.g.out, self.g.states, self._usable
        if dist[node] >= _FAR:
            return None
        legs: list[Leg] = []
        while dist[node]:
            want = dist[node] - 1
            for target, number, action in out[node]:
                if dist[target] == want and usable(number, target):
                    legs.append((states[node], action, states[target]))
                    node = target
                    break
            else:  # pragma: no cover - the distances promise such a move
                raise AssertionError(f"no move nearer from {states[node]}")
        return legs

    def settle(self, state: State) -> None:
        """`state` has no pending transitions any more."""
        node = self.g.ids.get(state)
        if node is not None and self.pending[node]:
            self.pending[node] = 0
            self._lengthen([node])

    def give_up(self, number: int) -> None:
        """The moves of pair `number` are never planned again."""
        if number in self.broken or number >= len(self.g.ends):
            self.broken.add(number)
            return
        self.broken.add(number)
        self._lengthen([self.g.origin[number]])

    def learn(self, number: int, target: State) -> None:
        """The implementation's outcome of pair `number` led to `target`."""
        there = self.g.ids.get(target, -1)
        before = self.learned.get(number)
        if before == there or number >= len(self.g.ends):
            self.learned[number] = there
            return
        if number in self.broken:
            self.learned[number] = there
            return
        source = self.g.origin[number]
        # First no move of the pair is plannable (distances can only grow), then the one to
        # `target` is, which an earlier outcome may have ruled out (they can only shrink).
        self.learned[number] = -2
        self._lengthen([source])
        self.learned[number] = there
        if there >= 0:
            self._shorten(source, there)

    def _lengthen(self, suspects: list[int]) -> None:
        """Repair after moves stopped being plannable or states stopped being pending (the
        states in `suspects` may have lost what their distance relied on)."""
        dist, pending, out, into, usable = (self.dist, self.pending, self.g.out, self.g.into,
                                            self._usable)
        # Which states lose their distance: in order of distance, a state keeps its own while
        # it is pending or a plannable move leads to a state one nearer that keeps its own.
        heap = [(dist[node], node) for node in suspects if dist[node] < _FAR]
        heapq.heapify(heap)
        lost: set[int] = set()
        while heap:
            d, node = heapq.heappop(heap)
            if node in lost or pending[node]:
                continue
            if d and any(dist[target] == d - 1 and target not in lost and usable(number, target)
                         for target, number, _ in out[node]):
                continue
            lost.add(node)
            for source, number in into[node]:
                if dist[source] == d + 1 and source not in lost and usable(number, node):
                    heapq.heappush(heap, (d + 1, source))
        if not lost:
            return
        for node in lost:
            dist[node] = _FAR
        # Their new distances: from the states that kept theirs, nearest first.
        heap = []
        for node in lost:
            best = min((dist[target] + 1 for target, number, _ in out[node]
                        if dist[target] < _FAR and usable(number, target)), default=_FAR)
            if best < _FAR:
                dist[node] = best
                heap.append((best, node))
        heapq.heapify(heap)
        self._spread(heap)

    def _shorten(self, source: int, target: int) -> None:
        """Repair after the move from `source` to `target` became plannable."""
        if self.dist[target] + 1 < self.dist[source]:
            self.dist[source] = self.dist[target] + 1
            self._spread([(self.dist[source], source)])

    def _spread(self, heap: list[tuple[int, int]]) -> None:
        """Shorten, nearest first, the distances of the states with a move into those on
        `heap` (a heap of (distance, state) whose distances just went down)."""
        dist, into, usable = self.dist, self.g.into, self._usable
        while heap:
            d, node = heapq.heappop(heap)
            if d != dist[node]:
                continue
            for source, number in into[node]:
                if d + 1 < dist[source] and usable(number, node):
                    dist[source] = d + 1
                    heapq.heappush(heap, (d + 1, source))


def _nearest(g: _Graph, start: State, pending: Mapping[State, set[Action]],
             learned: dict[int, State], broken: frozenset[int] | set[int] = frozenset(),
             ) -> list[Leg] | None:
    """A shortest walk from `start` to a state with pending transitions, as legs (None if none
    is reachable): the route `_Distances` gives, found afresh (the walk keeps its distances
    and repairs them instead)."""
    return _Distances(g, [s for s, left in pending.items() if left], learned, broken).route(start)


class StateCheck:
    """Checks that a transition really reached the state the model says (state verification).

    A tour that takes every transition once sees a wrong return code at once, but not a wrong
    next state: the implementation may skip an auto-reset or forget a cancel, and the walk's
    next steps from there need not tell. So after a transition is taken for the first time,
    the walk takes one cheap *observer* in the new state: an action that leaves the state
    unchanged and whose allowed outcomes tell the new state apart from the likeliest wrong ones
    (the state the step came from, and the states that differ from the new one in one field);
    for a step that should change nothing, the same action again. Waits that cost time (finite
    timeouts, notifications) are not used as observers.
    """

    def __init__(self, plan: MachinePlan, pins: Mapping[str, str]) -> None:
        self.machine = plan.machine
        self.pins = pins
        self._loops: dict[State, list[Action]] = {}
        targets: dict[tuple[State, Action], set[State]] = {}
        for edge in plan.graph.edges():
            action = Action(SLOT, edge.op, edge.args)
            targets.setdefault((edge.source, action), set()).add(edge.target)  # type: ignore[arg-type]
        # Only the loops are put in order (the same order as sorting every edge and keeping the
        # loops): repr of every edge of a large plan cost more than the rest of the check.
        loops = [item for item in targets.items()
                 if item[1] == {item[0][0]} and self._cheap(item[0][1])]
        for (source, action), _ in sorted(loops, key=repr):
            self._loops.setdefault(source, []).append(action)
        self._states = sorted({s for s, _ in targets}, key=repr)
        self._memo: dict[tuple[State, Action, State], Action | None] = {}
        # Caches: the walk asks for observers tens of thousands of times in a run.
        self._by_ends: dict[tuple[State, State], Action | None] = {}
        self._near: dict[State, list[State]] = {}
        self._around: dict[tuple[int, State], list[tuple[int, State]]] | None = None
        self._outcomes: dict[tuple[State, Action], tuple[str, ...] | None] = {}
        self._scores: dict[State, tuple[frozenset[State], list[int]]] = {}

    @staticmethod
    def of(plan: MachinePlan, pins: Mapping[str, str]) -> StateCheck:
        """The state check of `plan` under `pins`, built once (its observers are chosen once per
        transition and reused by every later walk of the same plan, as a mutant run's are)."""
        key = (id(plan), tuple(sorted(pins.items())))
        known = _CHECKS.get(key)
        if known is not None and known[0] is plan:
            return known[1]
        check = StateCheck(plan, pins)
        _CHECKS[key] = (plan, check)
        return check

    @staticmethod
    def _cheap(action: Action) -> bool:
        return action.op != "wait_notification" and not any(
            name == "timeout" and value != "zero" for name, value in action.args)

    def _expected(self, state: State, action: Action) -> tuple[str, ...] | None:
        key = (state, action)
        if key not in self._outcomes:
            result = step(self.machine, state, action.op, action.args, self.pins)
            self._outcomes[key] = (
                None if result.kind is not Kind.DEFINED or not result.allowed
                else tuple(sorted(a.describe() for a in result.allowed)))
        return self._outcomes[key]

    def _neighbours(self, target: State) -> list[State]:
        """The states that differ from `target` in exactly one field (in `_states`' order)."""
        if target not in self._near:
            if self._around is None:
                # Each state under each of its fields blanked out: two states differ in that
                # field alone exactly when they share that blanked key.
                self._around = {}
                for number, state in enumerate(self._states):
                    for i in range(len(state)):
                        self._around.setdefault((i, state[:i] + state[i + 1:]), []).append(
                            (number, state))
            found = [each for i in range(len(target))
                     for each in self._around.get((i, target[:i] + target[i + 1:]), ())
                     if each[1][i] != target[i]]
            self._near[target] = [s for _, s in sorted(found, key=lambda each: each[0])]
        return self._near[target]

    def observer(self, source: State, action: Action, target: State) -> Action | None:
        key = (source, action, target)
        if key not in self._memo:
            loops = self._loops.get(target, [])
            if source == target:
                found = action if action in loops else None
            elif (source, target) in self._by_ends:
                found = self._by_ends[(source, target)]  # the choice does not depend on action
            else:
                # The wrong states are `source` and the neighbours of `target`: how many
                # neighbours each candidate tells apart is counted once per target.
                near, told = self._told(target)
                found, best = None, 0
                for candidate, score in zip(loops, told, strict=True):
                    if source not in near and self._tells(target, source, candidate):
                        score += 1
                    if score > best:
                        found, best = candidate, score
                self._by_ends[(source, target)] = found
            self._memo[key] = found
        return self._memo[key]

    def _tells(self, target: State, wrong: State, candidate: Action) -> bool:
        """`candidate`'s allowed outcomes in `wrong` differ from those in `target`."""
        here = self._expected(target, candidate)
        there = self._expected(wrong, candidate) if here is not None else None
        return there is not None and there != here

    def _told(self, target: State) -> tuple[frozenset[State], list[int]]:
        """The neighbours of `target`, and for each of its loops in order, how many of them
        it tells apart from `target`."""
        known = self._scores.get(target)
        if known is None:
            near = self._neighbours(target)
            known = self._scores[target] = (frozenset(near), [
                sum(self._tells(target, w, candidate) for w in near)
                for candidate in self._loops.get(target, [])])
        return known

    def verify(self, live: LiveCase, source: State, action: Action) -> bool:
        """Take the observer after `action` from `source`; False if the case is over."""
        states = live.trackers[SLOT].states
        if len(states) != 1:
            return True
        (target,) = states
        check = self.observer(source, action, target)
        if check is None or live.kind(check) is not Kind.DEFINED or not live.offered(check):
            return True
        return live.step(check)


_CHECKS: dict[tuple[int, tuple[tuple[str, str], ...]], tuple[MachinePlan, StateCheck]] = {}


def _sendable(live: LiveCase, g: _Graph, state: State, action: Action,
              broken: set[int]) -> bool:
    """The walk may take `action` now: the model has it DEFINED and offered, and if it may wait
    for ever, the looks that establish it returns are not ones the implementation already
    failed (a failure is reported once)."""
    if live.kind(action) is not Kind.DEFINED or not live.offered(action):
        return False
    if not blocks(live.machines[SLOT], action):
        return True
    looks = live.lookout(action) or []
    return not any(g.pair.get((state, look)) in broken for look in looks)


def _failed_step(live: LiveCase) -> tuple[State, Action] | None:
    """The state and action of the step a segment ended on. A step the model did not accept
    leaves its tracker where the step started, so that is the step's state."""
    states = live.trackers[SLOT].states
    if not live.trace or live.trace[-1].ok or len(states) != 1:
        return None
    last = live.trace[-1]
    (state,) = states
    return state, Action(SLOT, last.op, tuple(last.args.items()))


def walk_machine(runner: CaseRunner, plan: MachinePlan, pending: set[str],
                 budget: WalkBudget | None = None, taken: list[Leg] | None = None,
                 label: str = "") -> Iterator[tuple[Case, CaseResult]]:
    """Cover `pending` transitions of one machine; yields each segment's case and result.

    The segments' case IDs are `MACHINE-walk-NNN`, or with `label` (a part of the walk,
    `walk_parts`) `MACHINE-walk-LABEL-NNN`.

    `pending` is updated in place as transitions are covered; `taken`, when given, receives each
    transition taken for the first time with the state it reached (for state identification).
    An exception in the walk's own code outside a segment ends this machine's walk with one
    `error` case (its traceback as evidence); the run goes on with the next machine.
    """
    started = time.perf_counter()
    segments = 0
    prefix = f"{plan.machine.name}-walk-{label + '-' if label else ''}"
    try:
        for segment in _walk(runner, plan, pending, budget or WalkBudget(), taken, prefix):
            segments += 1
            yield segment
    except Exception as exc:
        name = plan.machine.name
        case = Case(f"{prefix}{segments:03d}", "directed", f"coverage walk of {name}", (), ())
        yield case, runner.result(case, Verdict.ERROR, started, [], set(),
                                  message=f"harness error: {type(exc).__name__}: {exc}",
                                  evidence=harness_evidence(exc))


def _walk(runner: CaseRunner, plan: MachinePlan, pending: set[str],
          budget: WalkBudget, taken: list[Leg] | None = None, prefix: str = "",
          ) -> Iterator[tuple[Case, CaseResult]]:
    g = _index(plan)
    name = plan.machine.name
    key_of = _keys(plan)
    pair_of = {k: pair for pair, k in key_of.items()}
    todo: dict[State, set[Action]] = {}
    for (s, a), k in key_of.items():
        if k in pending:
            todo.setdefault(s, set()).add(a)
    near = _Distances(g, todo)
    texts: dict[Action, str] = {}

    def text_of(action: Action) -> str:
        """The action's repr, which orders the transitions of a state (worked out once)."""
        text = texts.get(action)
        if text is None:
            text = texts[action] = repr(action)
        return text

    broken = near.broken  # (state, action) pairs where the implementation failed
    checks = StateCheck.of(plan, runner.capabilities.pins)

    def drop(state: State, action: Action) -> None:
        left = todo.get(state)
        if left is not None:
            left.discard(action)
            if not left:
                del todo[state]
                near.settle(state)

    def done(state: State, action: Action) -> None:
        pending.discard(key_of.get((state, action), ""))
        drop(state, action)

    def give_up(state: State, action: Action) -> None:
        """The implementation went wrong here (failed, hung, broke): reported once, so never
        planned through nor taken again (a hang is not retried through another timeout)."""
        number = g.pair.get((state, action))
        if number is not None:
            near.give_up(number)
        done(state, action)

    for number in range(budget.cases):
        if not todo:
            return
        start = next((s for s in plan.initial if near.reachable(s)), None)
        if start is None:
            return
        spec = SlotSpec(SLOT, name, config_of(plan.machine, start))
        case_id = f"{prefix or name + '-walk-'}{number:03d}"
        before = (len(pending), sum(len(left) for left in todo.values()))
        started = time.perf_counter()
        try:
            live = runner.open(case_id, (spec,), follow=True)
        except Exception as exc:  # a hang, a fault, or the adapter's own exception
            evidence = exc.evidence if isinstance(exc, AdapterFault) else (
                "" if isinstance(exc, StepTimeout) else harness_evidence(exc))
            result = runner.result(Case(case_id, "directed", "coverage walk", (spec,), ()),
                                   Verdict.ERROR, started, [], set(),
                                   message=f"opening failed: {exc}", evidence=evidence)
            yield Case(case_id, "directed", "coverage walk", (spec,), ()), result
            return
        tracker = live.trackers[SLOT]
        route: deque[Leg] = deque()  # the planned way to the nearest pending transition
        try:
            while len(live.trace) < budget.case_steps:
                if len(tracker.states) != 1:
                    live.note("the model cannot tell which state the implementation is in")
                    break
                (state,) = tracker.states
                local = todo.get(state)
                if local:
                    action = min(local, key=text_of)
                    route.clear()
                    if g.pair.get((state, action)) in broken:
                        done(state, action)
                        continue
                else:
                    # Keep following the planned route while the implementation goes where the
                    # plan expected; plan again (one search) only when it went elsewhere.
                    if not route or route[0][0] != state:
                        route = deque(near.route(state) or ())
                        if not route:
                            break
                    action = route.popleft()[1]
                if not _sendable(live, g, state, action, broken):
                    if local:
                        # Not here, this time (a wait for ever that what was observed has not
                        # established, or whose look already failed): it stays uncovered.
                        drop(state, action)
                        continue
                    break
                new = action in todo.get(state, ())
                ok = live.step(action)
                done(state, action)
                pair_id = g.pair.get((state, action))
                if not ok:
                    # Avoid the step that went wrong: the action, or the look before a wait for
                    # ever that was taken first.
                    give_up(*(_failed_step(live) or (state, action)))
                    break
                target = None
                if len(tracker.states) == 1:
                    (target,) = tracker.states
                    if pair_id is not None:
                        near.learn(pair_id, target)
                if new and target is not None:
                    if taken is not None:
                        taken.append((state, action, target))
                    # A failed check is the check's own transition failing in the new state:
                    # avoid that one from now on, not the transition that led here.
                    check = checks.observer(state, action, target)
                    check_id = g.pair.get((target, check)) if check is not None else None
                    if check_id not in broken and not checks.verify(live, state, action):
                        if check is not None:
                            give_up(*(_failed_step(live) or (target, check)))
                        break
        except Exception as exc:  # callgate's own walk code: this segment is an error, and the
            live.harness_error(exc)  # walk of this machine ends (it would only fail again)
        finally:
            live.close()
        for key in live.covered & pending:
            pending.discard(key)
        for k in live.covered:
            covered_pair = pair_of.get(k)
            if covered_pair is not None and covered_pair[0] in todo:
                done(*covered_pair)
        progress = before != (len(pending), sum(len(left) for left in todo.values()))
        if not live.trace and live.verdict is Verdict.PASS:
            # Nothing was sent (what was left here could not be taken): no case to report.
            if not progress:
                return
            continue
        steps = tuple(Action(t.slot, t.op, tuple(t.args.items())) for t in live.trace)
        rules = tuple(dict.fromkeys(r for t in live.trace for r in t.rules))
        case = Case(case_id, "directed",
                    f"coverage walk of {name}, segment {number}: {len(live.trace)} steps, "
                    f"{before[0] - len(pending)} new transitions", (spec,), steps, rules)
        result = runner.result(case, live.verdict, started, live.trace, live.covered,
                               message=live.message, evidence=live.evidence, values=live.values,
                               covered_after=live.covered_after)
        yield case, result
        if live.failure == "harness error":
            return
        if not progress and live.verdict is Verdict.PASS:
            return  # no progress: what is left is out of reach with this implementation's choices

"""Directed cases that adapt: a coverage walk over a machine's graph, re-planned after every step.

A planned tour assumes which allowed outcome each step takes; an implementation may choose
another (a MAY outcome, or a reply still on its way). The walk therefore plans one step at a
time from the state the model is actually in: take a transition not yet covered here, or walk
the shortest way to the nearest state that has one. Each walk segment is one case (a fresh
session from an initial state); segments continue until every transition reachable with the
implementation's choices is covered, or no segment makes progress.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field

from conformance.adapter import SlotSpec
from conformance.results import CaseResult, Verdict
from conformance.runner import Case, CaseRunner, transition_key
from conformance.sequences import SLOT, MachinePlan, config_of
from model.transitions import Action, Kind, State


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


def _index(plan: MachinePlan) -> _Graph:
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
    return g


Leg = tuple[State, Action, State]  # one planned step: from, action, expected next state


def _nearest(g: _Graph, start: State, pending: dict[State, set[Action]],
             learned: dict[int, State]) -> list[Leg] | None:
    """A shortest walk from `start` to a state with pending transitions, as legs (None if none
    is reachable). Where the implementation's outcome of (state, action) has been seen, only
    that outcome is assumed: the walk plans with what the implementation does."""
    if pending.get(start):
        return []
    parent: dict[State, Leg | None] = {start: None}
    queue = deque([start])
    while queue:
        node = queue.popleft()
        for action, nxt, number in g.moves.get(node, ()):
            seen = learned.get(number)
            if seen is not None and seen != nxt:
                continue
            if nxt in parent:
                continue
            parent[nxt] = (node, action, nxt)
            if pending.get(nxt):
                path: list[Leg] = []
                at: State = nxt
                while (link := parent[at]) is not None:
                    path.append(link)
                    at = link[0]
                return path[::-1]
            queue.append(nxt)
    return None


def walk_machine(runner: CaseRunner, plan: MachinePlan, pending: set[str],
                 budget: WalkBudget | None = None) -> Iterator[tuple[Case, CaseResult]]:
    """Cover `pending` transitions of one machine; yields each segment's case and result.

    `pending` is updated in place as transitions are covered.
    """
    budget = budget or WalkBudget()
    g = _index(plan)
    name = plan.machine.name
    key_of = {(s, a): transition_key(name, s, a) for s, acts in g.defined.items() for a in acts}
    todo: dict[State, set[Action]] = {}
    for (s, a), k in key_of.items():
        if k in pending:
            todo.setdefault(s, set()).add(a)
    learned: dict[int, State] = {}

    def done(state: State, action: Action) -> None:
        pending.discard(key_of.get((state, action), ""))
        left = todo.get(state)
        if left is not None:
            left.discard(action)
            if not left:
                del todo[state]

    for number in range(budget.cases):
        if not todo:
            return
        start = next((s for s in plan.initial if _nearest(g, s, todo, learned) is not None), None)
        if start is None:
            return
        spec = SlotSpec(SLOT, name, config_of(plan.machine, start))
        case_id = f"{name}-walk-{number:03d}"
        before = len(pending)
        try:
            live = runner.open(case_id, (spec,))
        except Exception as exc:
            result = runner.result(Case(case_id, "directed", "coverage walk", (spec,), ()),
                                   Verdict.ERROR, 0.0, [], set(), message=f"opening failed: {exc}")
            yield Case(case_id, "directed", "coverage walk", (spec,), ()), result
            return
        started = time.perf_counter()
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
                    action = min(local, key=repr)
                    route.clear()
                else:
                    # Keep following the planned route while the implementation goes where the
                    # plan expected; plan again (one search) only when it went elsewhere.
                    if not route or route[0][0] != state:
                        route = deque(_nearest(g, state, todo, learned) or ())
                        if not route:
                            break
                    action = route.popleft()[1]
                if live.kind(action) is not Kind.DEFINED or not live.offered(action):
                    break
                ok = live.step(action)
                done(state, action)
                if not ok:
                    break
                if len(tracker.states) == 1:
                    pair_id = g.pair.get((state, action))
                    if pair_id is not None:
                        (learned[pair_id],) = tracker.states
        finally:
            live.close()
        for key in live.covered & pending:
            pending.discard(key)
        for (s_, a_), k in key_of.items():
            if k in live.covered and s_ in todo:
                done(s_, a_)
        steps = tuple(Action(t.slot, t.op, tuple(t.args.items())) for t in live.trace)
        rules = tuple(dict.fromkeys(r for t in live.trace for r in t.rules))
        case = Case(case_id, "directed",
                    f"coverage walk of {name}, segment {number}: {len(live.trace)} steps, "
                    f"{before - len(pending)} new transitions", (spec,), steps, rules)
        result = runner.result(case, live.verdict, started, live.trace, live.covered,
                               message=live.message, evidence=live.evidence)
        yield case, result
        if len(pending) == before and live.verdict is Verdict.PASS:
            return  # no progress: what is left is out of reach with this implementation's choices

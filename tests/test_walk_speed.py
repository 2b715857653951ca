"""Speed changes to the directed plan and walk that must not change what a run does: the tour
cases are built only when asked for, and the walk's search for the nearest untaken transition
returns the same route as the plain breadth-first search it replaced."""

from __future__ import annotations

import random
from collections import deque

import pytest

from callgate.conformance.cases import sequences
from callgate.conformance.cases.walk import (
    Leg,
    _Distances,
    _Graph,
    _index,
    _nearest,
    _number_moves,
)
from callgate.model import explorer
from callgate.model.transitions import Action, State
from tests.fakes import EventAdapter


def _plan() -> sequences.MachinePlan:
    return sequences.plan(EventAdapter("").capabilities()).machines["event"]


def test_the_tour_cases_are_built_on_first_use_only(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    tour = explorer.tour

    def counted(*args: object, **kwargs: object) -> object:
        calls.append("tour")
        return tour(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(explorer, "tour", counted)
    plan = _plan()
    assert calls == []  # building the plan (what a gate run does) draws no tour
    cases = plan.cases
    assert calls == ["tour"] and cases
    assert all(c.id.startswith("event-tour-") and c.steps for c in cases)
    assert plan.cases is cases and calls == ["tour"]  # kept, not drawn again


def _plain_nearest(g: _Graph, start: State, pending: dict[State, set[Action]],
                   learned: dict[int, State], broken: set[int]) -> list[Leg] | None:
    """The search as it was before: the yardstick the faster one must match step for step."""
    if pending.get(start):
        return []
    parent: dict[State, Leg | None] = {start: None}
    queue = deque([start])
    while queue:
        node = queue.popleft()
        for action, nxt, number in g.moves.get(node, ()):
            seen = learned.get(number)
            if (seen is not None and seen != nxt) or number in broken:
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


def test_the_nearest_search_returns_the_plain_breadth_first_route() -> None:
    g = _index(_plan())
    states = sorted(g.moves, key=repr)
    moves = [(s, a, t, n) for s, ms in g.moves.items() for a, t, n in ms]
    rng = random.Random(7)
    found = unreachable = 0
    for _ in range(300):
        pending = {s: {Action("s0", "x", ())} for s in rng.sample(states, rng.randint(0, 3))}
        learned = {n: t for _, _, t, n in rng.sample(moves, rng.randint(0, len(moves) // 2))}
        broken = {n for _, _, _, n in rng.sample(moves, rng.randint(0, len(moves) // 4))}
        start = rng.choice(states)
        want = _plain_nearest(g, start, pending, learned, broken)
        assert _nearest(g, start, pending, learned, broken) == want
        found += want is not None and bool(want)
        unreachable += want is None
    assert found > 50 and unreachable > 10  # both kinds of answer were compared


def _random_graph(rng: random.Random, size: int) -> _Graph:
    """A graph of `size` states, each with a few actions, some with two or three outcomes."""
    g = _Graph()
    states: list[State] = [(f"s{i}",) for i in range(size)]
    for source in states:
        for a in range(rng.randint(0, 4)):
            action = Action("s0", f"op{a}", ())
            number = g.pair.setdefault((source, action), len(g.pair))
            for target in rng.sample(states, rng.choice((1, 1, 1, 2, 3))):
                g.moves.setdefault(source, []).append((action, target, number))
    _number_moves(g, states[:1])
    for state in states:
        g.number(state)
    return g


def test_the_repaired_distances_give_the_plain_search_s_route_after_every_change() -> None:
    """The walk keeps its distances and repairs them as states stop being pending, moves break
    and outcomes are learned (and learned again, differently): after each change, the route
    from every state is the one a fresh breadth-first search forwards finds."""
    rng = random.Random(11)
    changes = lengthened = shortened = 0
    for _ in range(40):
        g = _random_graph(rng, rng.randint(5, 40))
        states = list(g.states)
        moves = [(s, t, n) for s, ms in g.moves.items() for _, t, n in ms]
        pending = {s: {Action("s0", "x", ())} for s in rng.sample(states, rng.randint(1, 5))}
        learned: dict[int, State] = {}
        broken: set[int] = set()
        near = _Distances(g, pending)
        for _ in range(25):
            before = list(near.dist)
            what = rng.random()
            if what < 0.3 and pending:
                state = rng.choice(sorted(pending))
                del pending[state]
                near.settle(state)
            elif what < 0.5 and moves:
                number = rng.choice(moves)[2]
                broken.add(number)
                near.give_up(number)
            elif moves:
                # Half the time another outcome of a pair already learned.
                again = [m for m in moves if m[2] in learned and learned[m[2]] != m[1]]
                _, target, number = rng.choice(again if again and rng.random() < 0.5 else moves)
                learned[number] = target
                near.learn(number, target)
            changes += 1
            lengthened += any(b < a for a, b in zip(near.dist, before, strict=True))
            shortened += any(b > a for a, b in zip(near.dist, before, strict=True))
            for start in states:
                want = _plain_nearest(g, start, pending, learned, broken)
                assert near.route(start) == want, (start, pending, learned, broken)
                assert near.reachable(start) == (want is not None)
    # Both repairs were exercised, many times.
    assert changes == 1000 and lengthened > 100 and shortened > 10


def test_the_route_check_catches_a_distance_left_unrepaired() -> None:
    """The comparison above can fail: distances not repaired after a change give other routes."""
    rng = random.Random(3)
    differs = 0
    for _ in range(30):
        g = _random_graph(rng, 20)
        pending = {s: {Action("s0", "x", ())} for s in rng.sample(g.states, 3)}
        near = _Distances(g, pending)
        gone = next(iter(pending))
        del pending[gone]
        near.pending[g.ids[gone]] = 0  # forgotten: no repair
        differs += any(near.route(s) != _plain_nearest(g, s, pending, {}, set())
                       for s in g.states)
    assert differs > 10

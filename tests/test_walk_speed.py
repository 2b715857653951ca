"""Speed changes to the directed plan and walk that must not change what a run does: the tour
cases are built only when asked for, and the walk's search for the nearest untaken transition
returns the same route as the plain breadth-first search it replaced."""

from __future__ import annotations

import random
from collections import deque

import pytest

from callgate.conformance.cases import sequences
from callgate.conformance.cases.walk import Leg, _Graph, _index, _nearest
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

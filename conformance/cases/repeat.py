"""Repetition cases: one object taken round the same cycle of its machine many times.

The walk takes every transition, but rarely takes one object through the same work more than
two or three times: each session starts from a fresh object. A fault that shows only after
several calls (a table entry leaked per call, a counter that wraps, a pool of four connections
that an aborted call never gives back) passes every such session. Here each machine's *rest
state* (the first state, by shortest path from an initial state, from which the object can be
taken round and back) is reached once, and then each *cycle* from it (one step out, by each
action that leaves the state, then a shortest way back; one cycle per sequence of operations)
is taken `REPEATS` times in one session, the rest state looked at after each lap. COM-FIN-04 (a
call object may be reused for another call) and RPC-INIT-08 (a completed handle may carry a new
call) are what make the reuse legal; the model judges every step as in any other case.

Only steps that cost no time are used (no finite or infinite wait: `identify.cheap`; a wait
for a notification the model says has come), and only steps whose every allowed outcome leads
to the one planned state, so the cycle does not leave the plan; a cycle the implementation
leaves anyway by an allowed choice is stopped there and noted. Each failing session is its own
case (replayable); the passing ones are summed up in one case.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from typing import cast

from callgate.conformance.cases import multi
from callgate.conformance.cases.identify import cheap
from callgate.conformance.cases.sequences import SLOT, MachinePlan, config_of
from callgate.conformance.judge.runner import Case, CaseRunner, LiveCase
from callgate.conformance.judge.tally import Tally, on_plan
from callgate.conformance.protocol.adapter import SlotSpec
from callgate.conformance.results import CaseResult, Verdict
from callgate.model import explorer
from callgate.model.transitions import Action, State

# How many times each cycle is taken: more than the small pools and tables an implementation
# is likely to keep (four, five entries), few enough to stay cheap.
REPEATS = 8


@dataclass(frozen=True)
class Cycle:
    """A way from the rest state round and back: its actions and the state before each."""

    actions: tuple[Action, ...]
    states: tuple[State, ...]


def _moves(plan: MachinePlan, state: State) -> dict[Action, State]:
    """The cheap actions from `state` whose every allowed outcome leads to one state, and it."""
    ends: dict[Action, set[State]] = {}
    for edge in plan.graph.out_edges(state):
        if cheap(edge.op, edge.args) or edge.op == "wait_notification":
            ends.setdefault(Action(SLOT, edge.op, edge.args), set()).add(cast(State, edge.target))
    return {a: next(iter(t)) for a, t in ends.items() if len(t) == 1}


def _back(plan: MachinePlan, start: State, goal: State) -> list[tuple[Action, State]] | None:
    """A shortest way from `start` to `goal` through `_moves`: (action, state before it)."""
    parent: dict[State, tuple[State, Action] | None] = {start: None}
    queue = deque([start])
    while queue:
        here = queue.popleft()
        if here == goal:
            way: list[tuple[Action, State]] = []
            while (link := parent[here]) is not None:
                way.append((link[1], link[0]))
                here = link[0]
            return way[::-1]
        for action, there in sorted(_moves(plan, here).items(), key=lambda m: repr(m[0])):
            if there not in parent:
                parent[there] = (here, action)
                queue.append(there)
    return None


def cycles(plan: MachinePlan) -> tuple[State | None, list[Cycle]]:
    """The machine's rest state and its cycles (none when no state has one)."""
    tree = explorer.parents(plan.graph)
    order = sorted(tree, key=lambda s: (len(_path(tree, cast(State, s))), repr(s)))
    for rest in order:
        rest = cast(State, rest)
        found: dict[tuple[str, ...], Cycle] = {}
        for action, there in sorted(_moves(plan, rest).items(), key=lambda m: repr(m[0])):
            if there == rest:
                continue
            back = _back(plan, there, rest)
            if back is None:
                continue
            cycle = Cycle((action, *(a for a, _ in back)), (rest, *(s for _, s in back)))
            # One cycle per sequence of operations: the same work with other arguments (another
            # notification type to subscribe with) adds steps, not another kind of reuse.
            found.setdefault(tuple(a.op for a in cycle.actions), cycle)
        if found:
            return rest, list(found.values())
    return None, []


def _path(tree: dict, state: State) -> list[explorer.Edge]:  # type: ignore[type-arg]
    path: list[explorer.Edge] = []
    edge = tree[state]
    while edge is not None:
        path.append(edge)
        edge = tree[edge.source]
    return path[::-1]


def repeat_machine(runner: CaseRunner, plan: MachinePlan, repeats: int = REPEATS
                   ) -> Iterator[tuple[Case, CaseResult]]:
    """One session per cycle of the machine's rest state, each cycle taken `repeats` times;
    yields each failing session as its own case and one summary case."""
    name = plan.machine.name
    started = time.perf_counter()
    rest, found = cycles(plan)
    spec = SlotSpec(SLOT, name, config_of(plan.machine, plan.initial[0]))
    if rest is None:
        case = Case(f"{name}-repeat", "directed", f"repetition of {name}: no cycle", (spec,), ())
        yield case, runner.result(case, Verdict.NOT_APPLICABLE, started, [], set(),
                                  message="no state of the machine has a cycle of cheap steps")
        return
    tree = explorer.parents(plan.graph)
    prefix = _path(tree, rest)
    start = cast(State, prefix[0].source) if prefix else rest
    spec = SlotSpec(SLOT, name, config_of(plan.machine, start))
    # After each lap the rest state is looked at with the multi-object cases' observers (cheap
    # steps that leave it as it is and tell it from its neighbours): a lap whose every step
    # answered right may still have left the object elsewhere (a Reset that stopped resetting).
    look = tuple(Action(SLOT, a.op, a.args)
                 for a in multi.observer(plan, runner.capabilities.pins).of(rest))
    tally = Tally()
    for number, cycle in enumerate(found):
        case_id = f"{name}-repeat-{number:03d}"
        plan_steps = [(Action(SLOT, e.op, e.args), cast(State, e.source)) for e in prefix]
        lap = [*zip(cycle.actions, cycle.states, strict=True), *((a, rest) for a in look)]
        plan_steps += lap * repeats
        live = tally.session(runner, case_id, (spec,), partial(_laps, planned=plan_steps))
        if live.verdict is not Verdict.PASS:
            taken = tuple(Action(t.slot, t.op, tuple(t.args.items())) for t in live.trace)
            case = Case(case_id, "directed",
                        f"repetition of {name}: {' '.join(a.op for a in cycle.actions)}, "
                        f"{repeats} times", (spec,), taken,
                        tuple(dict.fromkeys(r for t in live.trace for r in t.rules)))
            yield case, runner.result(case, live.verdict, started, live.trace, live.covered,
                                      message=live.message, evidence=live.evidence)
    case = Case(f"{name}-repeat", "directed",
                f"repetition of {name}: {tally.sessions} cycles from its rest state, each taken "
                f"{repeats} times in one session, {tally.steps} steps; {tally.passed} passed in "
                f"full{f'; {tally.left} left the plan by allowed choices' if tally.left else ''}",
                (spec,), (), tuple(tally.rules))
    # The summary passes only for cycles that ran in full and passed; failing sessions are
    # reported apart, and a run where none passed shows nothing here.
    yield case, tally.summary(runner, case, started, tally.passed > 0,
                              "no cycle ran in full and passed")


def _laps(live: LiveCase, *, planned: list[tuple[Action, State]]) -> bool:
    """Take the planned steps; False when the implementation left the plan by an allowed
    choice (noted), True otherwise (a step that failed ends the session: its verdict says so)."""
    for action, before in planned:
        if not on_plan(live, action, before):
            live.note(f"the cycle left the plan before {action.op} (an allowed choice)")
            return False
        if not live.step(action):
            break
    return True

"""Lifetime cases: many objects of one kind, one after another in one session, each to its end.

The repetition cases (cases/repeat.py) take one object round a cycle many times; the
multi-object cases hold two or three objects at once. Neither ends the lives of many objects of
one parent: a call object released with its call pending, after the next, after the next, all
made by one server object. A runtime that leaks something each time an object ends a certain
way (an entry of the server object's table of call contexts never given back, COM-REL-01 "COM
notices the abandoned call and cleans it up") passes every such session, because no session
ends more than three objects.

Here each *end* of the machine (a client step into a state from which the client can never act
on the object again, whatever the server does: the final Release of a call object, from each
phase) is taken by `REPEATS` objects in
turn, in one session, each from its initial state along a shortest way of cheap steps (the
same `_moves` as the repetition cases: no timed wait, every allowed outcome one state). Their
slots are configured alike, so an implementation that shares a parent between objects of one
configuration (the reference's server object) makes them all from one parent. Then one more
object takes the machine's rest state and each of its cycles once (`repeat.cycles`), so a leak
that breaks a later operation (Finish_, not only Begin_) shows too. The model judges every
step; each failing session is its own case, the passing ones are summed up in one case.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterator
from typing import cast

from callgate.conformance.cases import repeat
from callgate.conformance.cases.sequences import SLOT, MachinePlan, config_of
from callgate.conformance.judge.runner import Case, CaseRunner, LiveCase
from callgate.conformance.protocol.adapter import SlotSpec
from callgate.conformance.results import CaseResult, Verdict
from callgate.model import explorer
from callgate.model.transitions import Action, Actor, Kind, State

# How many objects end their lives the same way before the last one is looked at: as many as
# the repetition cases' laps (more than the small tables an implementation is likely to keep).
REPEATS = repeat.REPEATS

Way = list[tuple[Action, State]]  # actions of the slot-free graph, each with the state before


def _client_ops(plan: MachinePlan) -> frozenset[str]:
    return frozenset(o.name for o in plan.machine.operations if o.actor is Actor.CLIENT)


def _alive(plan: MachinePlan, client: frozenset[str]) -> set[State]:
    """The states from which the client can still act on the object, now or once the server
    has done what it may (a state with a client step that leads elsewhere, and every state from
    which one is reachable)."""
    graph = plan.graph.graph
    active = [cast(State, n) for n in graph.nodes
              if any(e.op in client and e.target != n for e in plan.graph.out_edges(n))]
    alive = set(active)
    queue = deque(active)
    while queue:
        for before in graph.predecessors(queue.popleft()):
            if before not in alive:
                alive.add(cast(State, before))
                queue.append(before)
    return alive


def _way(plan: MachinePlan, start: State, goal: State | Callable[[State], bool]
         ) -> Way | None:
    """A shortest way of cheap steps (`repeat._moves`) from `start` to `goal` (a state, or a
    test of states)."""
    reached = goal if callable(goal) else (lambda state: state == goal)
    parent: dict[State, tuple[State, Action] | None] = {start: None}
    queue = deque([start])
    while queue:
        here = queue.popleft()
        if reached(here):
            way: Way = []
            while (link := parent[here]) is not None:
                way.append((link[1], link[0]))
                here = link[0]
            return way[::-1]
        for action, there in sorted(repeat._moves(plan, here).items(), key=lambda m: repr(m[0])):
            if there not in parent:
                parent[there] = (here, action)
                queue.append(there)
    return None


def ends(plan: MachinePlan) -> list[tuple[State, Way]]:
    """Each end of the machine's objects, one per drawn source state and operation: the initial
    state it is taken from and the way there, its last action the end itself."""
    machine = plan.machine
    client = _client_ops(plan)
    alive = _alive(plan, client)
    found: dict[tuple[str, str], tuple[State, Way]] = {}
    for edge in sorted(plan.graph.edges(), key=repr):
        source, target = cast(State, edge.source), cast(State, edge.target)
        if edge.op not in client or source not in alive or target in alive:
            continue
        action = Action(SLOT, edge.op, edge.args)
        if repeat._moves(plan, source).get(action) != target:
            continue
        view = machine.view(source)
        key = (",".join(f"{f}={view[f]}" for f in machine.diagram_fields), edge.op)
        if key in found:
            continue
        for initial in plan.initial:
            way = _way(plan, initial, source)
            if way is not None:
                found[key] = (initial, [*way, (action, source)])
                break
    return [found[k] for k in sorted(found)]


def _drawn(plan: MachinePlan, state: State) -> str:
    view = plan.machine.view(state)
    return ",".join(f"{f}={view[f]}" for f in plan.machine.diagram_fields)


def _drive(live: LiveCase, slot: str, way: Way) -> bool:
    """Take `way` on `slot`; False when a step failed or the object left the plan."""
    tracker = live.trackers[slot]
    for action, before in way:
        action = Action(slot, action.op, action.args)
        if tracker.states != {before} or live.kind(action) is not Kind.DEFINED \
                or not live.offered(action):
            live.note(f"object {slot} left the plan before {action.op} (an allowed choice)")
            return False
        if not live.step(action):
            return False
    return True


def lifetimes_machine(runner: CaseRunner, plan: MachinePlan, repeats: int = REPEATS
                      ) -> Iterator[tuple[Case, CaseResult]]:
    """One session per end of the machine: `repeats` objects end that way, then one more
    object laps the rest state's cycles; yields each failing session and one summary case."""
    name = plan.machine.name
    started = time.perf_counter()
    found = ends(plan)
    if not found:
        return  # objects of this kind never end: nothing here (the repetition cases reuse them)
    rest, cycles = repeat.cycles(plan)
    lap: Way = []
    lap_start: State | None = None
    if rest is not None:
        prefix = repeat._path(explorer.parents(plan.graph), rest)
        lap_start = cast(State, prefix[0].source) if prefix else rest
        lap = [(Action(SLOT, e.op, e.args), cast(State, e.source)) for e in prefix]
        for cycle in cycles:
            lap += list(zip(cycle.actions, cycle.states, strict=True))
    steps = sessions = passed = 0
    covered: set[str] = set()
    rules: dict[str, None] = {}
    for number, (initial, way) in enumerate(found):
        case_id = f"{name}-lifetimes-{number:03d}"
        config = config_of(plan.machine, initial)
        last_way = lap if lap and lap_start is not None and \
            config_of(plan.machine, lap_start) == config else way
        names = tuple(f"s{i}" for i in range(repeats + 1))
        specs = tuple(SlotSpec(n, name, config) for n in names)
        live = runner.open(case_id, specs)
        complete = False
        try:
            complete = all(_drive(live, n, way) for n in names[:-1]) and \
                _drive(live, names[-1], last_way)
        except Exception as exc:
            live.harness_error(exc)
        finally:
            live.close()
        sessions += 1
        passed += live.verdict is Verdict.PASS and complete
        steps += len(live.trace)
        covered |= live.covered
        ending = way[-1][0].op
        if live.verdict is Verdict.PASS:
            rules.update(dict.fromkeys(r for t in live.trace if t.ok for r in t.rules))
        else:
            taken = tuple(Action(t.slot, t.op, tuple(t.args.items())) for t in live.trace)
            case = Case(case_id, "directed",
                        f"lifetimes of {name}: {repeats} objects end by {ending} from "
                        f"{_drawn(plan, way[-1][1])}, then one more is used", specs, taken,
                        tuple(dict.fromkeys(r for t in live.trace for r in t.rules)))
            yield case, runner.result(case, live.verdict, started, live.trace, live.covered,
                                      message=live.message, evidence=live.evidence)
    case = Case(f"{name}-lifetimes", "directed",
                f"lifetimes of {name}: {sessions} ends, each taken by {repeats} objects in one "
                f"session and followed by one more object, {steps} steps; {passed} passed in "
                f"full", (SlotSpec(SLOT, name, config_of(plan.machine, found[0][0])),),
                (), tuple(rules))
    yield case, runner.result(case, Verdict.PASS if passed else Verdict.NOT_APPLICABLE,
                              started, [], covered, executed=steps,
                              message="" if passed else "no session ran in full and passed")


# --- limits: one object filled to a bound while another object of its kind holds some -----------
#
# A bound that belongs to one object (63 members of one ISynchronizeContainer, COM-CONT-02) may be
# counted across objects by an implementation (one handle array for the process, the count of the
# container created last). A walk fills one object alone, and the multi-object cases do not count
# so high. So for each bounded count of the machine (an integer field with more values than
# `REPEATS`), one object is filled to the top and taken over it while a second object of its kind
# holds at least one, in both orders of creation: the second object made after the first one's
# first step, and before it.


def bounded_fields(plan: MachinePlan) -> list[str]:
    """The machine's integer fields with more values than `REPEATS` (a count up to a bound)."""
    return [f.name for f in plan.machine.fields
            if len(f.domain) > REPEATS
            and all(isinstance(v, int) and not isinstance(v, bool) for v in f.domain)]


def _limit_ways(plan: MachinePlan, name: str) -> tuple[State, Way, Way] | None:
    """From one initial state: a way to the top of field `name` followed by the steps that stay
    there (the ones over the bound), and a way to hold at least one."""
    machine = plan.machine
    top = max(v for v in next(f for f in machine.fields if f.name == name).domain
              if isinstance(v, int))

    def value(state: State) -> int:
        found = machine.view(state)[name]
        return found if isinstance(found, int) else 0

    for initial in plan.initial:
        full = _way(plan, initial, lambda state: value(state) == top)
        some = _way(plan, initial, lambda state: value(state) >= 1)
        if full is None or some is None:
            continue
        at = initial if not full else repeat._moves(plan, full[-1][1])[full[-1][0]]
        over = [(action, at) for action, there in
                sorted(repeat._moves(plan, at).items(), key=lambda m: repr(m[0])) if there == at]
        return initial, full + over, some
    return None


def limits_machine(runner: CaseRunner, plan: MachinePlan) -> Iterator[tuple[Case, CaseResult]]:
    """Two sessions per bounded field: fill one object to the top and over it while another of
    its kind holds some, the other object made after the first one's first step and before it."""
    name = plan.machine.name
    for field_name in bounded_fields(plan):
        found = _limit_ways(plan, field_name)
        if found is None:
            continue
        initial, full, some = found
        config = config_of(plan.machine, initial)
        specs = (SlotSpec("s0", name, config), SlotSpec("s1", name, config))
        for number, order in enumerate(("after", "before")):
            started = time.perf_counter()
            case_id = f"{name}-limit-{field_name}-{number:03d}"
            live = runner.open(case_id, specs)
            try:
                if order == "after":
                    _ = _drive(live, "s0", full[:1]) and _drive(live, "s1", some) and \
                        _drive(live, "s0", full[1:])
                else:
                    _ = _drive(live, "s1", some) and _drive(live, "s0", full)
            except Exception as exc:
                live.harness_error(exc)
            finally:
                live.close()
            taken = tuple(Action(t.slot, t.op, tuple(t.args.items())) for t in live.trace)
            case = Case(case_id, "directed",
                        f"limit of {name}.{field_name}: s0 filled to the top and over it while "
                        f"s1 holds some, s1 made {order} s0's first step "
                        f"({len(live.trace)} steps)", specs, taken,
                        tuple(dict.fromkeys(r for t in live.trace for r in t.rules)))
            yield case, runner.result(case, live.verdict, started, live.trace, live.covered,
                                      message=live.message, evidence=live.evidence)

"""Directed cases that identify states: after a transition of the walk, the identifying sequences
of the state it reached (Wp method), each from a fresh session.

The walk (`callgate.conformance.cases.walk`) takes every transition and checks the reached state
against its one-field neighbours only. An implementation that merges two states the model keeps
apart (a soft cancel forgotten, a wait forgotten) answers the walk's next steps like the state it
merged into, and the sequence that tells the two apart is rarely generated. Here, for each
transition the walk took (source, action, target), a case re-drives a shortest path to `source`,
takes `action`, and applies one sequence of `Identifier.identifying_set(target)`; one session
per sequence, so each sequence starts from the state it was computed for. Every step is judged
by the tracker like any other: a case fails only on an observation the model does not allow.

`IdentifyBudget.extra_step` adds one more input between the transition and the identifying
sequence (every input DEFINED in the reached state): the W-method's P . Sigma^{<=1} . W for
implementations with at most one state more than the model (docs/state-identification.md).
First each class of states (`Identifier.classes`) is identified once from its cheapest reached
state (`IdentifyBudget.class_steps`); then each no-change step at those states is followed by
identification, then further states (together within `IdentifyBudget.steps`). The summary case
says how far it got: classes, states and no-change steps identified.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import cast

from callgate.conformance.cases.sequences import SLOT, MachinePlan, config_of
from callgate.conformance.judge.runner import Case, CaseRunner, LiveCase
from callgate.conformance.judge.tally import Tally, on_plan
from callgate.conformance.protocol.adapter import SlotSpec
from callgate.conformance.results import CaseResult, Verdict
from callgate.model import explorer
from callgate.model.explorer.graph import Node
from callgate.model.explorer.identify import Identifier, Sequence_
from callgate.model.transitions import Action, Args, Kind, State

Leg = tuple[State, Action, State]  # a transition the walk took: from, action, reached


@dataclass(frozen=True)
class IdentifyBudget:
    """How much state identification a run does per machine.

    Two phases. The class phase identifies each class of the refinement once (the classes
    `Identifier.classes` computes: states of one class share one identifying set), choosing for
    each class its reached state with the shortest path from an initial state; `class_steps`
    caps it. The state phase then identifies further reached states, cheapest first (or after
    every transition, with `every_transition`), within `steps` more steps.
    """

    steps: int  # the state phase: at most this many steps per machine (prefixes included)
    extra_step: bool = False  # P . Sigma^{<=1} . W: one more input before identifying
    every_transition: bool = False  # identify after every transition, not once per state
    class_steps: int = 0  # the class phase: at most this many steps per machine (0: no phase)


def cheap(op: str, args: Args) -> bool:
    """Inputs an identifying sequence may use: no wait that costs time (as `StateCheck`)."""
    return op != "wait_notification" and not any(
        name == "timeout" and value != "zero" for name, value in args)


_IDENTIFIERS: dict[int, Identifier] = {}


def identifier(plan: MachinePlan) -> Identifier:
    """The machine's identifier, built once per graph (the sets inside are computed lazily)."""
    key = id(plan.graph)
    if key not in _IDENTIFIERS:
        _IDENTIFIERS[key] = Identifier(plan.graph, cheap)
    return _IDENTIFIERS[key]


@dataclass
class _Tally(Tally):
    identified: set[State] = field(default_factory=set)
    skipped: int = 0  # sessions where the implementation's allowed choices left the plan


def _drive(live: LiveCase, steps: list[Action], states: list[State]) -> bool:
    """Take the planned prefix; False when a step failed or the implementation left the plan
    (another allowed outcome): the identifying sequence then does not start where it should."""
    for action, source in zip(steps, states, strict=True):
        if not on_plan(live, action, source):
            return False
        if not live.step(action):
            return False
    return True


def _apply(live: LiveCase, seq: Sequence_) -> bool:
    for op, args in seq:
        action = Action(SLOT, op, args)
        if live.kind(action) is not Kind.DEFINED or not live.offered(action):
            live.note(f"identifying sequence stopped before {action}: not DEFINED after the "
                      f"implementation's choices")
            return False
        if not live.step(action):
            return False
    return True


@dataclass
class _Got:
    """What one identifying session found: the state it reached and that state's identifying
    set, the sequence it applied (None: none), whether the sequence was applied in full, and
    whether it was skipped (the implementation's allowed choices left the plan before the
    first sequence)."""

    reached: State | None = None
    sets: tuple[Sequence_, ...] = ()
    seq: Sequence_ | None = None
    applied: bool = False
    skipped: bool = False


def _identify(live: LiveCase, *, ident: Identifier, job: _Job, extra: Action | None,
              index: int, got: _Got) -> bool:
    """The job's prefix, the extra input, then sequence `index` of the reached state's set;
    True when that sequence was applied in full."""
    if _drive(live, list(job.prefix), list(job.states)):
        tracker = live.trackers[SLOT]
        ok = (extra is None or (
            live.kind(extra) is Kind.DEFINED
            and live.offered(extra) and live.step(extra)))
        if ok and len(tracker.states) == 1:
            (got.reached,) = tracker.states
            got.sets = ident.identifying_set(got.reached) if got.reached in ident.index else ()
            if index < len(got.sets):
                got.seq = got.sets[index]
                got.applied = _apply(live, got.seq)
    got.skipped = got.seq is None and live.verdict is Verdict.PASS and index == 0
    return got.applied


@dataclass(frozen=True)
class _Job:
    """One state to identify: the planned prefix (a shortest path, then the transition) and the
    states the model passes through before each of its steps."""

    start: State
    prefix: tuple[Action, ...]
    states: tuple[State, ...]
    label: str  # the transition's operation, for the case's description


def _path(tree: Mapping[Node, explorer.Edge | None], node: State) -> list[explorer.Edge]:
    path: list[explorer.Edge] = []
    edge = tree[node]
    while edge is not None:
        path.append(edge)
        edge = tree[edge.source]
    path.reverse()
    return path


def _job(tree: Mapping[Node, explorer.Edge | None], source: State,
         action: Action | None) -> _Job:
    """The job that reaches `source` by a shortest path and then takes `action` (None: the
    path's own last edge is the transition, and `source` is the state to identify)."""
    path = _path(tree, source)
    start: State = cast(State, path[0].source) if path else source
    if action is None:
        if not path:
            return _Job(start, (), (), "no transition: the initial state")
        prefix = tuple(Action(SLOT, e.op, e.args) for e in path)
        return _Job(start, prefix, tuple(cast(State, e.source) for e in path), path[-1].op)
    prefix = (*(Action(SLOT, e.op, e.args) for e in path), action)
    return _Job(start, prefix, (*(cast(State, e.source) for e in path), source), action.op)


def _loops(plan: MachinePlan, state: State) -> list[Action]:
    """The cheap inputs every allowed outcome of which leaves `state` unchanged: one argument
    combination per operation (the first in sorted order), to keep the phase affordable."""
    ends: dict[Action, set[object]] = {}
    for edge in plan.graph.out_edges(state):
        if cheap(edge.op, edge.args):
            ends.setdefault(Action(SLOT, edge.op, edge.args), set()).add(edge.target)
    first: dict[str, Action] = {}
    for action in sorted((a for a, targets in ends.items() if targets == {state}), key=repr):
        first.setdefault(action.op, action)
    return list(first.values())


def identify_machine(runner: CaseRunner, plan: MachinePlan, taken: list[Leg],
                     budget: IdentifyBudget) -> Iterator[tuple[Case, CaseResult]]:
    """Run the identifying cases after the walk's transitions `taken`; yields every failing or
    erring session as its own case (replayable), and one summary case for the passing ones."""
    name = plan.machine.name
    ident = identifier(plan)
    classes = ident.classes()
    tally = _Tally()
    started = time.perf_counter()
    tree = explorer.parents(plan.graph)
    reached_states = {leg[2] for leg in taken if leg[2] in ident.index and leg[2] in tree}
    # Classes with something to separate: a class whose set is empty has no state a cheap
    # sequence tells apart from it, so there is nothing to identify.
    wanted = {classes[ident.index[s]] for s in reached_states if ident.identifying_set(s)}
    members: dict[int, int] = {}
    for c in classes:
        members[c] = members.get(c, 0) + 1
    jobs: list[tuple[str, _Job, State]] = []  # phase, job, the state to identify
    extras_of: dict[State, list[Action | None]] = {}

    def extras(target: State) -> list[Action | None]:
        if target not in extras_of:
            found: list[Action | None] = [None]
            if budget.extra_step:
                found += sorted((Action(SLOT, a.op, a.args) for s, a in plan.graph.transitions
                                 if s == target and cheap(a.op, a.args)), key=repr)
            extras_of[target] = found
        return extras_of[target]

    depths: dict[State, int] = {}

    def depth(state: State) -> int:
        if state not in depths:
            depths[state] = len(_path(tree, state))
        return depths[state]

    representative: dict[int, State] = {}
    if budget.class_steps:
        for s in sorted(reached_states, key=lambda s: (depth(s), repr(s))):
            c = classes[ident.index[s]]
            if c in wanted and c not in representative:
                representative[c] = s
        for s in sorted(representative.values(), key=lambda s: (depth(s), repr(s))):
            jobs.append(("class", _job(tree, s, None), s))
        # Then, within the state phase's budget, each step the model says changes nothing,
        # taken from a class's representative: the walk checks such a step only by repeating
        # it, which cannot show a step that forgets something (a status poll that drops a
        # cancel): identifying the state after it can.
        for s in sorted(representative.values(), key=lambda s: (depth(s), repr(s))):
            for action in _loops(plan, s):
                jobs.append(("loop", _job(tree, s, action), s))
    legs = [leg for leg in taken if leg[2] in reached_states and leg[0] in tree
            and classes[ident.index[leg[2]]] in wanted]
    if not budget.every_transition:
        first: dict[State, Leg] = {}
        for leg in legs:
            first.setdefault(leg[2], leg)
        # Only states whose class has others: a class of one was identified by the class phase.
        legs = sorted((leg for s, leg in first.items() if s not in representative.values()
                       or not budget.class_steps), key=lambda leg: (depth(leg[0]), repr(leg)))
        if budget.class_steps:
            legs = [leg for leg in legs if members[classes[ident.index[leg[2]]]] > 1]
    for source, action, target in legs:
        jobs.append(("state", _job(tree, source, action), target))

    class_spent = 0
    failures = 0
    identified_classes: set[int] = set()
    loops_done = 0
    loops = sum(1 for job in jobs if job[0] == "loop")
    for phase, job, target in jobs:
        if phase == "class" and class_spent >= budget.class_steps:
            continue
        if phase != "class" and tally.steps - class_spent >= budget.steps:
            break
        for extra in extras(target) if phase == "state" else [None]:
            index = 0
            applied = 0
            sets: tuple[Sequence_, ...] = ()
            reached: State | None = None
            while True:
                if (phase != "class" and tally.steps - class_spent >= budget.steps) or (
                        phase == "class" and class_spent >= budget.class_steps):
                    break
                case_id = f"{name}-ident-{tally.sessions:05d}"
                spec = SlotSpec(SLOT, name, config_of(plan.machine, job.start))
                got = _Got()
                live = tally.session(runner, case_id, (spec,), partial(
                    _identify, ident=ident, job=job, extra=extra, index=index, got=got))
                tally.skipped += got.skipped
                seq = got.seq
                if got.reached is not None:
                    reached, sets = got.reached, got.sets
                applied += got.applied
                if phase == "class":
                    class_spent += len(live.trace)
                if live.verdict is not Verdict.PASS:
                    failures += 1
                    steps = tuple(Action(t.slot, t.op, tuple(t.args.items())) for t in live.trace)
                    what = f"then {ident.describe(seq)}" if seq else "(prefix)"
                    case = Case(case_id, "directed",
                                f"state identification of {name} ({phase} phase): shortest path, "
                                f"{job.label}, {'' if extra is None else extra.op + ', '}{what}",
                                (spec,), steps, tuple(dict.fromkeys(
                                    r for t in live.trace for r in t.rules)))
                    yield case, runner.result(case, live.verdict, started, live.trace,
                                              live.covered, message=live.message,
                                              evidence=live.evidence)
                    break
                if seq is None:
                    break
                index += 1
            # Identified: every sequence of the reached state's set ran, from that state, and
            # passed (a set cut short by the budget identifies nothing).
            if extra is None and reached is not None and sets and applied == len(sets):
                tally.identified.add(reached)
                identified_classes.add(classes[ident.index[reached]])
                if phase == "loop":
                    loops_done += 1
    spec = SlotSpec(SLOT, name, config_of(plan.machine, plan.initial[0]))
    short_classes = len(wanted - identified_classes)
    case = Case(f"{name}-ident", "directed",
                f"state identification of {name}: {tally.sessions} sessions, {tally.steps} steps "
                f"({class_spent} in the class phase); identified {len(identified_classes)} of "
                f"{len(wanted)} classes with a separating sequence, "
                f"{len(tally.identified)} of {len(reached_states)} reached states; "
                f"identified after {loops_done} of {loops} no-change steps at the classes' "
                f"representatives"
                f"{' (one extra input before each)' if budget.extra_step else ''}"
                f"{f'; {short_classes} classes not identified' if short_classes else ''}"
                f"{'; step budget spent' if tally.steps - class_spent >= budget.steps else ''}"
                f"{f'; {tally.skipped} left the plan by allowed choices' if tally.skipped else ''}"
                f"{f'; {failures} failing sessions reported apart' if failures else ''}",
                (spec,), (), tuple(tally.rules))
    # Shown: a session passed and got past the plan's start (a skipped one identifies nothing).
    yield case, tally.summary(runner, case, started, tally.passed + tally.left > tally.skipped,
                              "no identifying sequence could be applied")

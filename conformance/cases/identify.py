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
`IdentifyBudget.steps` caps the steps per machine; the summary case says how far it got.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import cast

from callgate.conformance.cases.sequences import SLOT, MachinePlan, config_of
from callgate.conformance.judge.runner import Case, CaseRunner, LiveCase
from callgate.conformance.protocol.adapter import SlotSpec
from callgate.conformance.results import CaseResult, Verdict
from callgate.model import explorer
from callgate.model.explorer.identify import Identifier, Sequence_
from callgate.model.transitions import Action, Args, Kind, ModelError, State

Leg = tuple[State, Action, State]  # a transition the walk took: from, action, reached


@dataclass(frozen=True)
class IdentifyBudget:
    """How much state identification a run does per machine."""

    steps: int  # at most this many steps per machine (prefixes included)
    extra_step: bool = False  # P . Sigma^{<=1} . W: one more input before identifying
    every_transition: bool = False  # identify after every transition, not once per state


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
class _Tally:
    sessions: int = 0
    steps: int = 0
    identified: set[State] = field(default_factory=set)
    skipped: int = 0  # sessions where the implementation's allowed choices left the plan
    rules: dict[str, None] = field(default_factory=dict)
    covered: set[str] = field(default_factory=set)


def _drive(live: LiveCase, steps: list[Action], states: list[State]) -> bool:
    """Take the planned prefix; False when a step failed or the implementation left the plan
    (another allowed outcome): the identifying sequence then does not start where it should."""
    tracker = live.trackers[SLOT]
    for action, source in zip(steps, states, strict=True):
        if tracker.states != {source} or live.kind(action) is not Kind.DEFINED \
                or not live.offered(action):
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


def identify_machine(runner: CaseRunner, plan: MachinePlan, taken: list[Leg],
                     budget: IdentifyBudget) -> Iterator[tuple[Case, CaseResult]]:
    """Run the identifying cases after the walk's transitions `taken`; yields every failing or
    erring session as its own case (replayable), and one summary case for the passing ones."""
    name = plan.machine.name
    ident = identifier(plan)
    tally = _Tally()
    started = time.perf_counter()
    targets = [leg for leg in taken if leg[2] in ident.index]
    if not budget.every_transition:
        first: dict[State, Leg] = {}
        for leg in targets:
            first.setdefault(leg[2], leg)
        targets = list(first.values())
    tree = explorer.parents(plan.graph)
    failures = 0
    for source, action, target in targets:
        if tally.steps >= budget.steps:
            break
        try:
            path = explorer.shortest_path(plan.graph, plan.initial, source) if source in tree \
                else None
        except ModelError:
            path = None
        if path is None:
            continue
        start: State = path[0].source if path else source  # type: ignore[assignment]
        prefix = [Action(SLOT, e.op, e.args) for e in path] + [action]
        states: list[State] = [*(cast(State, e.source) for e in path), source]
        extras: list[Action | None] = [None]
        if budget.extra_step:
            extras += sorted((a for s, a in plan.graph.transitions if s == target
                              and cheap(a.op, a.args)), key=repr)
        for extra in extras:
            index = 0
            while tally.steps < budget.steps:
                case_id = f"{name}-ident-{tally.sessions:05d}"
                spec = SlotSpec(SLOT, name, config_of(plan.machine, start))
                live = runner.open(case_id, (spec,))
                seq: Sequence_ | None = None
                try:
                    if _drive(live, prefix, states):
                        tracker = live.trackers[SLOT]
                        extra_action = None if extra is None else Action(SLOT, extra.op, extra.args)
                        ok = (extra_action is None or (
                            live.kind(extra_action) is Kind.DEFINED
                            and live.offered(extra_action) and live.step(extra_action)))
                        if ok and len(tracker.states) == 1:
                            (reached,) = tracker.states
                            sets = ident.identifying_set(reached) if reached in ident.index \
                                else ()
                            if index < len(sets):
                                seq = sets[index]
                                if _apply(live, seq) and extra is None:
                                    tally.identified.add(reached)
                    if seq is None and live.verdict is Verdict.PASS and index == 0:
                        tally.skipped += 1
                except Exception as exc:
                    live.harness_error(exc)
                finally:
                    live.close()
                tally.sessions += 1
                tally.steps += len(live.trace)
                tally.covered |= live.covered
                tally.rules.update(dict.fromkeys(r for t in live.trace for r in t.rules))
                if live.verdict is not Verdict.PASS:
                    failures += 1
                    steps = tuple(Action(t.slot, t.op, tuple(t.args.items())) for t in live.trace)
                    what = f"then {ident.describe(seq)}" if seq else "(prefix)"
                    case = Case(case_id, "directed",
                                f"state identification of {name}: shortest path, "
                                f"{action.op}, {'' if extra is None else extra.op + ', '}{what}",
                                (spec,), steps, tuple(dict.fromkeys(
                                    r for t in live.trace for r in t.rules)))
                    yield case, runner.result(case, live.verdict, started, live.trace,
                                              live.covered, message=live.message,
                                              evidence=live.evidence)
                    break
                if seq is None:
                    break
                index += 1
    reached_states = {leg[2] for leg in taken if leg[2] in ident.index}
    spec = SlotSpec(SLOT, name, config_of(plan.machine, plan.initial[0]))
    case = Case(f"{name}-ident", "directed",
                f"state identification of {name}: {tally.sessions} sessions, {tally.steps} steps; "
                f"identified {len(tally.identified)} of {len(reached_states)} reached states"
                f"{' (one extra input before each)' if budget.extra_step else ''}"
                f"{'; step budget spent' if tally.steps >= budget.steps else ''}"
                f"{f'; {tally.skipped} left the plan by allowed choices' if tally.skipped else ''}"
                f"{f'; {failures} failing sessions reported apart' if failures else ''}",
                (spec,), (), tuple(tally.rules))
    shown = tally.sessions > tally.skipped
    yield case, runner.result(case, Verdict.PASS if shown else Verdict.NOT_APPLICABLE, started,
                              [], tally.covered, executed=tally.steps,
                              message="" if shown else "no identifying sequence could be applied")

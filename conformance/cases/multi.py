"""Multi-object cases: two or three objects of one kind driven in one session.

A walk segment drives one object, so a fault in state that several objects share (a process-wide
table of call objects, a per-thread "current call", a per-binding reply buffer, a kernel event
two objects share, a per-thread count kept per process) never shows there. These cases open two
or three slots of one machine (a *composition*: two or three call objects, two or three RPC
handles on one binding, two system events, two client threads with their thread-level
cancellation) and walk them together, towards a coverage criterion over pairs:

* each machine has *in-flight phases* (`PHASES`): the phases in which an object holds something
  another object's operations could disturb (a call object PENDING or SIGNALED; an RPC call
  PENDING with the server holding it, SENT with its result on the way, READY completed and not
  collected; an event signalled or not, by its class; a client thread's enable count, with or
  without a cancel object registered);
* a *pair* is a transition of one object, taken while the other object is in one in-flight
  phase. A transition is counted by the machine's drawn state (its `diagram_fields`, the phase)
  and the operation with its arguments, so the criterion stays small enough to reach in full
  (every transition of the full state graph times every phase would be tens of thousands);
* after a step covers a new pair, both objects are observed with cheap operations that leave
  their state as it is and tell it apart from its neighbours (the states one field or one step
  of its own away; `_Observer`), so a step of one object that changed the other shows at once.
  Every such operation is asked (`_Observer.telling`), not a minimal cover: for a pending RPC
  call RpcAsyncCompleteCall and RpcAsyncGetCallStatus tell the same states apart, and a fault
  in either one alone shows only if both are asked.

Both objects play both roles, and the walk alternates which object moves first, so that either
object may be the one created, begun or signalled most recently. With three objects, each
session first puts one of them (each in turn) in flight and leaves it there, the *bystander*:
the other two walk the pairs while it holds the oldest call, and a step counts for a pair with
whichever other object is in flight. The criterion stays over pairs.

More parts:

* *Crossed values* (`_cross`, one case per composition whose objects echo a value back: the
  [out] of Finish_, the reply of RpcAsyncCompleteCall): the first object is given value 1, the
  second value 2 (distinct concrete numbers), then the first's is read back, then the second's;
  and again with the objects' roles swapped. The pair criterion says which transitions meet
  which phase, not with which values, so without this a runtime that keeps one result for
  several objects (the newest wins) is never asked for the older one.
* *Pair walks of one class* (`CLASSES`): for RPC calls, one composition per NotificationType
  (`rpc_call-pair-Event`, ...), whose walk takes no AsyncCall of another type, so both objects
  are of that class. A runtime that shares state between calls notified the same way (a cached
  event, one callback slot) shows only then. Each such walk starts with *crossed
  notifications* (`_cross_notes`): both objects put in flight in each order, then finished in
  each order, each one's notification collected as soon as the model says it is owed.
* *Pairs no walk can take* (`not_drivable`): a pair whose transition the harness never sends,
  in any state it stands for, is reported apart with the reason instead of as missing. Today
  these are the call object's `Wait(INFINITE)` right after the server's signal: it is sent only
  once a zero-timeout look has shown it returns, and that look changes the state (it records the
  successful wait) with no step that leads back.

Every step is judged by the model like any other case, and each case cites the rules of the
steps it took.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from callgate.conformance.cases.sequences import MachinePlan
from callgate.conformance.cases.slots import default_slot
from callgate.conformance.judge.perform import blocks, zero_wait
from callgate.conformance.judge.runner import Case, CaseRunner, LiveCase, harness_evidence
from callgate.conformance.protocol.adapter import SlotSpec
from callgate.conformance.results import CaseResult, Verdict
from callgate.model.transitions import Action, Args, Kind, Machine, State, step

# The in-flight phases of each machine that has any: field and the values that are in flight.
# com_call: Begin_ accepted until Finish_ (COM-BEGIN-01, COM-FIN-01); rpc_call: the call is
# outstanding until the final RpcAsyncCompleteCall (RPC-CLI-COMPLETE-01, -02); event: a created
# event, signalled or not (COM-SYNC-01, COM-SYNC-02); thread_cancel: a client thread with
# cancellation enabled or a cancel object registered, per-thread state another thread's enable,
# disable or registration must not touch (COM-CCAN-02, COM-CCAN-03, COM-CCAN-11).
PHASES: Mapping[str, tuple[str, tuple[object, ...]]] = {
    "com_call": ("phase", ("PENDING", "SIGNALED")),
    "rpc_call": ("phase", ("PENDING", "SENT", "READY")),
    "event": ("signaled", (False, True)),
    "thread_cancel": ("count", (0, 1, 2)),
}
# Fields that split a phase further, where objects of one kind come in classes that a faulty
# implementation may share state between: two StdEvents (auto-reset) can share a kernel event
# while a ManualResetEvent and a StdEvent cannot, so "the other event is signalled" is walked
# for each class of the other event (COM-SYNC-01, COM-SYNC-03, COM-SYNC-04); a client thread's
# enable count is walked with and without a cancel object registered on it (COM-CCAN-11).
PHASE_DETAIL: Mapping[str, tuple[str, ...]] = {
    "event": ("kind",),
    "thread_cancel": ("registered",),
}


@dataclass(frozen=True)
class Composition:
    """Two or three slots of one machine, driven together in one session. `only` keeps the
    objects to one class (`CLASSES`): the operation and argument that choose it, and its value;
    the walk then takes no step that makes an object of another class."""

    name: str
    slots: tuple[str, ...]
    only: tuple[str, str, object] | None = None

    @property
    def machine(self) -> str:
        return default_slot(self.slots[0]).machine


# Classes of objects that an implementation is likely to serve by one code path and may give
# shared state (a cached notification target, a queue per kind of delivery): the operation and
# argument that choose an object's class, and its values. The phase split (`PHASE_DETAIL`) looks
# at the other object only; a fault in state that objects of one class share shows only when
# the mover is of that class too. So each class gets a pair walk of its own, both objects of
# that class: for RPC calls, the NotificationType (RPC-CLI-NOTIFY-01..06: each is delivered
# its own way).
CLASSES: Mapping[str, tuple[str, str, tuple[object, ...]]] = {
    "rpc_call-pair": ("AsyncCall", "notify", ("None", "Event", "Apc", "Ioc", "Hwnd", "Callback")),
}
# A walk of one class gets 1/CLASS_SHARE of the budget's sessions (at least one): the crossed
# cases before it are what tells one object's result or notification from the other's, and six
# full walks of rpc_call would cost 18% more steps than the whole run (measured).
CLASS_SHARE = 20

_BASE = (
    Composition("com_call-pair", ("c0", "c1")),
    Composition("com_call-triple", ("c0", "c1", "c2")),
    Composition("rpc_call-pair", ("r0", "r1")),
    Composition("rpc_call-triple", ("r0", "r1", "r2")),
    Composition("event-pair", ("e0", "e1")),
    Composition("thread_cancel-pair", ("t0", "t1")),
)
COMPOSITIONS = (
    *_BASE,
    *(Composition(f"{c.name}-{value}", c.slots, (op, arg, value))
      for c in _BASE if c.name in CLASSES for op, arg, values in (CLASSES[c.name],)
      for value in values),
)


@dataclass(frozen=True)
class MultiBudget:
    """Limits of one composition's walk: sessions, and steps in each."""

    cases: int = 40
    case_steps: int = 400
    # The crossed-values case (`_cross`) before the walk, for machines with an echoed value.
    crossed: bool = True


# The field of each machine that holds a value the implementation echoes back (the [out] value
# a server signalled, the procedure's return value), 0 while it holds none, and the operations
# that deliver it: Finish_ (COM-FIN-01), the final RpcAsyncCompleteCall (RPC-CLI-COMPLETE-02).
# A runtime that keeps one such value for several objects (a process-wide "last result", a
# reply buffer per binding) shows only when one object's value is read after another object
# was given a different one: see `_Reader`.
ECHOES: Mapping[str, tuple[str, tuple[str, ...]]] = {
    "com_call": ("out", ("Finish_",)),
    "rpc_call": ("reply", ("RpcAsyncCompleteCall",)),
}


def phase_of(machine: Machine, state: State) -> str | None:
    """The in-flight phase `state` is in, or None when it is in none."""
    if machine.name not in PHASES:
        return None
    name, values = PHASES[machine.name]
    view = machine.view(state)
    if machine.name == "event" and view.get("kind") == "NONE":
        return None  # no event yet
    value = view[name]
    if value not in values:
        return None
    return ",".join([*(f"{f}={view[f]}" for f in PHASE_DETAIL.get(machine.name, ())),
                     f"{name}={value}"])


def abstract(machine: Machine, state: State, op: str, args: Args) -> str:
    """A transition counted by the machine's drawn state and the action."""
    view = machine.view(state)
    drawn = ",".join(f"{f}={view[f]}" for f in machine.diagram_fields)
    return f"{machine.name}|{drawn}|{op}({','.join(f'{k}={v}' for k, v in args)})"


def pair_key(composition: str, transition: str, phase: str) -> str:
    return f"{composition}|{transition}|while {phase}"


Move = tuple[Action, State]  # an action of the slot-free graph and the state it leads to


@dataclass
class _Graph:
    """A machine's graph as the pair walk reads it; actions carry no slot."""

    machine: Machine
    moves: dict[State, list[Move]] = field(default_factory=dict)
    actions: dict[State, list[Action]] = field(default_factory=dict)
    _instances: dict[State, dict[str, list[tuple[State, Action]]]] = field(default_factory=dict)

    @staticmethod
    def of(plan: MachinePlan, only: tuple[str, str, object] | None = None) -> _Graph:
        """The plan's graph, built once per plan (the report's universe, the walks of each
        composition and the not-drivable pairs all read it); with `only`, without the steps
        that make an object of another class (`Composition.only`)."""
        known = _GRAPHS.get((id(plan), only))
        if known is not None and known[0] is plan:
            return known[1]
        g = _Graph.build(plan, only)
        _GRAPHS[(id(plan), only)] = (plan, g)
        return g

    @staticmethod
    def build(plan: MachinePlan, only: tuple[str, str, object] | None = None) -> _Graph:
        g = _Graph(plan.machine)
        seen: set[tuple[State, Action, State]] = set()
        for edge in plan.graph.edges():
            if only is not None and edge.op == only[0] and dict(edge.args).get(only[1],
                                                                               only[2]) != only[2]:
                continue
            source: State = edge.source  # type: ignore[assignment]
            target: State = edge.target  # type: ignore[assignment]
            action = Action("", edge.op, edge.args)
            if (source, action, target) not in seen:
                seen.add((source, action, target))
                g.moves.setdefault(source, []).append((action, target))
                if action not in g.actions.setdefault(source, []):
                    g.actions[source].append(action)
        return g

    def instances(self, start: State) -> dict[str, list[tuple[State, Action]]]:
        """Each drawn transition (`abstract`) reachable from `start`, with the states and
        actions it stands for; computed once per start."""
        if start not in self._instances:
            found: dict[str, list[tuple[State, Action]]] = {}
            for s in self.reachable(start):
                for a in self.actions.get(s, ()):
                    found.setdefault(abstract(self.machine, s, a.op, a.args), []).append((s, a))
            self._instances[start] = found
        return self._instances[start]

    def reachable(self, start: State) -> set[State]:
        found, queue = {start}, deque([start])
        while queue:
            for _, nxt in self.moves.get(queue.popleft(), ()):
                if nxt not in found:
                    found.add(nxt)
                    queue.append(nxt)
        return found

    def route(self, start: State, goal: set[State] | None = None,
              wanted: dict[State, list[Action]] | None = None,
              avoid: set[tuple[State, Action]] | frozenset[tuple[State, Action]] = frozenset(),
              ) -> list[Move] | None:
        """A shortest way from `start` to a state in `goal`, or to one with `wanted` actions,
        through no move in `avoid`."""
        def hit(s: State) -> bool:
            return s in goal if goal is not None else bool(wanted and wanted.get(s))
        if hit(start):
            return []
        parent: dict[State, tuple[State, Action] | None] = {start: None}
        queue = deque([start])
        while queue:
            node = queue.popleft()
            for action, nxt in self.moves.get(node, ()):
                if nxt in parent or (node, action) in avoid:
                    continue
                parent[nxt] = (node, action)
                if hit(nxt):
                    path: list[Move] = []
                    at = nxt
                    while (link := parent[at]) is not None:
                        path.append((link[1], at))
                        at = link[0]
                    return path[::-1]
                queue.append(nxt)
        return None


_GRAPHS: dict[tuple[int, tuple[str, str, object] | None], tuple[MachinePlan, _Graph]] = {}


# `pair_universe` and `not_drivable` of each plan and composition, computed once per process:
# every gate run's start records them (a mutant run starts one gate run per mutant).
_PAIRS: dict[tuple[int, str, str], tuple[MachinePlan, Any]] = {}


def _once(kind: str, plan: MachinePlan, composition: Composition, make: Callable[[], Any]
          ) -> Any:
    key = (id(plan), composition.name, kind)
    known = _PAIRS.get(key)
    if known is None or known[0] is not plan:
        known = _PAIRS[key] = (plan, make())
    return known[1]


def pair_universe(plan: MachinePlan, composition: Composition) -> list[str]:
    """Every pair the composition's walk aims at: the drawn transitions reachable from the
    slot's default configuration, times the in-flight phases reachable from it."""
    return list(_once("universe", plan, composition, lambda: _pair_universe(plan, composition)))


def _pair_universe(plan: MachinePlan, composition: Composition) -> list[str]:
    g = _Graph.of(plan, composition.only)
    start = plan.machine.make(**default_slot(composition.slots[0]).config)
    transitions = g.instances(start)
    phases = {p for s in g.reachable(start) if (p := phase_of(plan.machine, s)) is not None}
    return sorted(pair_key(composition.name, t, p) for t in transitions for p in phases)


def _sendable(g: _Graph, state: State, action: Action) -> bool:
    """Whether the harness can ever send `action` in `state`. An operation that may wait for
    ever (an INFINITE timeout) is sent only once a look with a zero timeout has shown it returns
    (`LiveCase.lookout`): the look must leave the state as it is, or lead to one state from
    which a step that does not wait leads straight back (taken again after the look)."""
    machine = g.machine.name
    if not blocks(machine, Action("", action.op, action.args)):
        return True
    look = zero_wait(machine, Action("", action.op, action.args))
    if look.args == action.args:
        return False

    def ends(where: State, act: Action) -> set[State]:
        return {nxt for a, nxt in g.moves.get(where, ()) if a == act}

    after = ends(state, Action("", look.op, look.args))
    if after == {state}:
        return True
    if len(after) != 1:
        return False
    there = next(iter(after))
    return any(nxt == state and not blocks(machine, back) and ends(there, back) == {state}
               for back, nxt in g.moves.get(there, ()))


def not_drivable(plan: MachinePlan, composition: Composition) -> dict[str, str]:
    """The pairs of `pair_universe` no walk can take, each with the reason: every state and
    action the pair's transition stands for is one the harness never sends (`_sendable`)."""
    return dict(_once("not drivable", plan, composition,
                      lambda: _not_drivable(plan, composition)))


def _not_drivable(plan: MachinePlan, composition: Composition) -> dict[str, str]:
    g = _Graph.of(plan, composition.only)
    instances = g.instances(plan.machine.make(**default_slot(composition.slots[0]).config))
    reasons = {}
    for transition, where in instances.items():
        if any(_sendable(g, s, a) for s, a in where):
            continue
        op = where[0][1]
        reasons[transition] = (
            f"{op.op}({', '.join(f'{k}={v}' for k, v in op.args)}) may wait for ever, so it is "
            f"sent only after a look with a zero timeout shows it returns; in each of its "
            f"{len(where)} states that look changes the state and no step leads back to it, "
            f"so the harness never sends it (the single-object walk leaves it uncovered too)")
    out: dict[str, str] = {}
    for key in pair_universe(plan, composition):
        transition = key.removeprefix(composition.name + "|").rpartition("|while ")[0]
        if transition in reasons:
            out[key] = reasons[transition]
    return out


class _Observer:
    """Cheap operations that leave a state as it is and, together, tell it apart from the
    states that differ from it in one field (an object the other object's step disturbed).

    The neighbours are the states one field away and the states one step of the object's own
    away: another object's step that disturbs this one most often makes it look as if it had
    taken a step of its own (a call completed, cancelled or signalled behind its back). One
    operation rarely tells a state from all of them: a pending RPC call's `server_test_cancel`
    shows a cancel request but not a call that completed, which `RpcAsyncGetCallStatus` shows.
    So the observers are chosen greedily: the operation that tells the state from the most
    neighbours, then the one that tells it from the most of those still left, and so on until
    none tells more (a set cover)."""

    def __init__(self, g: _Graph, pins: Mapping[str, str]) -> None:
        self.g = g
        self.pins = pins
        self.states = sorted(g.moves, key=repr)
        self._memo: dict[State, tuple[Action, ...]] = {}
        self._expected: dict[tuple[State, Action], tuple[str, ...] | None] = {}
        self._around: dict[tuple[int, State], list[State]] | None = None
        self._telling: dict[State, tuple[Action, ...]] = {}

    @staticmethod
    def of_graph(g: _Graph, pins: Mapping[str, str]) -> _Observer:
        """The observers of `g`'s states under `pins`, chosen once per state for every walk
        and repetition case of the run (and every mutant run) that looks with them."""
        key = (id(g), tuple(sorted(pins.items())))
        known = _OBSERVERS.get(key)
        if known is None or known[0] is not g:
            known = _OBSERVERS[key] = (g, _Observer(g, pins))
        return known[1]

    def _one_field_away(self, state: State) -> set[State]:
        """The states of the graph that differ from `state` in exactly one field."""
        if self._around is None:
            # Each state under each of its fields blanked out: two states differ in that
            # field alone exactly when they share that blanked key.
            self._around = {}
            for each in self.states:
                for i in range(len(each)):
                    self._around.setdefault((i, each[:i] + each[i + 1:]), []).append(each)
        return {other for i in range(len(state))
                for other in self._around.get((i, state[:i] + state[i + 1:]), ())
                if other[i] != state[i]}

    def _outcomes(self, state: State, action: Action) -> tuple[str, ...] | None:
        key = (state, action)
        if key not in self._expected:
            result = step(self.g.machine, state, action.op, action.args, self.pins)
            self._expected[key] = (None if result.kind is not Kind.DEFINED or not result.allowed
                                   else tuple(sorted(a.describe() for a in result.allowed)))
        return self._expected[key]

    def _tells(self, state: State, action: Action, near: Iterable[State]) -> set[State]:
        """The neighbours in `near` whose allowed outcomes of `action` differ from `state`'s."""
        here = self._outcomes(state, action)
        return {n for n in near
                if (there := self._outcomes(n, action)) is not None and there != here}

    def of(self, state: State) -> tuple[Action, ...]:
        """The observers of `state`, best first; empty when no cheap operation leaves it as
        it is."""
        if state not in self._memo:
            ends: dict[Action, set[State]] = {}
            for action, nxt in self.g.moves.get(state, ()):
                ends.setdefault(action, set()).add(nxt)
            loops = sorted((a for a, e in ends.items() if e == {state}
                            and a.op != "wait_notification"
                            and not any(k == "timeout" and v != "zero" for k, v in a.args)),
                           key=repr)
            left = self._one_field_away(state)
            left |= {nxt for e in ends.values() for nxt in e} - {state}
            chosen: list[Action] = []
            while loops:
                told = {a: self._tells(state, a, left) for a in loops}
                best = max(loops, key=lambda a: len(told[a]))  # the first of the best
                if chosen and not told[best]:
                    break
                chosen.append(best)
                loops.remove(best)
                left -= told[best]
            self._memo[state] = tuple(chosen)
        return self._memo[state]

    def telling(self, state: State) -> tuple[Action, ...]:
        """Every cheap operation that leaves `state` as it is and tells it from at least one of
        its neighbours (the same neighbours as `of`), not a minimal cover: two operations that
        tell the same states apart are both asked, so a fault in one of them shows although
        the other answers right. `of`'s first observer comes first."""
        if state not in self._telling:
            ends: dict[Action, set[State]] = {}
            for action, nxt in self.g.moves.get(state, ()):
                ends.setdefault(action, set()).add(nxt)
            near = {s for s in self.states
                    if sum(x != y for x, y in zip(s, state, strict=True)) == 1}
            near |= {nxt for e in ends.values() for nxt in e} - {state}
            cover = self.of(state)
            self._telling[state] = (*cover, *(
                a for a in sorted(ends, key=repr)
                if a not in cover and ends[a] == {state} and a.op != "wait_notification"
                and not any(k == "timeout" and v != "zero" for k, v in a.args)
                and self._tells(state, a, near)))
        return self._telling[state]


def observer(plan: MachinePlan, pins: Mapping[str, str]) -> _Observer:
    """The observers of `plan`'s states under `pins` (what the repetition cases look with)."""
    return _Observer.of_graph(_Graph.of(plan), pins)


_OBSERVERS: dict[tuple[int, tuple[tuple[str, str], ...]], tuple[_Graph, _Observer]] = {}


class _Reader:
    """The operation that reads back a state's echoed value (Finish_ at SIGNALED, the final
    RpcAsyncCompleteCall once the call has finished), when the state holds one and every outcome
    the model allows for it delivers the value."""

    def __init__(self, g: _Graph, pins: Mapping[str, str]) -> None:
        self.g = g
        self.pins = pins
        self.field, self.ops = ECHOES.get(g.machine.name, ("", ()))
        self._memo: dict[State, Action | None] = {}

    def held(self, state: State) -> object:
        """The echoed value `state` holds (0 or None: none)."""
        return self.g.machine.view(state).get(self.field) if self.field else None

    def of(self, state: State) -> Action | None:
        if state not in self._memo:
            found = None
            if self.held(state):
                for action in sorted(self.g.actions.get(state, ()), key=repr):
                    if action.op not in self.ops:
                        continue
                    result = step(self.g.machine, state, action.op, action.args, self.pins)
                    if result.kind is Kind.DEFINED and result.allowed and all(
                            any(name == self.field for name, _ in a.outputs)
                            for a in result.allowed):
                        found = action
                        break
            self._memo[state] = found
        return self._memo[state]


def walk_pairs(runner: CaseRunner, plan: MachinePlan, composition: Composition,
               budget: MultiBudget, covered: set[str] | None = None,
               ) -> Iterator[tuple[Case, CaseResult]]:
    """Walk the composition's two objects until every pair is covered, a segment makes no
    progress, or the budget is spent; yields each segment's case and result. `covered`
    collects the pairs covered (across compositions). A failing segment ends the walk: it is
    reported once. An exception in the walk's own code ends it with one `error` case."""
    started = time.perf_counter()
    done = covered if covered is not None else set()
    segments = 0
    try:
        for segment in _walk(runner, plan, composition, budget, done):
            segments += 1
            yield segment
    except Exception as exc:
        case = Case(f"{composition.name}-{segments:03d}", "multi",
                    f"pair walk of {composition.name}", (), ())
        yield case, runner.result(case, Verdict.ERROR, started, [], set(),
                                  message=f"harness error: {type(exc).__name__}: {exc}",
                                  evidence=harness_evidence(exc))


def _walk(runner: CaseRunner, plan: MachinePlan, composition: Composition, budget: MultiBudget,
          covered: set[str]) -> Iterator[tuple[Case, CaseResult]]:
    machine = plan.machine
    g = _Graph.of(plan, composition.only)
    observer = _Observer.of_graph(g, runner.capabilities.pins)
    reader = _Reader(g, runner.capabilities.pins)
    universe = set(pair_universe(plan, composition)) - set(not_drivable(plan, composition))
    # What is left, by phase: the drawn transitions not yet taken while the other is there.
    pending: dict[str, set[str]] = {}
    for key in universe - covered:
        transition, _, phase = key.rpartition("|while ")
        pending.setdefault(phase, set()).add(transition.removeprefix(composition.name + "|"))
    by_abstract = g.instances(machine.make(**default_slot(composition.slots[0]).config))
    phase_states: dict[str, set[State]] = {}
    for s in g.moves:
        if (p := phase_of(machine, s)) is not None:
            phase_states.setdefault(p, set()).add(s)
    specs = tuple(default_slot(name) for name in composition.slots)

    def wanted(phase: str, skip: set[tuple[State, Action]]) -> dict[State, list[Action]]:
        out: dict[State, list[Action]] = {}
        for t in pending.get(phase, ()):
            for s, a in by_abstract.get(t, ()):
                if (s, a) not in skip:
                    out.setdefault(s, []).append(a)
        return out

    if reader.field and budget.crossed:
        crossed = _crossed_case(runner, g, reader, composition, specs)
        yield crossed
        if crossed[1].verdict not in (Verdict.PASS, Verdict.NOT_APPLICABLE):
            return
    start = machine.make(**default_slot(composition.slots[0]).config)
    if composition.only is not None and machine.name in NOTIFIES and budget.crossed and \
            set(_owing(g, runner.capabilities.pins)) & g.reachable(start):
        # A pair walk of one class that is notified: each object's notification must reach its
        # own handle, whichever was issued or finished last.
        crossed = _crossed_notes_case(runner, g, composition, specs)
        yield crossed
        if crossed[1].verdict not in (Verdict.PASS, Verdict.NOT_APPLICABLE):
            return

    sessions = budget.cases if composition.only is None else max(1, budget.cases // CLASS_SHARE)
    for number in range(sessions):
        if not any(pending.values()):
            return
        before = sum(map(len, pending.values()))
        case_id = f"{composition.name}-{number:03d}"
        started = time.perf_counter()
        live = runner.open(case_id, specs)
        pairs: list[str] = []
        skip: set[tuple[State, Action]] = set()  # not sendable in this session
        toggle = number % 2
        # With three objects, each in turn stays in flight while the other two walk the pairs.
        bystander = (composition.slots[number % len(composition.slots)]
                     if len(composition.slots) > 2 else None)
        try:
            _segment(live, g, observer, composition, pending, wanted, by_abstract,
                     phase_states, skip, pairs, budget.case_steps, toggle, bystander)
        except Exception as exc:
            live.harness_error(exc)
        finally:
            live.close()
        covered.update(pairs)
        progress = before != sum(map(len, pending.values()))
        if not live.trace and live.verdict is Verdict.PASS:
            return
        steps = tuple(Action(t.slot, t.op, tuple(t.args.items())) for t in live.trace)
        rules = tuple(dict.fromkeys(r for t in live.trace for r in t.rules))
        case = Case(case_id, "multi",
                    f"pair walk of {composition.name} ({' and '.join(composition.slots)} of "
                    f"{machine.name} in one session), segment {number}: {len(live.trace)} "
                    f"steps, {len(pairs)} new pairs", specs, steps, rules)
        result = runner.result(case, live.verdict, started, live.trace, live.covered,
                               message=live.message, evidence=live.evidence)
        yield case, replace(result, pairs=sorted(pairs))
        if live.verdict is not Verdict.PASS or not progress:
            return


def _take(live: LiveCase, slot: str, action: Action) -> bool | None:
    """Send one action on `slot`: True when it went as the model allows, False when the case
    failed, None when it was not sent (not defined or not offered here: the case goes on)."""
    full = Action(slot, action.op, action.args)
    if live.kind(full) is not Kind.DEFINED or not live.offered(full):
        return None
    sent = len(live.trace)
    if live.step(full):
        return True
    if live.verdict is Verdict.PASS and len(live.trace) == sent:
        return None
    return False


def _state(live: LiveCase, slot: str) -> State | None:
    states = live.trackers[slot].states
    return next(iter(states)) if len(states) == 1 else None


def _cross(live: LiveCase, g: _Graph, reader: _Reader, slots: tuple[str, str]) -> str:
    """Both orders of: the first object is given value 1, then the second value 2, then the
    first's value is read back, then the second's. Returns what could not be done ("" when
    all was)."""
    holding = {v: {s for s in g.moves if reader.held(s) == v and reader.of(s) is not None}
               for v in (1, 2)}
    for order in (slots, slots[::-1]):
        for slot, value in zip(order, (1, 2), strict=True):
            start = _state(live, slot)
            route = g.route(start, goal=holding[value]) if start is not None else None
            if route is None:
                return f"{slot} cannot be brought to hold the value {value}"
            for action, _ in route:
                if not _take(live, slot, action):
                    return f"{slot}: {action.op} was not sent"
        for slot in order:
            here = _state(live, slot)
            check = reader.of(here) if here is not None else None
            if check is None or not _take(live, slot, check):
                return f"{slot}: its value could not be read back"
    return ""


# The operation that collects an object's completion notification, and the field that counts the
# notifications collected (RPC-CLI-NOTIFY-01..05: each call's own notification, on its own
# handle). A state *owes* a notification when every allowed outcome of the operation raises the
# count.
NOTIFIES: Mapping[str, tuple[str, str]] = {
    "rpc_call": ("wait_notification", "notes"),
}


def _owing(g: _Graph, pins: Mapping[str, str]) -> dict[State, Action]:
    """The states that owe a notification, with the action that collects it."""
    op, count = NOTIFIES[g.machine.name]
    owing: dict[State, Action] = {}
    for state, actions in g.actions.items():
        before = g.machine.view(state)[count]
        for action in actions:
            if action.op != op:
                continue
            result = step(g.machine, state, action.op, action.args, pins)
            if result.kind is Kind.DEFINED and result.allowed and all(
                    _more(g.machine.view(a.next_state)[count], before) for a in result.allowed):
                owing[state] = action
                break
    return owing


def _more(after: object, before: object) -> bool:
    return isinstance(after, int) and isinstance(before, int) and after > before


def _cross_notes(live: LiveCase, g: _Graph, pins: Mapping[str, str],
                 slots: tuple[str, str]) -> str:
    """Each order of issue and of completion: both objects are put in flight, one after the
    other; then each in turn is finished by the server and its notification collected at once.
    A runtime that delivers one object's notification to the other (a target cached from the
    first call, a routine overwritten by the latest) shows whichever object was issued last.
    Returns what could not be done ("" when all was)."""
    machine = g.machine.name
    phase, values = PHASES[machine]
    issued = {s for s in g.moves if g.machine.view(s)[phase] == values[0]}
    owing = _owing(g, pins)
    if not owing:
        return "no state owes a notification (this class is not notified)"
    for issue in (slots, slots[::-1]):
        for finish in (issue, issue[::-1]):
            for slot in issue:
                start = _state(live, slot)
                route = g.route(start, goal=issued) if start is not None else None
                if route is None:
                    return f"{slot} cannot be put in flight"
                for action, _ in route:
                    if not _take(live, slot, action):
                        return f"{slot}: {action.op} was not sent"
            for slot in finish:
                start = _state(live, slot)
                route = g.route(start, goal=set(owing)) if start is not None else None
                if route is None:
                    return f"{slot} cannot be brought to owe a notification"
                for action, _ in route:
                    if not _take(live, slot, action):
                        return f"{slot}: {action.op} was not sent"
                here = _state(live, slot)
                if here is None or here not in owing or not _take(live, slot, owing[here]):
                    return f"{slot}: its notification could not be collected"
    return ""


def _crossing(runner: CaseRunner, case_id: str, specs: tuple[SlotSpec, ...],
              cross: Callable[[LiveCase], str], what: Callable[[int], str]
              ) -> tuple[Case, CaseResult]:
    """One session of a crossing (`cross`: '' when done, else why it could not be), described
    by `what` (given the session's step count); a crossing that could not be done in a passing
    session is not_applicable with the reason."""
    started = time.perf_counter()
    live = runner.open(case_id, specs)
    why = ""
    try:
        why = cross(live)
    except Exception as exc:
        live.harness_error(exc)
    finally:
        live.close()
    steps = tuple(Action(t.slot, t.op, tuple(t.args.items())) for t in live.trace)
    rules = tuple(dict.fromkeys(r for t in live.trace for r in t.rules))
    case = Case(case_id, "multi", what(len(live.trace)), specs, steps, rules)
    verdict, message = live.verdict, live.message
    if verdict is Verdict.PASS and why:
        verdict, message = Verdict.NOT_APPLICABLE, f"the crossing could not be done: {why}"
    return case, runner.result(case, verdict, started, live.trace, live.covered,
                               message=message, evidence=live.evidence)


def _crossed_notes_case(runner: CaseRunner, g: _Graph, composition: Composition,
                        specs: tuple[SlotSpec, ...]) -> tuple[Case, CaseResult]:
    """One session of `_cross_notes` over the composition's first two objects."""
    first, second = composition.slots[:2]
    return _crossing(
        runner, f"{composition.name}-crossed-notes", specs,
        lambda live: _cross_notes(live, g, runner.capabilities.pins, (first, second)),
        lambda n: f"crossed notifications on {composition.name}: {first} and {second} put in "
                  f"flight in each order, then finished in each order, each one's notification "
                  f"collected as soon as it is owed ({n} steps)")


def _crossed_case(runner: CaseRunner, g: _Graph, reader: _Reader, composition: Composition,
                  specs: tuple[SlotSpec, ...]) -> tuple[Case, CaseResult]:
    """One session of `_cross` over the composition's first two objects."""
    first, second = composition.slots[:2]
    field_, ops = ECHOES[g.machine.name]
    return _crossing(
        runner, f"{composition.name}-crossed", specs,
        lambda live: _cross(live, g, reader, (first, second)),
        lambda n: f"crossed values on {composition.name}: {first} is given {field_} 1, then "
                  f"{second} {field_} 2, then {' and '.join(ops)} reads {first}'s back, then "
                  f"{second}'s; and the other way round ({n} steps)")


def _segment(live: LiveCase, g: _Graph, observer: _Observer, composition: Composition,
             pending: dict[str, set[str]],
             wanted: Callable[[str, set[tuple[State, Action]]], dict[State, list[Action]]],
             by_abstract: dict[str, list[tuple[State, Action]]],
             phase_states: dict[str, set[State]],
             skip: set[tuple[State, Action]], pairs: list[str], limit: int, toggle: int,
             bystander: str | None = None) -> None:
    machine = g.machine
    names = composition.slots
    # Where each phase's pending transitions are, kept up to date as they are taken or found
    # not sendable in this session (rebuilding it at every step would cost more than the step).
    targets_of = {phase: wanted(phase, skip) for phase in pending}

    def want(phase: str, _skip: object = None) -> dict[State, list[Action]]:
        return targets_of.get(phase, {})

    def drop(where: State, action: Action, phases: Iterable[str]) -> None:
        for phase in phases:
            left = targets_of.get(phase, {}).get(where)
            if left is not None and action in left:
                left.remove(action)
                if not left:
                    del targets_of[phase][where]

    def skip_(where: State, action: Action) -> None:
        skip.add((where, action))
        drop(where, action, list(targets_of))

    def cover(key: str, phase: str) -> None:
        pending[phase].discard(key)
        pairs.append(pair_key(composition.name, key, phase))
        for where, action in by_abstract.get(key, ()):
            drop(where, action, (phase,))

    def state(slot: str) -> State | None:
        return _state(live, slot)

    def take(slot: str, action: Action) -> bool | None:
        return _take(live, slot, action)

    def observe(slot: str) -> bool:
        # The look after a newly covered pair: every operation that tells the state from a
        # neighbour (`_Observer.telling`), not only a minimal cover of them.
        s = state(slot)
        if s is None:
            return True
        return all(take(slot, check) is not False for check in observer.telling(s))

    if bystander is not None:
        # The third object goes in flight first and stays there: the pairs are walked while
        # it holds a call too (the oldest one, not the most recent).
        start = state(bystander)
        goal: set[State] = set()
        for found in phase_states.values():
            goal |= found
        way = g.route(start, goal=goal, avoid=skip) if start is not None else None
        for action, _ in way or ():
            if not take(bystander, action):
                return

    while len(live.trace) < limit and any(pending.values()):
        states = {n: state(n) for n in names}
        if any(s is None for s in states.values()):
            live.note("the model cannot tell which state an object is in")
            return
        movers = tuple(n for n in names if n != bystander)
        roles = [(m, o) for m in movers for o in movers if m != o]
        if toggle:
            roles.reverse()
        # One object (the mover) is to take a pending transition while the other is in the
        # phase it is pending for. Of all (mover, phase) plans, the one with the fewest steps
        # left; on a tie, the one whose mover is already there (so a state that is hard to get
        # back to, like a call object not yet created, is used before it is left). The other
        # object steps first, then the mover.
        best: tuple[int, int, str, str, Action, str] | None = None  # key, slot, -, action, -
        for mover, other in roles:
            here, there = states[mover], states[other]
            assert here is not None and there is not None
            for phase, left in sorted(pending.items()):
                if not left:
                    continue
                targets = want(phase, skip)
                towards = g.route(here, wanted=targets, avoid=skip)
                if towards is None:
                    continue
                if phase_of(machine, there) == phase:
                    route: list[Move] | None = []
                else:
                    route = g.route(there, goal=phase_states.get(phase, set()), avoid=skip)
                if route is None:
                    continue
                key = (len(route) + len(towards), len(towards))
                if best is None or key < best[:2]:
                    if route:
                        best = (*key, other, "", route[0][0], phase)
                    elif towards:
                        best = (*key, mover, "", towards[0][0], phase)
                    else:
                        best = (*key, mover, other, min(targets[here], key=repr), phase)
        if best is None:
            return  # neither object can reach what is left from here: a new session
        _, _, slot, _, action, _ = best
        before = state(slot)
        assert before is not None
        result = take(slot, action)
        if result is None:
            skip_(before, action)
            continue
        if not result:
            return
        # Any step taken while another object is in flight counts, planned or not; after a new
        # pair every object is looked at (the one that moved last).
        key_ = abstract(machine, before, action.op, action.args)
        new = False
        for other in names:
            held = states[other]
            now = phase_of(machine, held) if other != slot and held is not None else None
            if now is not None and key_ in pending.get(now, ()):
                cover(key_, now)
                new = True
        if new and not all(observe(n) for n in (*(n for n in names if n != slot), slot)):
            return

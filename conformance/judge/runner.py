"""Runs cases against an adapter and judges every step with the model.

A case is a list of actions on named slots. For each step the runner asks the slot's `Tracker`
whether the operation is defined, sends the request (on a worker thread with a timeout), and
checks the observation against the model's allowed outcomes. The model then follows the observed
outcome. A step outside the allowed set fails the case; the trace says what was observed and what
was allowed, with the rules.

Two guards keep a verdict honest. An operation that may wait for ever (an INFINITE timeout) is
sent only once what was observed has established that it returns (see `LiveCase.step`), so a
deviation shows as a failure at once, not as a hang. And an exception in callgate's own code
while a case runs makes that case `error`, with the traceback as evidence; the run goes on.
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from callgate.conformance.cases.values import Binding, ValueChooser
from callgate.conformance.expectations import Expectations
from callgate.conformance.judge.declines import Absence, open_guarded, parse_absent
from callgate.conformance.judge.execution import Executor, StepTimeout
from callgate.conformance.judge.perform import (
    action_features,
    blocks,
    missing_features,
    perform,
    replay_slots,
    slot_machines,
    step_record,
    zero_wait,
)
from callgate.conformance.judge.waits import WaitLengths
from callgate.conformance.protocol.adapter import (
    Adapter,
    AdapterFault,
    Capabilities,
    NotApplicable,
    Request,
    Session,
    SlotSpec,
)
from callgate.conformance.results import CaseResult, StepRecord, Verdict, outputs_text
from callgate.model.families import MACHINES
from callgate.model.transitions import (
    Action,
    Allowed,
    Args,
    Kind,
    Machine,
    ModelError,
    State,
    Tracker,
    Value,
    step,
)

# How many times one planned case may steer back to its plan.
MAX_BRIDGES = 200
# How many steps (looks and ways back) may establish one wait for ever, and how long a way back
# may be.
MAX_LOOK_STEPS = 16
MAX_WAY_BACK = 6

# What an `error` verdict's message says about whose error it is (the shrinker reads them back:
# an adapter's fault or hang at a step is the implementation's, a harness error is callgate's).
ADAPTER_FAULT = ": adapter fault: "
ADAPTER_HUNG = ": the adapter hung: "
HARNESS_ERROR = "harness error: "


@dataclass(frozen=True)
class Case:
    """A named sequence of actions with its metadata (test262-style: id, description, rules)."""

    id: str
    kind: str
    description: str
    slots: tuple[SlotSpec, ...]
    steps: tuple[Action, ...]
    rules: tuple[str, ...] = ()
    # The outcome sets the model allowed at each step when the case was planned (for people:
    # the runner judges with the live tracker, which follows the implementation's choices).
    expected: tuple[tuple[str, ...], ...] = ()
    # For a planned single-slot case: the graph and the state each step should start from, so
    # the runner can steer back when the implementation takes another allowed outcome.
    graph: Any = field(default=None, compare=False, repr=False)
    sources: tuple[State, ...] = ()
    # The concrete argument values to send (a failed case's `replay["values"]`, to run it again
    # with the values that failed); None: drawn afresh (callgate.conformance.cases.values).
    values: Mapping[str, Mapping[str, int]] | None = field(default=None, compare=False)


def transition_key(machine: str, state: State, action: Action) -> str:
    """A stable name for a (state, action) pair of one machine: a unit of coverage."""
    found = _KEYS.get((machine, state, action.op, action.args))
    if found is None:
        if len(_KEYS) > 500_000:
            _KEYS.clear()
        args = ",".join(f"{k}={v}" for k, v in action.args)
        found = _KEYS[(machine, state, action.op, action.args)] = (
            f"{machine}|{','.join(map(str, state))}|{action.op}({args})")
    return found


# Every step names its transition; a run names the same few thousand again and again.
_KEYS: dict[tuple[str, State, str, Args], str] = {}


def initial_state(machine: Machine, config: Mapping[str, Value]) -> State:
    """The machine state a slot starts in, from its configuration."""
    return machine.make(**dict(config))


@dataclass
class CaseRunner:
    """Runs cases one at a time against one adapter."""

    adapter: Adapter
    capabilities: Capabilities
    step_timeout: float = 10.0
    # Which concrete value each abstract argument gets (the gate seeds it from the run's seed).
    values: ValueChooser = field(default_factory=ValueChooser)
    # Known deviations: where an entry says what the implementation does instead, the walk and
    # the directed cases follow it past the deviation (see `LiveCase.follow`).
    expectations: Expectations | None = None
    # How long a wait lasts where the model says nothing can arrive (calibrated on this adapter).
    waits: WaitLengths = field(default_factory=WaitLengths)
    # Keep every case's trace, passing ones too (a replay shows what it did); by default only a
    # failing or erring case (or one that followed a deviation) keeps its trace.
    keep_traces: bool = False
    # `callgate run --record-trace`: a callgate.conformance.trace.record.TraceRecorder.
    recorder: Any = None
    executor: Executor = field(init=False)
    absences: list[Absence] = field(init=False, default_factory=list)
    _ways: dict[tuple[str, State, State], tuple[tuple[str, Args], ...] | None] = field(
        init=False, default_factory=dict)
    # What every step writes in its record, worked out once: a set of states as text, and a
    # tuple of allowed outcomes (the model's memo hands out the same tuple) as their texts.
    _described: dict[tuple[str, frozenset[State]], str] = field(init=False, default_factory=dict)
    _outcome_texts: dict[int, tuple[tuple[Allowed, ...], list[str]]] = field(
        init=False, default_factory=dict)

    def describe_states(self, machine: str, states: frozenset[State]) -> str:
        """`states` as the trace shows them (one text per state, in repr order)."""
        key = (machine, states)
        text = self._described.get(key)
        if text is None:
            text = self._described[key] = " | ".join(
                MACHINES[machine].describe(s) for s in sorted(states, key=repr))
        return text

    def describe_outcomes(self, allowed: tuple[Allowed, ...]) -> list[str]:
        """Each allowed outcome's text (a new list: the caller's record keeps it)."""
        known = self._outcome_texts.get(id(allowed))
        if known is None or known[0] is not allowed:
            if len(self._outcome_texts) > 100_000:  # tuples built afresh (several states) pile up
                self._outcome_texts.clear()
            known = self._outcome_texts[id(allowed)] = (allowed, [a.describe() for a in allowed])
        return list(known[1])

    def __post_init__(self) -> None:
        self.executor = Executor(self.step_timeout)
        # The operations and argument forms the handshake declares absent (its features were
        # checked by the gate; a problem here is reported there).
        self.absences = parse_absent(self.capabilities.absent)[0]

    def way_back(self, machine: Machine, pins: Mapping[str, str], start: State, goal: State,
                 ) -> tuple[tuple[str, Args], ...] | None:
        """A shortest way from `start` to `goal` (see `LiveCase.way_back`), as (op, args) steps;
        None if there is none within MAX_WAY_BACK steps. Cached: pins and features are the
        runner's."""
        key = (machine.name, start, goal)
        if key in self._ways:
            return self._ways[key]
        features = set(self.capabilities.features)
        moves = [(op.name, args) for op in machine.operations for args in op.all_args()
                 if action_features(machine.name, Action("", op.name, args)) <= features
                 and not blocks(machine.name, Action("", op.name, args))]
        parent: dict[State, tuple[State, tuple[str, Args]] | None] = {start: None}
        frontier = [start]
        found: tuple[tuple[str, Args], ...] | None = () if start == goal else None
        for _ in range(MAX_WAY_BACK):
            if found is not None or not frontier:
                break
            nxt: list[State] = []
            for node in frontier:
                for op, args in moves:
                    result = step(machine, node, op, args, pins)
                    ends = {a.next_state for a in result.allowed}
                    if result.kind is not Kind.DEFINED or len(ends) != 1:
                        continue
                    (end,) = ends
                    if end in parent:
                        continue
                    parent[end] = (node, (op, args))
                    nxt.append(end)
                    if end == goal:
                        path: list[tuple[str, Args]] = []
                        at = end
                        while (link := parent[at]) is not None:
                            path.append(link[1])
                            at = link[0]
                        found = tuple(path[::-1])
                        break
                if found is not None:
                    break
            frontier = nxt
        self._ways[key] = found
        return found

    def close(self) -> None:
        self.executor.close()
        if self.recorder is not None:
            self.recorder.close()

    def missing_features(self, case: Case) -> set[str]:
        return missing_features(case.slots, case.steps, self.capabilities.features)

    def open(self, case_id: str, slots: Sequence[SlotSpec],
             values: Mapping[str, Mapping[str, int]] | None = None,
             follow: bool = False) -> LiveCase:
        """Open a session for `slots` and the trackers that follow it; `values` presets the
        concrete argument values (see `Case.values`); `follow`: go on past a step that a listed
        deviation describes (the directed cases and the walk do; stateful, multi-object and
        parallel cases stop at it as before)."""
        # Every session's declines are held to the protocol's rules (judge/declines.py).
        session: Session = self.executor.call(
            lambda: open_guarded(lambda: self.adapter.open_session(slots), slots,
                                 self.absences))
        return LiveCase(self, case_id, tuple(slots), session, self.values.binding(values),
                        follow=follow)

    def run(self, case: Case) -> CaseResult:
        """Run one case. Whatever goes wrong, a result comes back: adapter trouble and
        exceptions in callgate's own code are `error` verdicts, never exceptions."""
        started = time.perf_counter()
        try:
            return self._run(case, started)
        except Exception as exc:  # a bug in the harness outside any step: this case only
            return self.result(case, Verdict.ERROR, started, [], set(),
                               message=f"harness error: {type(exc).__name__}: {exc}",
                               evidence=harness_evidence(exc))

    def _run(self, case: Case, started: float) -> CaseResult:
        missing = self.missing_features(case)
        if missing:
            return self.result(case, Verdict.NOT_APPLICABLE, started, [], set(),
                               message=f"the adapter lacks {', '.join(sorted(missing))}")
        try:
            live = self.open(case.id, case.slots, case.values, follow=True)
        except (StepTimeout, AdapterFault) as exc:
            return self.result(case, Verdict.ERROR, started, [], set(),
                               message=f"opening a session failed: {exc}",
                               evidence=getattr(exc, "evidence", ""))
        except NotApplicable as exc:
            return self.result(case, Verdict.NOT_APPLICABLE, started, [], set(), message=str(exc))
        try:
            if case.graph is not None and case.sources:
                self._follow_plan(live, case)
            else:
                for action in case.steps:
                    kind = live.kind(action)
                    if kind is not Kind.DEFINED:
                        live.note(f"stopped before {action}: after the implementation's choices "
                                  f"the model has it {kind.value}")
                        break
                    if not live.step(action):
                        break
        except Exception as exc:  # callgate's own code, between steps
            live.harness_error(exc)
        finally:
            live.close()
        return self.result(case, live.verdict, started, live.trace, live.covered,
                           message=live.message, evidence=live.evidence, executed=len(live.trace),
                           values=live.values, covered_after=live.covered_after)

    def _follow_plan(self, live: LiveCase, case: Case) -> None:
        """Take the planned steps; where the implementation chose another allowed outcome and
        left the planned state, walk back to it by a shortest path (or stop if none exists)."""
        from callgate.model import explorer  # the graph library is only needed for planned cases
        slot = case.slots[0].name
        bridged = 0
        for action, source in zip(case.steps, case.sources, strict=True):
            states = live.trackers[slot].states
            if states != {source}:
                if len(states) != 1 or bridged >= MAX_BRIDGES:
                    live.note(f"stopped before {action}: the implementation's choices left the "
                              f"plan")
                    return
                (actual,) = states
                try:
                    bridge = explorer.shortest_path(case.graph, [actual], source)
                except ModelError:
                    live.note(f"stopped before {action}: the planned state cannot be reached "
                              f"again after the implementation's choices")
                    return
                bridged += 1
                for edge in bridge:
                    if live.trackers[slot].states != {edge.source}:
                        break  # another choice on the way: the next step bridges again
                    if not live.step(Action(slot, edge.op, edge.args)):
                        return
                if live.trackers[slot].states != {source}:
                    continue  # another choice on the way: try again at the next step
            if not live.step(action):
                return

    def result(self, case: Case, verdict: Verdict, started: float, trace: list[StepRecord],
                covered: set[str], message: str = "", evidence: str = "",
               executed: int | None = None, values: Binding | None = None,
               covered_after: set[str] | None = None) -> CaseResult:
        failed_rules = trace[-1].rules if trace and verdict is Verdict.FAIL else []
        # Steps a listed deviation described, which the case followed: a case that broke
        # nothing else is a known deviation, never a pass (DESIGN.md, Verdicts).
        deviations = list(dict.fromkeys(r for t in trace if t.deviation
                                        for r in t.deviation.split(",")))
        if deviations and verdict in (Verdict.PASS, Verdict.NOT_APPLICABLE):
            # A case that showed a known deviation and then could go no further (what came
            # next is not applicable) still showed the deviation: it is not "not applicable".
            stopped = message if verdict is Verdict.NOT_APPLICABLE else ""
            verdict, failed_rules = Verdict.EXPECTED_FAIL, deviations
            followed = "; ".join(d.reason for d in (self.expectations.deviations
                                                    if self.expectations else ())
                                 if d.rule in deviations)
            message = (f"followed {len(deviations)} known deviation(s) "
                       f"({', '.join(deviations)}) and broke nothing else"
                       + (f"; then stopped: {stopped}" if stopped else "")
                       if stopped or not message else message)
        else:
            followed = ""
        # A not-applicable case keeps its trace too: its last step is the one the adapter could
        # not take, which the report's reach figure needs (callgate.conformance.report.reach).
        keep_trace = (self.keep_traces
                      or verdict in (Verdict.FAIL, Verdict.ERROR, Verdict.NOT_APPLICABLE)
                      or bool(deviations))
        return CaseResult(
            id=case.id, kind=case.kind, description=case.description, rules=list(case.rules),
            verdict=verdict, steps=len(trace) if executed is None else executed,
            seconds=time.perf_counter() - started,
            message=message, evidence=evidence[-4000:], trace=trace if keep_trace else [],
            covered=sorted(covered), slots=slot_machines(case.slots),
            failed_rules=list(failed_rules),
            values=values.used_json() if values is not None else {},
            expectation=followed, deviations=deviations,
            covered_after_deviation=sorted(covered_after or ()),
            replay={"slots": replay_slots(case.slots),
                    "steps": [{"slot": t.slot, "op": t.op, "args": dict(t.args)} for t in trace]
                    if trace else [{"slot": a.slot, "op": a.op, "args": dict(a.args)}
                                   for a in case.steps],
                    **({"values": values.as_json()} if values is not None and values.bound
                       else {})})


def harness_evidence(exc: BaseException) -> str:
    """The traceback of an exception in callgate's own code, as a case's evidence."""
    return "".join(traceback.format_exception(exc))[-4000:]


@dataclass(frozen=True)
class Taken:
    """A step a live case took and the model accepted: the action and the model states (of its
    slot) before and after it. What the blocking guard reads back."""

    action: Action
    before: frozenset[State]
    after: frozenset[State]


class LiveCase:
    """One open session and the model trackers that follow it, step by step."""

    def __init__(self, runner: CaseRunner, case_id: str, slots: tuple[SlotSpec, ...],
                 session: Session, values: Binding | None = None, follow: bool = False) -> None:
        self.runner = runner
        self.values = values if values is not None else runner.values.binding()
        self.case_id = case_id
        self.session = session
        self.machines = slot_machines(slots)
        self.features = frozenset(runner.capabilities.features)
        self.trackers = {s.name: Tracker(MACHINES[s.machine], runner.capabilities.pins,
                                         [initial_state(MACHINES[s.machine], s.config)])
                         for s in slots}
        self.trace: list[StepRecord] = []
        self.covered: set[str] = set()
        self.verdict = Verdict.PASS
        self.message = ""
        self.evidence = ""
        # How the case went wrong, when it did: "mismatch" (an observation the model does not
        # allow), "hang", "adapter fault", "not applicable" or "harness error".
        self.failure = ""
        self.closed = False
        self._taken: dict[str, list[Taken]] = {}
        # Following listed deviations (`follow`): the rules of those followed so far, and the
        # transitions covered only after the first of them.
        self.follow = follow and runner.expectations is not None
        self.followed: list[str] = []
        self.covered_after: set[str] = set()
        self._covered_before: set[str] = set()
        self.slots = slots
        self.recorded = runner.recorder.session(case_id) if runner.recorder is not None else ""

    def _record(self, action: Action, sent: Mapping[str, int], observation: Any,
                invoked: float) -> None:
        """Write the step to the run's trace (`--record-trace`), when one is recorded."""
        if self.runner.recorder is not None:
            self.runner.recorder.step(
                self.recorded, action.slot, self.machines[action.slot], action.op,
                dict(action.args), sent, observation.code if observation is not None else None,
                observation.outputs if observation is not None else {}, invoked,
                time.time() if observation is not None else None)

    def kind(self, action: Action) -> Kind:
        return self.trackers[action.slot].kind(action.op, action.args)

    def offered(self, action: Action) -> bool:
        """DEFINED in the model now, within the adapter's features, and, for an operation that
        may wait for ever, established as returning (or establishable by a look first)."""
        if self.kind(action) is not Kind.DEFINED:
            return False
        if not action_features(self.machines[action.slot], action) <= self.features:
            return False
        return not blocks(self.machines[action.slot], action) or self.lookout(action) is not None

    def note(self, message: str) -> None:
        self.message = message

    def lookout(self, action: Action) -> list[Action] | None:
        """The steps that establish, from observation, that `action` (which may wait for ever)
        returns at once: [] when the last steps on its slot already did, None when nothing can.

        The model having `action` DEFINED in every candidate state is not enough: that belief
        came from earlier answers (a Signal that said S_OK), and an implementation that did not
        do what it answered would leave INFINITE waiting for ever, a hang where there is a
        failure to report. So the harness first looks with the same operation and a zero
        timeout, judged like any step: where that look leaves every candidate state as it is, it
        is taken just before; where it changes the state (a zero Wait on a signalled auto-reset
        event consumes the signal), it is taken and then the step that led to the state is
        taken again from the state it started in, so that what made the wait return has just
        been seen to work. Where no single step leads back, the look is taken and the way back
        to the state is walked (steps whose outcome the model fixes), twice if need be, until
        the step that entered the state last is the one the look was taken after
        (`_seen_to_work`); a look whose answer left the state as it was establishes it too.
        Anything else is not established, and `action` is not sent."""
        slot = action.slot
        machine = self.machines[slot]
        tracker = self.trackers[slot]
        if tracker.kind(action.op, action.args) is not Kind.DEFINED:
            return None
        look = zero_wait(machine, action)
        needed = action_features(machine, look)
        if look == action or tracker.kind(look.op, look.args) is not Kind.DEFINED or \
                not needed <= self.features:
            return None
        states = tracker.states
        ends = {s: {a.next_state for a in step(tracker.machine, s, look.op, look.args,
                                                 tracker.pins).allowed} for s in states}
        if any(not e for e in ends.values()):
            return None
        taken = self._taken.get(slot, [])
        if all(e == {s} for s, e in ends.items()):  # the look changes nothing: take it just before
            if taken and taken[-1].action == look and taken[-1].after == states:
                return []
            return [look]
        if len(states) != 1:
            return None
        (here,) = states
        # The look was just taken, and the implementation's answer left the state as it was.
        if taken and taken[-1].action == look and taken[-1].before == states == taken[-1].after:
            return []
        if self._seen_to_work(slot, here, look):
            return []  # [X into here, look, ..., X into here]: includes [step, look, step again]
        if len(ends[here]) == 1 and taken:
            (there,) = ends[here]
            back = taken[-1]
            if back.before == {there} and back.after == {here} and not blocks(machine, back.action):
                again = step(tracker.machine, there, back.action.op, back.action.args,
                             tracker.pins)
                if again.kind is Kind.DEFINED and {a.next_state for a in again.allowed} == {here}:
                    return [look, back.action]
        if all(e == here or self.way_back(slot, e, here) is not None for e in ends[here]):
            return [look]
        return None

    def _seen_to_work(self, slot: str, here: State, look: Action) -> bool:
        """Whether the slot's last step X entered `here` from a state P, and the latest look
        from `here` (answered and judged) was taken right after the same step X from the same
        P: what made the wait return has been seen to work and has just been done again."""
        taken = self._taken.get(slot, [])
        if not taken:
            return False
        last = taken[-1]
        if last.after != {here} or len(last.before) != 1 or \
                blocks(self.machines[slot], last.action):
            return False
        for j in range(len(taken) - 2, 0, -1):
            done = taken[j]
            if done.action == look and done.before == {here}:
                entered = taken[j - 1]
                return (entered.action == last.action and entered.before == last.before
                        and entered.after == {here})
        return False

    def way_back(self, slot: str, start: State, goal: State) -> list[Action] | None:
        """A shortest way from `start` to `goal` on the slot's machine through steps whose
        outcome the model fixes to one next state (under the adapter's pins), none of which may
        wait for ever and all within the adapter's features; None if there is none within
        MAX_WAY_BACK steps."""
        tracker = self.trackers[slot]
        found = self.runner.way_back(tracker.machine, tracker.pins, start, goal)
        return None if found is None else [Action(slot, op, args) for op, args in found]

    def _establish(self, action: Action) -> bool:
        """Take the steps `lookout` asks for before `action` (which may wait for ever), and the
        way back after a look that left the state, until `lookout` says nothing more is needed;
        False (with a note) if that does not come to pass."""
        slot = action.slot
        tracker = self.trackers[slot]
        first = self.lookout(action)
        if first is None:
            self.note(f"not sent: {action} may wait for ever, and what was observed "
                      f"has not established that it returns")
            return False
        home = tracker.states
        for _ in range(MAX_LOOK_STEPS):
            if tracker.states == home:
                first = self.lookout(action)
                if first == []:
                    return True
                if first is None:
                    break
                todo = first
            elif len(tracker.states) == 1 and len(home) == 1:
                (now,), (goal,) = tracker.states, home
                todo = (self.way_back(slot, now, goal) or [])[:1]
                if not todo:
                    break
            else:
                break
            for nxt in todo:
                if not self._perform(nxt):
                    return False
        self.note(f"not sent: {action}: the looks before it did not establish that it returns")
        return False

    def step(self, action: Action) -> bool:
        """Perform and judge one action; False if the case is over (with the verdict set), or
        if the action was not sent (a wait for ever the observations have not established)."""
        if self.verdict is not Verdict.PASS:
            return False
        try:
            if blocks(self.machines[action.slot], action) and not self._establish(action):
                return False
            return self._perform(action)
        except Exception as exc:  # callgate's own code (judging, recording): not the adapter's
            self.harness_error(exc, action)
            return False

    def harness_error(self, exc: BaseException, action: Action | None = None) -> None:
        """An exception in callgate's own code: the case is `error`, the traceback its evidence."""
        where = f"{action}: " if action is not None else ""
        if self.verdict is not Verdict.PASS:  # the verdict was shown first: keep it, say both
            self.evidence = (f"{self.evidence}\nthen a harness error: "
                             f"{harness_evidence(exc)}")[-4000:]
            return
        self.verdict, self.failure = Verdict.ERROR, "harness error"
        self.message = f"{where}{HARNESS_ERROR}{type(exc).__name__}: {exc}"
        self.evidence = harness_evidence(exc)

    def _perform(self, action: Action) -> bool:
        machine = self.machines[action.slot]
        tracker = self.trackers[action.slot]
        allowed = tracker.expected(action.op, action.args)
        before = tracker.states
        describe_before = self.runner.describe_states(machine, before)
        args, wait, sent = self.values.concrete(
            machine, action, tracker, self.runner.waits.wait_ms(machine, action, tracker, allowed))
        request = Request(action.slot, action.op, args, wait)
        t0 = time.perf_counter()
        wall0 = time.time()
        try:
            observation = perform(self.session, request, self.runner.executor.call)
        except Exception as raw:
            exc = raw if isinstance(raw, (AdapterFault, StepTimeout, NotApplicable)) else \
                AdapterFault(f"the adapter raised {type(raw).__name__}: {raw}",
                             "".join(traceback.format_exception(raw))[-4000:])
            if not isinstance(exc, NotApplicable):
                self._record(action, sent, None, wall0)
            self.trace.append(step_record(
                action, machine, None, allowed=[a.describe() for a in allowed], ok=False,
                rules=sorted({r for a in allowed for r in a.rules}), state_before=describe_before,
                seconds=time.perf_counter() - t0, started=wall0, ended=time.time(), sent=sent))
            if isinstance(exc, NotApplicable):
                self.verdict, self.message = Verdict.NOT_APPLICABLE, f"{action}: {exc}"
                self.failure = "not applicable"
            elif isinstance(exc, AdapterFault):
                self.verdict, self.message = Verdict.ERROR, f"{action}{ADAPTER_FAULT}{exc}"
                self.evidence = exc.evidence
                self.failure = "adapter fault"
            else:
                self.verdict, self.message = Verdict.ERROR, f"{action}{ADAPTER_HUNG}{exc}"
                self.failure = "hang"
            return False
        elapsed = time.perf_counter() - t0
        self.runner.waits.observe(machine, action.op, elapsed)
        self._record(action, sent, observation, wall0)
        # Echoed values ([out], reply, an abort code) go back to the abstract value they stand
        # for before the model judges them; the record keeps what the implementation answered.
        code, judged = self.values.observed(machine, action.op, observation.code,
                                            observation.outputs)
        judgement = tracker.observe(action.op, action.args, code, judged)
        if len(before) == 1:
            (state,) = before
            key = transition_key(machine, state, action)
            self.covered.add(key)
            if self.followed:
                if key not in self._covered_before:
                    self.covered_after.add(key)
            else:
                self._covered_before.add(key)
        record = step_record(
            action, machine, observation, allowed=self.runner.describe_outcomes(judgement.allowed),
            ok=judgement.ok, rules=list(judgement.rules), state_before=describe_before,
            seconds=elapsed, started=wall0, ended=time.time(), sent=sent)
        if not judgement.ok and self.follow and self.runner.expectations is not None:
            found = self.runner.expectations.follow(
                machine, before, action.op, action.args, observation.code, observation.outputs,
                judgement.rules)
            if found is not None:
                described, after = found
                tracker.states = after
                self.trace.append(replace(record, deviation=",".join(d.rule for d in described)))
                for deviation in described:
                    if deviation.rule not in self.followed:
                        self.followed.append(deviation.rule)
                # Nothing observed before a deviation establishes what follows it.
                self._taken.pop(action.slot, None)
                return True
        self.trace.append(record)
        if not judgement.ok:
            self.verdict, self.failure = Verdict.FAIL, "mismatch"
            outputs = f" with {outputs_text(record.outputs)}" if record.outputs else ""
            self.message = (f"{action}: observed {record.code_name or record.code}{outputs}; "
                            f"allowed: {'; '.join(record.allowed) or 'nothing'}")
            if self.values.bound:
                self.message += f" (concrete values: {self.values.describe()})"
            return False
        self._taken.setdefault(action.slot, []).append(Taken(action, before, tracker.states))
        return True

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self.runner.recorder is not None:
            self.runner.recorder.close_case(
                self.recorded, self.case_id, {s.name: (s.machine, s.config) for s in self.slots},
                self.values.as_json())
        try:
            self.runner.executor.call(self.session.close)
        except Exception as exc:  # a timeout, a fault, or whatever the adapter's close raised
            if self.verdict is Verdict.PASS:
                self.verdict, self.message = Verdict.ERROR, f"closing the session failed: {exc}"
                self.failure = "hang" if isinstance(exc, StepTimeout) else "adapter fault"

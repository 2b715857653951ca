"""Runs cases against an adapter and judges every step with the model.

A case is a list of actions on named slots. For each step the runner asks the slot's `Tracker`
whether the operation is defined, sends the request (on a worker thread with a timeout), and
checks the observation against the model's allowed outcomes. The model then follows the observed
outcome. A step outside the allowed set fails the case; the trace says what was observed and what
was allowed, with the rules.
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from callgate.conformance.judge.execution import Executor, StepTimeout
from callgate.conformance.judge.perform import (
    action_features,
    missing_features,
    perform,
    replay_slots,
    request_for,
    slot_machines,
    step_record,
    wait_ms,
)
from callgate.conformance.protocol.adapter import (
    Adapter,
    AdapterFault,
    Capabilities,
    NotApplicable,
    Session,
    SlotSpec,
)
from callgate.conformance.results import CaseResult, StepRecord, Verdict
from callgate.model.families import MACHINES
from callgate.model.transitions import (
    Action,
    Kind,
    Machine,
    ModelError,
    State,
    Tracker,
    Value,
)

# How many times one planned case may steer back to its plan.
MAX_BRIDGES = 200


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


def transition_key(machine: str, state: State, action: Action) -> str:
    """A stable name for a (state, action) pair of one machine: a unit of coverage."""
    args = ",".join(f"{k}={v}" for k, v in action.args)
    return f"{machine}|{','.join(map(str, state))}|{action.op}({args})"


def initial_state(machine: Machine, config: Mapping[str, Value]) -> State:
    """The machine state a slot starts in, from its configuration."""
    return machine.make(**dict(config))


@dataclass
class CaseRunner:
    """Runs cases one at a time against one adapter."""

    adapter: Adapter
    capabilities: Capabilities
    step_timeout: float = 10.0
    executor: Executor = field(init=False)

    def __post_init__(self) -> None:
        self.executor = Executor(self.step_timeout)

    def close(self) -> None:
        self.executor.close()

    def missing_features(self, case: Case) -> set[str]:
        return missing_features(case.slots, case.steps, self.capabilities.features)

    def open(self, case_id: str, slots: Sequence[SlotSpec]) -> LiveCase:
        """Open a session for `slots` and the trackers that follow it."""
        session: Session = self.executor.call(lambda: self.adapter.open_session(slots))
        return LiveCase(self, case_id, tuple(slots), session)

    def run(self, case: Case) -> CaseResult:
        started = time.perf_counter()
        missing = self.missing_features(case)
        if missing:
            return self.result(case, Verdict.NOT_APPLICABLE, started, [], set(),
                               message=f"the adapter lacks {', '.join(sorted(missing))}")
        try:
            live = self.open(case.id, case.slots)
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
        finally:
            live.close()
        return self.result(case, live.verdict, started, live.trace, live.covered,
                           message=live.message, evidence=live.evidence, executed=len(live.trace))

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
                    if not live.step(Action(slot, edge.op, edge.args)):
                        return
                if live.trackers[slot].states != {source}:
                    continue  # another choice on the way: try again at the next step
            if not live.step(action):
                return

    def result(self, case: Case, verdict: Verdict, started: float, trace: list[StepRecord],
                covered: set[str], message: str = "", evidence: str = "",
               executed: int | None = None) -> CaseResult:
        failed_rules = trace[-1].rules if trace and verdict is Verdict.FAIL else []
        keep_trace = verdict in (Verdict.FAIL, Verdict.ERROR)
        return CaseResult(
            id=case.id, kind=case.kind, description=case.description, rules=list(case.rules),
            verdict=verdict, steps=len(trace) if executed is None else executed,
            seconds=time.perf_counter() - started,
            message=message, evidence=evidence[-4000:], trace=trace if keep_trace else [],
            covered=sorted(covered), slots=slot_machines(case.slots),
            failed_rules=list(failed_rules),
            replay={"slots": replay_slots(case.slots),
                    "steps": [{"slot": t.slot, "op": t.op, "args": dict(t.args)} for t in trace]
                    if trace else [{"slot": a.slot, "op": a.op, "args": dict(a.args)}
                                   for a in case.steps]})


class LiveCase:
    """One open session and the model trackers that follow it, step by step."""

    def __init__(self, runner: CaseRunner, case_id: str, slots: tuple[SlotSpec, ...],
                 session: Session) -> None:
        self.runner = runner
        self.case_id = case_id
        self.session = session
        self.machines = slot_machines(slots)
        self.trackers = {s.name: Tracker(MACHINES[s.machine], runner.capabilities.pins,
                                         [initial_state(MACHINES[s.machine], s.config)])
                         for s in slots}
        self.trace: list[StepRecord] = []
        self.covered: set[str] = set()
        self.verdict = Verdict.PASS
        self.message = ""
        self.evidence = ""
        self.closed = False

    def kind(self, action: Action) -> Kind:
        return self.trackers[action.slot].kind(action.op, action.args)

    def offered(self, action: Action) -> bool:
        """DEFINED in the model now, and within the adapter's features."""
        if self.kind(action) is not Kind.DEFINED:
            return False
        needed = action_features(self.machines[action.slot], action)
        return needed <= set(self.runner.capabilities.features)

    def note(self, message: str) -> None:
        self.message = message

    def step(self, action: Action) -> bool:
        """Perform and judge one action; False (with the verdict set) if the case is over."""
        if self.verdict is not Verdict.PASS:
            return False
        machine = self.machines[action.slot]
        tracker = self.trackers[action.slot]
        allowed = tracker.expected(action.op, action.args)
        before = tracker.states
        describe_before = " | ".join(MACHINES[machine].describe(s) for s in sorted(before, key=repr))
        request = request_for(action, wait_ms(action.op, dict(action.args), allowed))
        t0 = time.perf_counter()
        wall0 = time.time()
        try:
            observation = perform(self.session, request, self.runner.executor.call)
        except Exception as raw:
            exc = raw if isinstance(raw, (AdapterFault, StepTimeout, NotApplicable)) else \
                AdapterFault(f"the adapter raised {type(raw).__name__}: {raw}",
                             "".join(traceback.format_exception(raw))[-4000:])
            self.trace.append(step_record(
                action, machine, None, allowed=[a.describe() for a in allowed], ok=False,
                rules=sorted({r for a in allowed for r in a.rules}), state_before=describe_before,
                seconds=time.perf_counter() - t0, started=wall0, ended=time.time()))
            if isinstance(exc, NotApplicable):
                self.verdict, self.message = Verdict.NOT_APPLICABLE, f"{action}: {exc}"
            elif isinstance(exc, AdapterFault):
                self.verdict, self.message = Verdict.ERROR, f"{action}: adapter fault: {exc}"
                self.evidence = exc.evidence
            else:
                self.verdict, self.message = Verdict.ERROR, f"{action}: the adapter hung: {exc}"
            return False
        elapsed = time.perf_counter() - t0
        judgement = tracker.observe(action.op, action.args, observation.code,
                                    dict(observation.outputs))
        if len(before) == 1:
            (state,) = before
            self.covered.add(transition_key(machine, state, action))
        record = step_record(
            action, machine, observation, allowed=[a.describe() for a in judgement.allowed],
            ok=judgement.ok, rules=list(judgement.rules), state_before=describe_before,
            seconds=elapsed, started=wall0, ended=time.time())
        self.trace.append(record)
        if not judgement.ok:
            self.verdict = Verdict.FAIL
            outputs = f" with {record.outputs}" if record.outputs else ""
            self.message = (f"{action}: observed {record.code_name or record.code}{outputs}; "
                            f"allowed: {'; '.join(record.allowed) or 'nothing'}")
            return False
        return True

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        try:
            self.runner.executor.call(self.session.close)
        except (StepTimeout, AdapterFault) as exc:
            if self.verdict is Verdict.PASS:
                self.verdict, self.message = Verdict.ERROR, f"closing the session failed: {exc}"

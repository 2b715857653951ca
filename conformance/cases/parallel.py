"""Parallel cases: a sequential prefix, then branches run at once on real threads, judged by
linearizability against the model.

A `ParallelCase` declares its slots, a prefix (run and judged step by step, as any case) and two
or more branches. After the prefix, one thread per branch performs its actions against the same
session, all released together by a barrier; every action's invocation and response are recorded
with timestamps in a history. `callgate.conformance.judge.linearizability` then asks whether some sequential
order of the history, respecting real time, is one the model allows (DESIGN.md principle 1: the
model is the sequential specification).

Preconditions must hold in every interleaving (as PropEr requires of parallel state-machine
tests): `interleavings` walks every order of the branches' actions from every state the prefix
may lead to, and a case is sound only if each action is DEFINED in every state it may start in.
So no interleaving drives the implementation into undefined behaviour, and no action is sent to
a test server that might not hold a call.

Each case runs several times (`runs`) to sample schedules; `stagger` adds a random pause of up to
that many seconds before each branch action, and the reference adapter's own `jitter` pauses
inside the implementation, to widen the races. An action that does not answer within the step
timeout, or whose adapter call raises, has an unknown outcome: the checker treats it as Knossos
treats `info` (it may or may not have taken effect), and the case is an `error` unless the
history is not linearizable even so.

`race_cases` are the named directed races; `generated_cases` is the Hypothesis strategy that
builds cases from the model, and `run_generated` runs and shrinks them.
"""

from __future__ import annotations

import contextlib
import itertools
import random
import threading
import time
import traceback
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace

import hypothesis.strategies as st
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import seed as hypothesis_seed
from hypothesis.errors import Flaky

from callgate.conformance.judge.execution import StepTimeout
from callgate.conformance.judge.linearizability import (
    DEADLINE_SLACK,
    DEFAULT_BUDGET,
    CheckResult,
    Linearizability,
    Operation,
    check,
)
from callgate.conformance.judge.runner import (
    NOTIFY_ABSENT_MS,
    NOTIFY_EXPECTED_MS,
    CaseRunner,
    code_name,
    initial_state,
)
from callgate.conformance.protocol.adapter import (
    FINITE_WAIT_MS,
    Adapter,
    AdapterFault,
    NotApplicable,
    Observation,
    Request,
    Session,
    SlotSpec,
    config_features_needed,
    features_needed,
)
from callgate.conformance.results import CaseResult, StepRecord, Verdict
from callgate.model.families import MACHINES
from callgate.model.transitions import Action, Args, Kind, Pins, Returns, State, step

KIND = "parallel"
# Generated cases: how long the prefix and how many branch actions, at most.
MAX_PREFIX = 4
MAX_BRANCH_ACTIONS = 6
MAX_BRANCHES = 3
# How many cases Hypothesis may try while shrinking a failure. A race does not fail on every
# run, so shrinking a flaky failure can go on for long; past this the smallest failing case seen
# is reported.
SHRINK_CASES = 60
# A named race runs this many times as often as the budget's runs of a generated case.
RACE_RUNS_FACTOR = 3
# Operations that wait, and the argument that says how long (None: they always may wait).
TIMED = {("com_call", "Wait"): "timeout", ("event", "Wait"): "timeout",
         ("container", "WaitMultiple"): "timeout", ("rpc_call", "wait_notification"): None}


@dataclass(frozen=True)
class ParallelCase:
    """A prefix, then branches run concurrently; with its metadata (id, description, rules)."""

    id: str
    description: str
    slots: tuple[SlotSpec, ...]
    prefix: tuple[Action, ...]
    branches: tuple[tuple[Action, ...], ...]
    rules: tuple[str, ...] = ()
    # Run after every branch has ended, on one thread: its actions come last in real time, so
    # the checker judges them from every state the branches' orders may have left.
    suffix: tuple[Action, ...] = ()
    kind: str = KIND

    def size(self) -> int:
        return len(self.prefix) + sum(len(b) for b in self.branches) + len(self.suffix)

    def replay(self) -> dict[str, object]:
        """The case as data: `callgate replay` runs it again (prefix, then branches)."""
        def steps(actions: Sequence[Action]) -> list[dict[str, object]]:
            return [{"slot": a.slot, "op": a.op, "args": dict(a.args)} for a in actions]

        return {"slots": [{"name": s.name, "machine": s.machine, "config": dict(s.config)}
                          for s in self.slots],
                "steps": steps(self.prefix),
                "branches": [steps(b) for b in self.branches],
                "suffix": steps(self.suffix)}


# --- what the model says about every interleaving ----------------------------------------------


@dataclass(frozen=True)
class Interleavings:
    """Whether every interleaving of a case's branches keeps every action DEFINED; the states
    each branch action may start in; and the rules the case exercises."""

    sound: bool
    problem: str
    starts: Mapping[tuple[int, int], frozenset[State]]
    rules: tuple[str, ...]
    prefix_states: Mapping[str, frozenset[State]]


def _machines(slots: Sequence[SlotSpec]) -> dict[str, str]:
    return {s.name: s.machine for s in slots}


def prefix_states(slots: Sequence[SlotSpec], prefix: Sequence[Action], pins: Pins
                  ) -> tuple[dict[str, frozenset[State]], str, list[str]]:
    """Each slot's candidate states after the prefix, following every allowed outcome; a problem
    (an action not DEFINED in some state it may meet) is returned as text."""
    machines = _machines(slots)
    states = {s.name: frozenset({initial_state(MACHINES[s.machine], s.config)}) for s in slots}
    rules: list[str] = []
    for action in prefix:
        machine = MACHINES[machines[action.slot]]
        nxt: set[State] = set()
        for state in states[action.slot]:
            result = step(machine, state, action.op, action.args, pins)
            if result.kind is not Kind.DEFINED:
                return states, (f"prefix action {action} is {result.kind.value} in "
                                f"{machine.describe(state)}"), rules
            rules.extend(result.rules)
            nxt.update(a.next_state for a in result.allowed)
        states[action.slot] = frozenset(nxt)
    return states, "", rules


def interleavings(slots: Sequence[SlotSpec], prefix: Sequence[Action],
                  branches: Sequence[Sequence[Action]], pins: Pins,
                  suffix: Sequence[Action] = (),
                  start: Mapping[str, frozenset[State]] | None = None) -> Interleavings:
    """Walk every interleaving of `branches` after `prefix` through the model, then `suffix`
    (whose actions have the position (len(branches), k) in `starts`). With `start`, the walk
    begins from those slot states instead of stepping the prefix (after a prefix has run, the
    states the implementation's choices actually led to)."""
    key = None
    if start is None:
        key = (tuple((s.name, s.machine, tuple(sorted(s.config.items()))) for s in slots),
               tuple(prefix), tuple(tuple(b) for b in branches), tuple(sorted(pins.items())),
               tuple(suffix))
        known = _INTERLEAVINGS.get(key)
        if known is not None:
            return known
        if len(_INTERLEAVINGS) > 100_000:
            _INTERLEAVINGS.clear()
        found = _interleavings(slots, prefix, branches, pins, suffix, None)
        _INTERLEAVINGS[key] = found
        return found
    return _interleavings(slots, prefix, branches, pins, suffix, start)


# Generation asks the same questions many times over (Hypothesis replays and shrinks).
_INTERLEAVINGS: dict[object, Interleavings] = {}


def _interleavings(slots: Sequence[SlotSpec], prefix: Sequence[Action],
                   branches: Sequence[Sequence[Action]], pins: Pins, suffix: Sequence[Action],
                   start: Mapping[str, frozenset[State]] | None) -> Interleavings:
    if start is None:
        after, problem, rules = prefix_states(slots, prefix, pins)
    else:
        after, problem, rules = dict(start), "", []
    if problem:
        return Interleavings(False, problem, {}, tuple(dict.fromkeys(rules)), after)
    machines = _machines(slots)
    names = [s.name for s in slots]
    index = {name: i for i, name in enumerate(names)}
    joint0 = {tuple(c) for c in itertools.product(*(sorted(after[n], key=repr) for n in names))}
    layer: dict[tuple[int, ...], set[tuple[State, ...]]] = {(0,) * len(branches): joint0}
    starts: dict[tuple[int, int], set[State]] = {}
    seen_rules = dict.fromkeys(rules)
    final: set[tuple[State, ...]] = set()
    while layer:
        following: dict[tuple[int, ...], set[tuple[State, ...]]] = {}
        for position, joints in layer.items():
            if all(k >= len(b) for k, b in zip(position, branches, strict=True)):
                final |= joints
            for b, branch in enumerate(branches):
                k = position[b]
                if k >= len(branch):
                    continue
                action = branch[k]
                si = index[action.slot]
                machine = MACHINES[machines[action.slot]]
                moved = (*position[:b], k + 1, *position[b + 1:])
                target = following.setdefault(moved, set())
                for joint in joints:
                    state = joint[si]
                    result = step(machine, state, action.op, action.args, pins)
                    if result.kind is not Kind.DEFINED:
                        return Interleavings(
                            False, f"branch {b + 1} action {action} is {result.kind.value} in "
                                   f"{machine.describe(state)} in some interleaving",
                            {}, tuple(seen_rules), after)
                    starts.setdefault((b, k), set()).add(state)
                    seen_rules.update(dict.fromkeys(result.rules))
                    for allowed in result.allowed:
                        target.add((*joint[:si], allowed.next_state, *joint[si + 1:]))
        layer = following
    for k, action in enumerate(suffix):
        si = index[action.slot]
        machine = MACHINES[machines[action.slot]]
        after_action: set[tuple[State, ...]] = set()
        for joint in final:
            result = step(machine, joint[si], action.op, action.args, pins)
            if result.kind is not Kind.DEFINED:
                return Interleavings(
                    False, f"suffix action {action} is {result.kind.value} in "
                           f"{machine.describe(joint[si])} after some interleaving",
                    {}, tuple(seen_rules), after)
            starts.setdefault((len(branches), k), set()).add(joint[si])
            seen_rules.update(dict.fromkeys(result.rules))
            after_action.update((*joint[:si], a.next_state, *joint[si + 1:])
                                for a in result.allowed)
        final = after_action
    return Interleavings(True, "", {k: frozenset(v) for k, v in starts.items()},
                         tuple(seen_rules), after)


def missing_features(case: ParallelCase, features: frozenset[str]) -> set[str]:
    machines = _machines(case.slots)
    needed: set[str] = set()
    for slot in case.slots:
        needed |= config_features_needed(slot.machine, slot.config)
    for action in (*case.prefix, *(a for b in case.branches for a in b), *case.suffix):
        needed |= features_needed(machines[action.slot], action.op, dict(action.args))
    return needed - set(features)


def _wait_ms(machine: str, action: Action, states: frozenset[State], pins: Pins) -> int:
    """How long a waiting action may wait: as the sequential runner decides, over every state
    the action may start in."""
    if action.op == "wait_notification":
        for state in states:
            result = step(MACHINES[machine], state, action.op, action.args, pins)
            if any(isinstance(a.code, Returns) and a.code.value == 1 for a in result.allowed):
                return NOTIFY_EXPECTED_MS
        return NOTIFY_ABSENT_MS
    return FINITE_WAIT_MS


def _timed_out(machine: str, action: Action, record: _Record) -> bool:
    """True if a waiting action came back with its 'nothing happened' result after waiting its
    whole timeout: it decided at its deadline, so it linearizes no earlier."""
    if (machine, action.op) not in TIMED or record.observation is None or record.returned is None:
        return False
    param = TIMED[(machine, action.op)]
    if param is not None and dict(action.args).get(param) != "finite":
        return False
    nothing = (record.observation.code == 0) if action.op == "wait_notification" else \
        (record.observation.code != 0)
    waited = record.returned - record.invoked
    return nothing and waited >= record.wait_ms / 1000.0 - DEADLINE_SLACK


# --- running ------------------------------------------------------------------------------------


@dataclass
class _Record:
    """One branch action as it happened (written by its branch thread, read after the join)."""

    branch: int
    action: Action
    wait_ms: int
    invoked: float = 0.0
    returned: float | None = None
    observation: Observation | None = None
    error: str = ""
    started: bool = False


@dataclass
class _Run:
    """One run's branch records and what went wrong in the harness, if anything."""

    records: list[_Record] = field(default_factory=list)
    hung: list[_Record] = field(default_factory=list)


def execute_branches(session: Session, branches: Sequence[Sequence[Action]],
                     waits: Mapping[tuple[int, int], int], step_timeout: float,
                     stagger: float, rng: random.Random, suffix: Sequence[Action] = (),
                     call: Callable[[Callable[[], Observation]], Observation] | None = None
                     ) -> _Run:
    """Run each branch on a thread of its own, all released at once; record every action.
    Then, if every branch action answered, the suffix on this thread (through `call`, which
    bounds each action by the step timeout)."""
    if call is None:
        def call(fn: Callable[[], Observation]) -> Observation:
            return fn()

    records = [[_Record(b, a, waits[(b, k)]) for k, a in enumerate(branch)]
               for b, branch in enumerate(branches)]
    delays = [[rng.uniform(0.0, stagger) if stagger else 0.0 for _ in branch]
              for branch in branches]
    barrier = threading.Barrier(len(branches))
    abandoned = threading.Event()

    def work(b: int) -> None:
        try:
            barrier.wait(timeout=step_timeout)
        except threading.BrokenBarrierError:
            return
        for record, delay in zip(records[b], delays[b], strict=True):
            if abandoned.is_set():
                return
            if delay:
                time.sleep(delay)
            action = record.action
            request = Request(action.slot, action.op, dict(action.args), record.wait_ms)
            record.started = True
            record.invoked = time.perf_counter()
            try:
                observation = session.perform(request)
                returned = time.perf_counter()
                if not isinstance(observation, Observation) or not isinstance(
                        observation.code, int):
                    raise AdapterFault(f"the adapter returned {observation!r}, not an "
                                       f"Observation")
            except Exception as exc:  # the outcome is unknown: the checker's `info`
                record.error = (f"{type(exc).__name__}: {exc}\n"
                                + "".join(traceback.format_exception(exc))[-2000:])
                return
            if abandoned.is_set():
                return  # too late: the harness has already judged this op as unknown
            record.observation, record.returned = observation, returned

    threads = [threading.Thread(target=work, args=(b,), name=f"callgate-branch-{b + 1}",
                                daemon=True) for b in range(len(branches))]
    for thread in threads:
        thread.start()
    longest = max(len(b) for b in branches)
    deadline = time.monotonic() + step_timeout * max(1, longest)
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    abandoned.set()
    if all(r.returned is not None for rs in records for r in rs if r.started) and suffix:
        tail = [_Record(len(branches), a, waits[(len(branches), k)])
                for k, a in enumerate(suffix)]
        records.append(tail)
        for record in tail:
            action = record.action
            request = Request(action.slot, action.op, dict(action.args), record.wait_ms)
            record.started = True
            record.invoked = time.perf_counter()
            try:
                observation = call(lambda: session.perform(request))  # noqa: B023
            except Exception as exc:
                record.error = f"{type(exc).__name__}: {exc}"
                break
            record.observation, record.returned = observation, time.perf_counter()
    run = _Run()
    for branch_records in records:
        for record in branch_records:
            if not record.started:
                continue
            run.records.append(record)
            if record.returned is None:
                run.hung.append(record)
    return run


def _history(case: ParallelCase, run: _Run, pins: Pins, wall_base: float,
             starts: Mapping[tuple[int, int], frozenset[State]]
             ) -> tuple[list[Operation], list[StepRecord], list[tuple[int, int]]]:
    """The run as checker operations and as report records (same order, same ids), and each
    one's position (branch, index; the suffix is branch len(branches))."""
    machines = _machines(case.slots)
    ops: list[Operation] = []
    records: list[StepRecord] = []
    positions: dict[int, int] = {}
    where: list[tuple[int, int]] = []
    for number, record in enumerate(sorted(run.records, key=lambda r: r.invoked)):
        machine = machines[record.action.slot]
        k = positions.get(record.branch, 0)
        positions[record.branch] = k + 1
        where.append((record.branch, k))
        observation = record.observation
        timed_out = _timed_out(machine, record.action, record)
        thread = f"branch {record.branch + 1}" if record.branch < len(case.branches) \
            else "suffix"
        ops.append(Operation(
            id=number, slot=record.action.slot, thread=thread,
            op=record.action.op, args=record.action.args, invoked=record.invoked,
            returned=record.returned, code=observation.code if observation else None,
            outputs=tuple(sorted(observation.outputs.items())) if observation else (),
            not_before=(record.invoked + record.wait_ms / 1000.0 - DEADLINE_SLACK)
            if timed_out else None))
        states = starts.get((record.branch, k), frozenset())
        rules = sorted({r for s in states for r in step(
            MACHINES[machine], s, record.action.op, record.action.args, pins).rules})
        returned = record.returned
        records.append(StepRecord(
            slot=record.action.slot, op=record.action.op, args=dict(record.action.args),
            code=observation.code if observation else None,
            code_name=code_name(observation.code, machine) if observation else "",
            outputs=dict(observation.outputs) if observation else {},
            allowed=[] if observation else [f"unknown outcome: {record.error.splitlines()[0]}"
                                            if record.error else "unknown outcome: no answer "
                                            "within the step timeout"],
            ok=observation is not None, rules=rules, state_before="",
            seconds=(returned - record.invoked) if returned is not None else 0.0,
            thread=thread, started=wall_base + record.invoked,
            ended=wall_base + returned if returned is not None else 0.0))
    return ops, records, where


def _allowed_text(machine: str, action_op: str, args: Args, states: frozenset[State],
                  pins: Pins) -> list[str]:
    out: list[str] = []
    for state in sorted(states, key=repr):
        result = step(MACHINES[machine], state, action_op, args, pins)
        out.extend(f"from {MACHINES[machine].describe(state)}: {a.describe()}"
                   for a in result.allowed)
    return list(dict.fromkeys(out))


def run_parallel(runner: CaseRunner, case: ParallelCase, runs: int = 3, stagger: float = 0.0,
                 seed: int = 0, budget: int = DEFAULT_BUDGET) -> CaseResult:
    """Run a parallel case `runs` times (stopping at the first run that goes wrong) and judge
    each run's history by linearizability against the model."""
    started = time.perf_counter()
    caps = runner.capabilities
    pins = dict(caps.pins)
    missing = missing_features(case, caps.features)
    if missing:
        return _result(case, Verdict.NOT_APPLICABLE, started, message=(
            f"the adapter lacks {', '.join(sorted(missing))}"))
    machines = _machines(case.slots)
    rng = random.Random(seed)
    history: list[StepRecord] = []
    verdict_text = ""
    total_ops = 0
    for number in range(1, runs + 1):
        try:
            live = runner.open(case.id, case.slots)
        except (StepTimeout, AdapterFault) as exc:
            return _result(case, Verdict.ERROR, started, message=f"opening a session failed: "
                           f"{exc}", evidence=getattr(exc, "evidence", ""))
        except NotApplicable as exc:
            return _result(case, Verdict.NOT_APPLICABLE, started, message=str(exc))
        try:
            for action in case.prefix:
                kind = live.kind(action)
                if kind is not Kind.DEFINED:
                    return _result(case, Verdict.NOT_APPLICABLE, started, message=(
                        f"run {number}: after the implementation's choices the model has the "
                        f"prefix action {action} {kind.value}, so the case is not run"))
                if not live.step(action):
                    break
            if live.verdict is not Verdict.PASS:
                return _result(case, live.verdict, started, trace=live.trace,
                               message=f"in the prefix (run {number}): {live.message}",
                               evidence=live.evidence)
            initial = {name: tracker.states for name, tracker in live.trackers.items()}
            # Sound in every interleaving from where the prefix really led (PropEr's rule,
            # checked against the implementation's own choices).
            plan = interleavings(case.slots, case.prefix, case.branches, pins, case.suffix,
                                 start=initial)
            if not plan.sound:
                return _result(case, Verdict.NOT_APPLICABLE, started, message=(
                    f"run {number}: from the states the prefix led to, some interleaving "
                    f"reaches an action the model does not define, so the case is not run: "
                    f"{plan.problem}"))
            waits = {(b, k): _wait_ms(machines[a.slot], a, plan.starts.get((b, k), frozenset()),
                                      pins)
                     for b, branch in enumerate((*case.branches, case.suffix))
                     for k, a in enumerate(branch)}
            wall_base = time.time() - time.perf_counter()
            run = execute_branches(live.session, case.branches, waits, runner.step_timeout,
                                   stagger, rng, case.suffix, runner.executor.call)
        finally:
            live.close()
        prefix_records = [replace(r, thread="prefix") for r in live.trace]
        ops, records, where = _history(case, run, pins, wall_base, plan.starts)
        total_ops += len(ops)
        outcome = check(ops, {s.name: MACHINES[s.machine] for s in case.slots}, initial, pins,
                        budget)
        history = prefix_records + records
        verdict_text = outcome.verdict.value
        if outcome.verdict is Linearizability.NOT_LINEARIZABLE:
            return _failure(case, started, outcome, ops, records, where, prefix_records, plan,
                            pins, number, runs)
        if outcome.verdict is Linearizability.UNKNOWN:
            return _result(case, Verdict.ERROR, started, trace=history, history=history,
                           linearizability=verdict_text,
                           message=f"run {number} of {runs}: {outcome.summary()}")
        if run.hung:
            first = run.hung[0]
            return _result(case, Verdict.ERROR, started, trace=history, history=history,
                           linearizability=verdict_text, evidence=first.error,
                           message=(f"run {number} of {runs}: {first.action} on branch "
                                    f"{first.branch + 1} "
                                    + ("raised: " + first.error.splitlines()[0] if first.error
                                       else f"gave no answer within {runner.step_timeout} s")
                                    + f"; the history is {outcome.summary()}"))
    return _result(case, Verdict.PASS, started, history=history, linearizability=verdict_text,
                   steps=total_ops, message=(
                       f"{runs} runs, {total_ops} concurrent operations: every history "
                       f"linearizable"))


def _failure(case: ParallelCase, started: float, outcome: CheckResult, ops: list[Operation],
             records: list[StepRecord], where: list[tuple[int, int]],
             prefix_records: list[StepRecord], plan: Interleavings, pins: Pins, number: int,
             runs: int) -> CaseResult:
    failing = outcome.failing()
    assert failing is not None
    machines = _machines(case.slots)
    keep = {o.id for o in failing.counterexample}
    culprit = failing.culprit.id if failing.culprit is not None else -1
    marked: list[StepRecord] = []
    for op, record, position in zip(ops, records, where, strict=True):
        if op.id == culprit:
            record = replace(record, ok=False, allowed=_allowed_text(
                machines[op.slot], op.op, op.args, plan.starts.get(position, frozenset()),
                pins)[:20])
        marked.append(record)
    history = prefix_records + marked
    shortest = [r for op, r in zip(ops, marked, strict=True) if op.id in keep and op.id != culprit]
    last = [r for op, r in zip(ops, marked, strict=True) if op.id == culprit]
    trace = prefix_records + shortest + last
    return _result(case, Verdict.FAIL, started, trace=trace, history=history,
                   linearizability=outcome.verdict.value,
                   message=f"run {number} of {runs}: {outcome.summary()}")


def _result(case: ParallelCase, verdict: Verdict, started: float, *,
            trace: Sequence[StepRecord] = (), history: Sequence[StepRecord] = (),
            message: str = "", evidence: str = "", linearizability: str = "",
            steps: int | None = None) -> CaseResult:
    keep_trace = verdict in (Verdict.FAIL, Verdict.ERROR)
    failed = list(trace[-1].rules) if trace and verdict is Verdict.FAIL else []
    return CaseResult(
        id=case.id, kind=case.kind, description=case.description, rules=list(case.rules),
        verdict=verdict, steps=len(history) if steps is None else steps,
        seconds=time.perf_counter() - started, message=message, evidence=evidence[-4000:],
        trace=list(trace) if keep_trace else [], slots=_machines(case.slots),
        failed_rules=failed, replay=case.replay(), history=list(history),
        linearizability=linearizability)


# --- the named races ----------------------------------------------------------------------------


def _a(slot: str, op: str, **args: object) -> Action:
    machine = {"c": "com_call", "e": "event", "r": "rpc_call", "k": "container"}[slot[0]]
    names = [p.name for p in MACHINES[machine].operation(op).params]
    return Action(slot, op, tuple((n, args[n]) for n in names))  # type: ignore[misc]


_COM = SlotSpec("c0", "com_call", {"factory": True, "cancellable": True})
_CREATE = _a("c0", "CreateCall", riid="async", aggregate=False)


def race_cases() -> list[ParallelCase]:
    """The races that matter (issue 7), each a named directed parallel case citing its rules."""
    rpc = SlotSpec("r0", "rpc_call", {})
    init = _a("r0", "RpcAsyncInitializeHandle", size="exact")
    cases = [
        ParallelCase(
            "race-begin-begin", "two clients' Begin_ on one call object: exactly one starts the "
            "call, the other gets the pending code", (_COM,), (_CREATE,),
            ((_a("c0", "Begin_"),), (_a("c0", "Begin_"),)),
            ("COM-BEGIN-01", "COM-BEGIN-02", "COM-CF-10")),
        ParallelCase(
            "race-cancel-signal", "Cancel racing the server's Signal: the outcome is one of the "
            "documented ones, and Finish_ still ends the call", (_COM,),
            (_CREATE, _a("c0", "Begin_")),
            ((_a("c0", "Cancel", seconds=0), _a("c0", "Wait", timeout="finite")),
             (_a("c0", "server_signal", out=1, then_impersonate=False),)),
            ("COM-CANCEL-02", "COM-CANCEL-05", "COM-CANCEL-08", "COM-CANCEL-11", "COM-SRV-05",
             "COM-FIN-01", "COM-FIN-05"),
            suffix=(_a("c0", "Finish_"), _a("c0", "Finish_"))),
        ParallelCase(
            "race-signal-wait-event", "Signal racing ISynchronize::Wait with a timeout on a "
            "manual-reset event: a Signal that returned before the Wait's deadline wakes it",
            (SlotSpec("e0", "event", {}),),
            (_a("e0", "CoCreateInstance", clsid="ManualResetEvent"),),
            ((_a("e0", "Wait", timeout="finite"),), (_a("e0", "Signal"),)),
            ("COM-SYNC-01", "COM-SYNC-04", "COM-WAIT-03", "COM-WAIT-05")),
        ParallelCase(
            "race-signal-wait-std-event", "Signal racing two Waits with a timeout on an "
            "auto-reset event: one signal wakes exactly one waiter",
            (SlotSpec("e0", "event", {}),),
            (_a("e0", "CoCreateInstance", clsid="StdEvent"),),
            ((_a("e0", "Wait", timeout="finite"),), (_a("e0", "Wait", timeout="finite"),),
             (_a("e0", "Signal"),)),
            ("COM-SYNC-01", "COM-SYNC-03", "COM-WAIT-03", "COM-WAIT-05")),
        ParallelCase(
            "race-server-signal-wait", "the server's Signal racing the client's Wait with a "
            "timeout on the call object", (_COM,), (_CREATE, _a("c0", "Begin_")),
            ((_a("c0", "Wait", timeout="finite"), _a("c0", "Wait", timeout="zero")),
             (_a("c0", "server_signal", out=2, then_impersonate=False),)),
            ("COM-SRV-05", "COM-WAIT-02", "COM-WAIT-03", "COM-SYNC-01")),
        ParallelCase(
            "race-rpc-abort-complete", "RpcAsyncCancelCall(fAbort=TRUE) racing the server's "
            "RpcAsyncCompleteCall: exactly one completion notification", (rpc,),
            (init, _a("r0", "AsyncCall", notify="Event", binding="good")),
            ((_a("r0", "RpcAsyncCancelCall", abort=True), _a("r0", "wait_notification"),
              _a("r0", "wait_notification")),
             (_a("r0", "server_complete", reply=1),)),
            ("RPC-CLI-CANCEL-02", "RPC-CLI-CANCEL-05", "RPC-CLI-NOTIFY-01",
             "RPC-SRV-COMPLETE-06")),
        ParallelCase(
            "race-rpc-poll-complete", "the server completes on another thread while the client "
            "polls RpcAsyncGetCallStatus", (rpc,),
            (init, _a("r0", "AsyncCall", notify="None", binding="good")),
            ((_a("r0", "RpcAsyncGetCallStatus"), _a("r0", "RpcAsyncGetCallStatus"),
              _a("r0", "RpcAsyncGetCallStatus")),
             (_a("r0", "server_complete", reply=2),)),
            ("RPC-CLI-STATUS-01", "RPC-CLI-STATUS-03", "RPC-SRV-COMPLETE-01")),
    ]
    return cases


# --- generation ---------------------------------------------------------------------------------


def generation_slots(features: frozenset[str]) -> list[tuple[SlotSpec, ...]]:
    """The slot sets generated cases use: each object kind alone (races on one object), and a
    call object beside an event (two objects of one session at once)."""
    sets: list[tuple[SlotSpec, ...]] = []
    if "com.call" in features:
        sets.append((_COM,))
    if "sync.event" in features:
        sets.append((SlotSpec("e0", "event", {}),))
    if "rpc.handle" in features:
        sets.append((SlotSpec("r0", "rpc_call", {}),))
    if "sync.container" in features:
        sets.append((SlotSpec("k0", "container", {}),))
    if "com.call" in features and "sync.event" in features:
        sets.append((_COM, SlotSpec("e0", "event", {})))
    return sets


def _actions(slots: Sequence[SlotSpec], features: frozenset[str]) -> list[Action]:
    out = []
    for slot in slots:
        machine = MACHINES[slot.machine]
        for operation in machine.operations:
            for args in operation.all_args():
                if features_needed(slot.machine, operation.name, dict(args)) <= features:
                    out.append(Action(slot.name, operation.name, args))
    return out


def _pick(draw: st.DrawFn, options: Sequence[Action], label: str) -> Action:
    """An action: first its slot and operation, then its arguments, so an operation with many
    argument values (QueryInterface) is not drawn more often than one with none (Begin_)."""
    names = sorted({(a.slot, a.op) for a in options})
    slot, op = draw(st.sampled_from(names), label=label)
    return draw(st.sampled_from([a for a in options if (a.slot, a.op) == (slot, op)]),
                label=f"{label} arguments")


def generated_cases(features: frozenset[str], pins: Pins,
                    slot_sets: Sequence[tuple[SlotSpec, ...]] | None = None
                    ) -> st.SearchStrategy[ParallelCase]:
    """Hypothesis strategy: a prefix walked through the model, then 2 or 3 branches whose every
    interleaving keeps every action DEFINED (PropEr's rule for parallel cases).

    Two biases make the races that matter likely, without excluding anything: the prefix
    prefers actions that change the model's state (so it gets somewhere: a call object with a
    call in flight, an event created), and a branch action is often one another branch already
    has (the same operation racing itself is where check-then-set races live)."""
    choices = list(slot_sets) if slot_sets is not None else generation_slots(features)

    @st.composite
    def build(draw: st.DrawFn) -> ParallelCase:
        slots = draw(st.sampled_from(choices))
        actions = _actions(slots, features)
        prefix: list[Action] = []
        for _ in range(draw(st.integers(0, MAX_PREFIX), label="prefix length")):
            before, _, _ = prefix_states(slots, prefix, pins)
            options = [a for a in actions if interleavings(slots, [*prefix, a], [], pins).sound]
            if not options:
                break
            moving = [a for a in options
                      if prefix_states(slots, [*prefix, a], pins)[0][a.slot] != before[a.slot]]
            prefer = draw(st.integers(0, 3), label="prefer a move")
            if moving and prefer:
                options = moving
            prefix.append(_pick(draw, options, "prefix action"))
        count = draw(st.integers(2, MAX_BRANCHES), label="branches")
        branches: list[list[Action]] = [[] for _ in range(count)]
        for _ in range(draw(st.integers(2, MAX_BRANCH_ACTIONS), label="branch actions")):
            b = draw(st.integers(0, count - 1), label="branch")
            options = [a for a in actions if interleavings(
                slots, prefix, [*branches[:b], [*branches[b], a], *branches[b + 1:]],
                pins).sound]
            if not options:
                continue
            elsewhere = {a for i, other in enumerate(branches) if i != b for a in other}
            same = [a for a in options if a in elsewhere]
            itself = draw(st.integers(0, 1), label="race an action with itself")
            if same and itself:
                options = same
            branches[b].append(_pick(draw, options, "branch action"))
        kept = tuple(tuple(b) for b in branches if b)
        assume(len(kept) >= 2)
        plan = interleavings(slots, prefix, kept, pins)
        return ParallelCase(
            "parallel-generated", "a generated parallel case", slots, tuple(prefix), kept,
            plan.rules)

    return build()


class ParallelFailed(AssertionError):
    """A generated parallel case failed (or erred); Hypothesis shrinks it."""


@dataclass(frozen=True)
class ParallelBudget:
    """How many generated cases, and how many runs of each case."""

    examples: int
    runs: int
    stagger: float = 0.001


def run_generated(runner: CaseRunner, budget: ParallelBudget, seed: int,
                  case_id: str = "parallel-generated",
                  slot_sets: Sequence[tuple[SlotSpec, ...]] | None = None) -> CaseResult:
    """Run `budget.examples` generated parallel cases over `slot_sets` (default: every kind the
    adapter supports, `generation_slots`); a failure comes back shrunk (the smallest failing case
    Hypothesis found), with its history."""
    started = time.perf_counter()
    features = frozenset(runner.capabilities.features)
    slot_sets = list(slot_sets) if slot_sets is not None else generation_slots(features)
    description = (f"{budget.examples} generated parallel cases, each run {budget.runs} times, "
                   f"with linearizability judged against the model (seed {seed})")
    empty = ParallelCase(case_id, description, (), (), ())
    if not slot_sets or budget.examples <= 0:
        return _result(empty, Verdict.NOT_APPLICABLE, started, message=(
            "the adapter declares none of the features parallel cases drive"))
    failures: list[tuple[ParallelCase, CaseResult]] = []
    counts = {"cases": 0, "ops": 0}
    last: list[CaseResult] = []  # the latest case's result: its history is the one shown
    exercised: dict[str, None] = {}
    shrinking = {"runs": 0}
    rng = random.Random(seed)

    @settings(max_examples=budget.examples, deadline=None, database=None, derandomize=False,
              print_blob=False, report_multiple_bugs=False,
              suppress_health_check=list(HealthCheck))
    @given(generated_cases(features, runner.capabilities.pins, slot_sets))
    def test(case: ParallelCase) -> None:
        if failures:
            shrinking["runs"] += 1
            if shrinking["runs"] > SHRINK_CASES:
                return  # enough shrinking: the smallest failure so far is the answer
        result = run_parallel(runner, case, budget.runs, budget.stagger, rng.randrange(2 ** 32))
        counts["cases"] += 1
        counts["ops"] += result.steps
        last[:] = [result]
        exercised.update(dict.fromkeys(case.rules))
        if result.verdict in (Verdict.FAIL, Verdict.ERROR):
            failures.append((case, result))
            raise ParallelFailed(result.message)

    with contextlib.suppress(ParallelFailed, Flaky):
        hypothesis_seed(seed)(test)()
    rules = sorted(exercised)
    if not failures:
        return _result(replace(empty, rules=tuple(rules)), Verdict.PASS, started,
                       steps=counts["ops"], history=last[0].history if last else (),
                       linearizability=Linearizability.LINEARIZABLE.value, message=(
                           f"{counts['cases']} cases, {counts['ops']} concurrent operations: "
                           f"every history linearizable"))
    # The smallest failing case seen: Hypothesis's shrinking result when it reproduced, else the
    # smallest one a race let through.
    case, result = min(failures, key=lambda f: (f[1].verdict is not Verdict.FAIL, f[0].size()))
    shown = replace(case, id=case_id, description=description + "; the smallest failing case: "
                    + describe(case))
    return replace(result, id=case_id, kind=KIND, description=shown.description,
                   rules=list(case.rules), replay=shown.replay(),
                   seconds=time.perf_counter() - started)


def describe(case: ParallelCase) -> str:
    prefix = "; ".join(str(a) for a in case.prefix) or "nothing"
    branches = " || ".join("; ".join(str(a) for a in b) for b in case.branches)
    return f"prefix {prefix}, then {branches}"


def replay_parallel(adapter: Adapter, case: ParallelCase, step_timeout: float = 10.0,
                    runs: int = 10) -> CaseResult:
    """`callgate replay` of a parallel case: run it `runs` times, stopping at a failure."""
    runner = CaseRunner(adapter, adapter.capabilities(), step_timeout)
    try:
        return run_parallel(runner, case, runs, stagger=0.001)
    finally:
        runner.close()


def parallel_count(examples: int) -> int:
    """How many results `parallel_phase` gives: one per named race, one for the generated cases."""
    return len(race_cases()) + (1 if examples else 0)


def parallel_phase(runner: CaseRunner, budget: ParallelBudget, seed: int
                   ) -> Iterator[CaseResult]:
    """The gate's parallel cases: every named race, then the generated cases. A named race is
    short and aims at one window, so it runs RACE_RUNS_FACTOR times as often as a generated case
    to sample more schedules."""
    for number, case in enumerate(race_cases()):
        yield run_parallel(runner, case, budget.runs * RACE_RUNS_FACTOR, budget.stagger,
                           seed + number)
    if budget.examples:
        yield run_generated(runner, budget, seed)

"""Running a parallel case's branches on threads against one session, and recording the history.

After the prefix, one thread per branch performs its actions against the same session, all
released together by a barrier; every action's invocation and response are timestamped.
`branch_pauses` decides how long each branch action waits first (the run's schedule), and
`execute_branches` shortens the interpreter's thread switch interval while the branches run, so
that operations of an in-process Python adapter interleave as finely as real threads would. An
action that does not answer within the step timeout, or whose adapter call raises, has an unknown
outcome: it is recorded without an answer, and the checker treats it as Knossos treats `info`.
Anything else that goes wrong on a branch thread is the harness's own failure: it is collected
(never printed by a dying thread) and the case is an `error` with it as evidence.
`history_of` turns a run into the checker's operations and the report's step records, and
`overlapped` says whether operations of different branches were in flight at the same time.
"""

from __future__ import annotations

import contextlib
import itertools
import random
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field

from callgate.conformance.cases.parallel.case import ParallelCase
from callgate.conformance.judge.linearizability import DEADLINE_SLACK, HistoryOp
from callgate.conformance.judge.perform import (
    Call,
    perform,
    request_for,
    slot_machines,
    step_record,
    wait_ms,
)
from callgate.conformance.protocol.adapter import Observation, Session
from callgate.conformance.results import StepRecord
from callgate.model.families import MACHINES
from callgate.model.transitions import Action, Pins, State, step

# Sets an action's wait just before it is sent: (its position, its planned wait in ms, the
# answers known then by position) -> the wait in ms (`execute_branches`).
Decide = Callable[[tuple[int, int], int, Mapping[tuple[int, int], Observation]], int]


@dataclass
class BranchRecord:
    """One branch action as it happened (written by its branch thread, read after the join)."""

    branch: int
    action: Action
    wait_ms: int
    invoked: float = 0.0
    returned: float | None = None
    observation: Observation | None = None
    error: str = ""
    started: bool = False
    # Set when the action is invoked, and when it answers (a schedule may wait for either).
    invoked_flag: threading.Event = field(default_factory=threading.Event)
    returned_flag: threading.Event = field(default_factory=threading.Event)


@dataclass(frozen=True)
class Gate:
    """A directed schedule's hold on one branch action: it starts only once the action at
    `after` (branch, index) has been invoked (`returned` false) or has answered (`returned`
    true), and then `delay` seconds more. `orderings.directed_gates` builds these to steer a
    race towards an ordering not yet observed."""

    after: tuple[int, int]
    returned: bool
    delay: float


@dataclass
class BranchRun:
    """One run's branch records and what went wrong in the harness, if anything: actions without
    an answer (`hung`), and exceptions the harness itself raised on a branch thread
    (`harness_errors`, each with its traceback)."""

    records: list[BranchRecord] = field(default_factory=list)
    hung: list[BranchRecord] = field(default_factory=list)
    harness_errors: list[str] = field(default_factory=list)


# While branches run, the interpreter switches threads at least this often (seconds). At the
# default 5 ms an operation of an in-process Python adapter that does not block runs whole
# before another thread gets a turn, so two Begin_ never overlap and their race is never run.
BRANCH_SWITCH_INTERVAL = 1e-5
# How many of the model's allowed outcomes a branch step's record lists (its candidate start
# states times their outcomes can be many; the culprit of a failure lists up to 20).
BRANCH_ALLOWED_SHOWN = 6


class _FineSwitching:
    """The switch interval shortened while any run's branches run (it is process-wide: the
    interval from before is put back when the last overlapping user leaves)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._users = 0
        self._before = 0.0

    @contextlib.contextmanager
    def __call__(self) -> Iterator[None]:
        with self._lock:
            if self._users == 0:
                self._before = sys.getswitchinterval()
                sys.setswitchinterval(min(BRANCH_SWITCH_INTERVAL, self._before))
            self._users += 1
        try:
            yield
        finally:
            with self._lock:
                self._users -= 1
                if self._users == 0:
                    sys.setswitchinterval(self._before)


fine_switching = _FineSwitching()


def branch_pauses(branches: Sequence[Sequence[Action]], stagger: float, rng: random.Random,
                  run: int) -> list[list[float]]:
    """How long each branch action waits before it starts, in run `run` (from 1).

    Runs alternate between two schedules, so that both shapes of race get their chance:

    * odd runs: no pause at all; the barrier releases every branch at once, which is what two
      short operations (two Begin_) need to meet;
    * even runs: one branch leads (each in turn) and starts at once, and every other action
      waits a random moment of up to `stagger`, so that an operation that waits (a timed Wait,
      wait_notification) is in progress when the others arrive; later actions of every branch
      also wait up to `stagger`, sampling different interleavings.
    """
    if stagger < 0:
        raise ValueError(f"the stagger must not be negative (got {stagger} s)")
    if run % 2 == 1 or not stagger:
        return [[0.0 for _ in branch] for branch in branches]
    leader = (run // 2 - 1) % len(branches)
    return [[0.0 if (b == leader and k == 0) else rng.uniform(0.0, stagger)
             for k in range(len(branch))] for b, branch in enumerate(branches)]


def wait_times(case: ParallelCase, starts: Mapping[tuple[int, int], frozenset[State]],
               pins: Pins) -> dict[tuple[int, int], int]:
    """How long each branch and suffix action may wait: as the sequential runner decides, from
    what the model allows over every state the action may start in (`starts`)."""
    machines = slot_machines(case.slots)
    found: dict[tuple[int, int], int] = {}
    for b, actions in enumerate((*case.branches, case.suffix)):
        for k, action in enumerate(actions):
            machine = MACHINES[machines[action.slot]]
            allowed = [a for state in starts.get((b, k), frozenset())
                       for a in step(machine, state, action.op, action.args, pins).allowed]
            found[(b, k)] = wait_ms(action.op, dict(action.args), allowed)
    return found


def execute_branches(session: Session, branches: Sequence[Sequence[Action]],
                     waits: Mapping[tuple[int, int], int], step_timeout: float,
                     stagger: float, rng: random.Random, suffix: Sequence[Action] = (),
                     call: Call | None = None, *, run: int,
                     gates: Mapping[tuple[int, int], Gate] | None = None,
                     decide: Decide | None = None) -> BranchRun:
    """Run each branch on a thread of its own, all released at once, each action after its pause
    (`branch_pauses` for run `run`), or, with `gates` (a directed schedule), after its gate
    opened; record every action. Then, if every branch action answered, the suffix on this
    thread (through `call`, which bounds each action by the step timeout). `decide`, when
    given, sets each action's wait just before it is sent, from its planned wait (`waits`) and
    the answers known then: the branch's own earlier actions, or for the suffix every branch
    action and its earlier actions (`observed_waits.ObservedWaits.wait`)."""
    records = [[BranchRecord(b, a, waits[(b, k)]) for k, a in enumerate(branch)]
               for b, branch in enumerate(branches)]
    delays = branch_pauses(branches, stagger, rng, run)
    longest = max(len(b) for b in branches)
    barrier = threading.Barrier(len(branches))
    abandoned = threading.Event()
    harness_errors: list[str] = []

    def perform_branch(b: int) -> None:
        try:
            barrier.wait(timeout=step_timeout)
        except threading.BrokenBarrierError:
            return
        for k, (record, delay) in enumerate(zip(records[b], delays[b], strict=True)):
            if abandoned.is_set():
                return
            gate = gates.get((b, k)) if gates else None
            if gate is not None:
                held = records[gate.after[0]][gate.after[1]]
                flag = held.returned_flag if gate.returned else held.invoked_flag
                if not flag.wait(step_timeout * max(1, longest)):
                    return  # the action it waits for never came: the run shows nothing more
                delay = gate.delay
            if delay:
                time.sleep(delay)
            if decide is not None:
                record.wait_ms = decide((b, k), record.wait_ms, {
                    (b, j): r.observation for j, r in enumerate(records[b][:k])
                    if r.observation is not None})
            request = request_for(record.action, record.wait_ms)
            record.started = True
            record.invoked = time.perf_counter()
            record.invoked_flag.set()
            try:
                observation = perform(session, request)
                returned = time.perf_counter()
            except Exception as exc:  # the outcome is unknown: the checker's `info`
                record.error = (f"{type(exc).__name__}: {exc}\n"
                                + "".join(traceback.format_exception(exc))[-2000:])
                return
            if abandoned.is_set():
                return  # too late: the harness has already judged this op as unknown
            record.observation, record.returned = observation, returned
            record.returned_flag.set()

    def work(b: int) -> None:
        # Whatever the harness raises here is kept for the verdict, never printed by the dying
        # thread (and the barrier is broken, so the other branches do not wait for this one).
        try:
            perform_branch(b)
        except BaseException as exc:  # a thread has no caller to raise to
            barrier.abort()
            harness_errors.append(f"branch {b + 1}: {type(exc).__name__}: {exc}\n"
                                  + "".join(traceback.format_exception(exc)))

    threads = [threading.Thread(target=work, args=(b,), name=f"callgate-branch-{b + 1}",
                                daemon=True) for b in range(len(branches))]
    with fine_switching():
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + step_timeout * max(1, longest)
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
    abandoned.set()
    if all(r.returned is not None for rs in records for r in rs if r.started) and suffix:
        tail = [BranchRecord(len(branches), a, waits[(len(branches), k)])
                for k, a in enumerate(suffix)]
        records.append(tail)
        for k, record in enumerate(tail):
            if decide is not None:
                record.wait_ms = decide((len(branches), k), record.wait_ms, {
                    (r.branch, j): r.observation for rs in records
                    for j, r in enumerate(rs) if r.observation is not None})
            request = request_for(record.action, record.wait_ms)
            record.started = True
            record.invoked = time.perf_counter()
            try:
                observation = perform(session, request, call)
            except Exception as exc:
                record.error = f"{type(exc).__name__}: {exc}"
                break
            record.observation, record.returned = observation, time.perf_counter()
    done = BranchRun(harness_errors=list(harness_errors))
    for branch_records in records:
        for record in branch_records:
            if not record.started:
                continue
            done.records.append(record)
            if record.returned is None:
                done.hung.append(record)
    return done


def timed_out(machine: str, record: BranchRecord) -> bool:
    """True if a waiting action came back with its 'nothing happened' result after waiting its
    whole timeout: it decided at its deadline, so it linearizes no earlier."""
    action = record.action
    waits, param = MACHINES[machine].timeout_param(action.op)
    if not waits or record.observation is None or record.returned is None:
        return False
    if param is not None and dict(action.args).get(param) != "finite":
        return False
    nothing = (record.observation.code == 0) if action.op == "wait_notification" else \
        (record.observation.code != 0)
    waited = record.returned - record.invoked
    return nothing and waited >= record.wait_ms / 1000.0 - DEADLINE_SLACK


# Answers that say a given time passed: an accepted ICancelMethodCalls::Cancel(ulSeconds) with a
# finite ulSeconds means the server did not finish within ulSeconds of the request (COM-CANCEL-05:
# ulSeconds is how long Cancel waits for the server; COM-CANCEL-08: a call that completes within
# it gives RPC_E_CALL_COMPLETE). (machine, operation): the argument that holds the seconds, and
# the code of such an answer.
WAITED_ANSWERS: Mapping[tuple[str, str], tuple[str, int]] = {
    ("com_call", "Cancel"): ("seconds", 0),  # S_OK
}
INFINITE = 0xFFFFFFFF


def waited_seconds(machine: str, record: BranchRecord) -> float | None:
    """The time `record`'s answer says passed before it took effect, or None."""
    known = WAITED_ANSWERS.get((machine, record.action.op))
    if known is None or record.observation is None or record.observation.code != known[1]:
        return None
    seconds = dict(record.action.args).get(known[0])
    if not isinstance(seconds, int) or isinstance(seconds, bool) or seconds in (0, INFINITE):
        return None
    return float(seconds)


def history_of(case: ParallelCase, run: BranchRun, pins: Pins, wall_base: float,
            starts: Mapping[tuple[int, int], frozenset[State]]
            ) -> tuple[list[HistoryOp], list[StepRecord], list[tuple[int, int]]]:
    """The run as checker operations and as report records (same order, same ids), and each
    one's position (branch, index; the suffix is branch len(branches))."""
    machines = slot_machines(case.slots)
    ops: list[HistoryOp] = []
    records: list[StepRecord] = []
    positions: dict[int, int] = {}
    where: list[tuple[int, int]] = []
    for number, record in enumerate(sorted(run.records, key=lambda r: r.invoked)):
        machine = machines[record.action.slot]
        k = positions.get(record.branch, 0)
        positions[record.branch] = k + 1
        where.append((record.branch, k))
        observation = record.observation
        thread = f"branch {record.branch + 1}" if record.branch < len(case.branches) \
            else "suffix"
        waited = waited_seconds(machine, record)
        ops.append(HistoryOp(
            id=number, slot=record.action.slot, thread=thread,
            op=record.action.op, args=record.action.args, invoked=record.invoked,
            returned=record.returned, code=observation.code if observation else None,
            outputs=tuple(sorted(observation.outputs.items())) if observation else (),
            not_before=(record.invoked + record.wait_ms / 1000.0 - DEADLINE_SLACK)
            if timed_out(machine, record) else
            (record.invoked + waited - DEADLINE_SLACK) if waited is not None else None,
            waited=waited is not None))
        states = starts.get((record.branch, k), frozenset())
        steps = [(s, step(MACHINES[machine], s, record.action.op, record.action.args, pins))
                 for s in sorted(states, key=repr)]
        rules = sorted({r for _, st in steps for r in st.rules})
        # A branch step may start in any state some interleaving leaves: every candidate is
        # listed, and what the model allows from each (the report's "state before"/"allowed").
        allowed = list(dict.fromkeys(
            (f"from {MACHINES[machine].describe(s)}: " if len(steps) > 1 else "") + a.describe()
            for s, st in steps for a in st.allowed))[:BRANCH_ALLOWED_SHOWN]
        returned = record.returned
        records.append(step_record(
            record.action, machine, observation,
            allowed=allowed if observation else [
                f"unknown outcome: {record.error.splitlines()[0]}" if record.error
                else "unknown outcome: no answer within the step timeout"],
            ok=observation is not None, rules=rules,
            state_before=" | ".join(MACHINES[machine].describe(s) for s, _ in steps),
            seconds=(returned - record.invoked) if returned is not None else 0.0,
            thread=thread, started=wall_base + record.invoked,
            ended=wall_base + returned if returned is not None else 0.0))
    return ops, records, where


def overlapped(ops: Sequence[HistoryOp]) -> bool:
    """True if two operations of different branches were in flight at the same time: each was
    invoked before the other returned (an operation without an answer is in flight to the end).
    Only branch operations count: the prefix ran before the branches and the suffix after."""
    branch_ops = [op for op in ops if op.thread.startswith("branch ")]
    for first, second in itertools.combinations(branch_ops, 2):
        if first.thread == second.thread:
            continue
        first_end = first.returned if first.returned is not None else float("inf")
        second_end = second.returned if second.returned is not None else float("inf")
        if first.invoked < second_end and second.invoked < first_end:
            return True
    return False

"""Judging a parallel case: run it several times, check each run's history for linearizability
against the model, and turn the outcome into a `CaseResult`.

The prefix runs and is judged step by step, as any case; then the branches run on threads
(`callgate.conformance.cases.parallel.threads`) and `callgate.conformance.judge.linearizability`
asks whether some sequential order of the history, respecting real time, is one the model allows
(DESIGN.md principle 1: the model is the sequential specification). Each case runs several times
(`runs`) to sample schedules, stopping at the first run that goes wrong. An action with an
unknown outcome makes the case an `error` unless the history is not linearizable even so.

A verdict never claims more than was shown (principle 11):

* a case passes only if at least one of its runs overlapped (operations of different branches in
  flight at the same time) and every run was linearizable; runs that never overlapped exercised
  no race, and the case is an `error` that says so;
* against an adapter that declares it serves one request at a time (`concurrent` false) no
  parallel case runs: each is `not_applicable` with that reason;
* an exception the harness raises anywhere in a case (prefix, branch threads, judging) makes
  the case an `error` with the exception and its traceback as evidence.
"""

from __future__ import annotations

import random
import time
import traceback
from collections.abc import Sequence
from dataclasses import replace
from functools import partial
from typing import Any

from callgate.conformance.cases.parallel.case import Interleavings, ParallelCase, interleavings
from callgate.conformance.cases.parallel.observed_waits import ObservedWaits
from callgate.conformance.cases.parallel.orderings import (
    OrderingTally,
    consistent_classes,
    directed_gates,
    ordering_classes,
)
from callgate.conformance.cases.parallel.threads import (
    execute_branches,
    history_of,
    overlapped,
    wait_times,
)
from callgate.conformance.cases.values import legacy_echo_values
from callgate.conformance.judge.declines import DECLARED, declared
from callgate.conformance.judge.execution import StepTimeout
from callgate.conformance.judge.linearizability import (
    DEFAULT_BUDGET,
    HistoryOp,
    Linearizability,
    LinearizabilityResult,
    check,
)
from callgate.conformance.judge.perform import code_name, missing_features, slot_machines
from callgate.conformance.judge.runner import CaseRunner
from callgate.conformance.protocol.adapter import AdapterFault, Capabilities, NotApplicable
from callgate.conformance.results import CaseResult, StepRecord, Verdict
from callgate.model.families import MACHINES
from callgate.model.transitions import Args, Kind, Pins, State, step


def _allowed_text(machine: str, action_op: str, args: Args, states: frozenset[State],
                  pins: Pins) -> list[str]:
    """What the model allows of an operation from every state it may have started in."""
    out: list[str] = []
    for state in sorted(states, key=repr):
        result = step(MACHINES[machine], state, action_op, args, pins)
        out.extend(f"from {MACHINES[machine].describe(state)}: {a.describe()}"
                   for a in result.allowed)
    return list(dict.fromkeys(out))


# A named race none of whose `runs` overlapped runs again, up to this many times `runs` in all.
UNEXERCISED_RUNS_FACTOR = 3
# After its regular runs a named race runs once more per ordering class of its conflicting
# operations on a directed schedule (`orderings.directed_gates`, the operations overlapping),
# and a class its runs left unobserved up to this many times; for at most this many seconds.
ORDERING_ATTEMPTS = 6
ORDERING_SECONDS = 8.0
# The directed schedules' lead: how long after the earlier operation was invoked (so that they
# still overlap) or answered the later one starts.
DIRECTED_LEAD = (0.0005, 0.0002)

SERIAL_ADAPTER = ("the adapter serves one request at a time (concurrent: false in its handshake): "
                  "races were not exercised")


def serial_reason(capabilities: Capabilities) -> str:
    """Why no parallel case can run against this adapter ("" if they can): one that serves one
    request at a time would pass every race without running any."""
    return "" if capabilities.concurrent else SERIAL_ADAPTER


def run_parallel(runner: CaseRunner, case: ParallelCase, runs: int = 3, stagger: float = 0.0,
                 seed: int = 0, budget: int = DEFAULT_BUDGET, *,
                 require_overlap: bool = True) -> CaseResult:
    """Run a parallel case `runs` times (stopping at the first run that goes wrong) and judge
    each run's history by linearizability against the model.

    With `require_overlap` (a named race) the case passes only if some run overlapped; without
    it (one of many generated cases) a linearizable case passes whatever its overlap, which
    `overlapped_runs` reports for the caller to weigh. An exception of the harness is the
    case's `error`, with its traceback as evidence."""
    started = time.perf_counter()
    try:
        return _run_parallel(runner, case, runs, stagger, seed, budget, require_overlap, started)
    except Exception as exc:
        return parallel_result(case, Verdict.ERROR, started, evidence=_traceback_of(exc),
                               message=f"the harness failed while running the case: "
                                       f"{type(exc).__name__}: {exc}")


def _traceback_of(exc: BaseException) -> str:
    """The exception's type, message and traceback, as evidence (its end kept if long)."""
    return "".join(traceback.format_exception(exc))


def _run_parallel(runner: CaseRunner, case: ParallelCase, runs: int, stagger: float, seed: int,
                  budget: int, require_overlap: bool, started: float) -> CaseResult:
    caps = runner.capabilities
    pins = dict(caps.pins)
    missing = missing_features(case.slots, case.actions(), caps.features)
    if missing:
        return parallel_result(case, Verdict.NOT_APPLICABLE, started, message=(
            f"the adapter lacks {', '.join(sorted(missing))}"))
    if serial_reason(caps):
        return parallel_result(case, Verdict.NOT_APPLICABLE, started, message=serial_reason(caps))
    # A request the handshake declares absent is never sent (judge/declines.py); in a branch it
    # would end the run as an unknown outcome, so such a race is not run at all.
    machines = slot_machines(case.slots)
    for action in (a for branch in case.branches for a in branch):
        absence = declared(runner.absences, machines[action.slot], action.op, dict(action.args))
        if absence is not None:
            return parallel_result(case, Verdict.NOT_APPLICABLE, started, message=(
                f"{action}: {DECLARED}: {absence.reason}"))
    rng = random.Random(seed)
    history: list[StepRecord] = []
    verdict_text = ""
    total_ops = 0
    overlaps = 0
    # A named race wants `runs` runs that overlapped (each a chance to meet its window, which a
    # run whose operations did not overlap never had): one that is hard to meet gets more runs,
    # up to `limit`, and is called not exercised if none overlapped.
    limit = runs * UNEXERCISED_RUNS_FACTOR if require_overlap else runs
    wanted = runs if require_overlap else 0

    def regular(done: int) -> bool:
        """Whether the regular runs are over after `done` of them."""
        return done >= runs and (overlaps >= wanted or done >= limit)
    number = 0
    # A named race measures which orderings of its conflicting operations its runs showed.
    tally: OrderingTally | None = None
    attempts: dict[int, int] = {}
    regular_end = 0.0

    def targets() -> list[int]:
        """Ordering classes a directed run is still owed: each class once (its first ordering,
        the operations overlapping: a window inside the earlier operation is met there even
        when free runs already showed the class), and a class not observed up to
        `ORDERING_ATTEMPTS` times."""
        if tally is None:
            return []
        missing = set(tally.missing())
        return [i for i in range(len(tally.classes))
                if attempts.get(i, 0) < (ORDERING_ATTEMPTS if i in missing else 1)]

    def directed() -> bool:
        if not targets() or not regular_end:
            return False
        return time.perf_counter() - regular_end < ORDERING_SECONDS

    while not regular(number) or directed():
        number += 1
        gates = None
        if regular(number - 1) and tally is not None:
            if not regular_end:
                regular_end = time.perf_counter()
            target = min(targets(), key=lambda i: attempts.get(i, 0), default=None)
            if target is not None:
                attempt = attempts.get(target, 0)
                attempts[target] = attempt + 1
                orderings_of = tally.classes[target].orderings
                chosen = orderings_of[(attempt // 2) % len(orderings_of)]
                gates = directed_gates(chosen, attempt % 2 == 1, DIRECTED_LEAD[attempt % 2])
                tally.directed_runs += 1
        # The result of a run that ends the case: with the runs so far and how many overlapped.
        result = partial(parallel_result, case, started=started, runs=number,
                         overlapped_runs=overlaps)
        try:
            # Echoed values as they were before (the branches judge them unmapped).
            live = runner.open(case.id, case.slots, values=legacy_echo_values())
        except (StepTimeout, AdapterFault) as exc:
            return result(Verdict.ERROR, message=f"opening a session failed: {exc}",
                          evidence=getattr(exc, "evidence", ""))
        except NotApplicable as exc:
            return result(Verdict.NOT_APPLICABLE, message=str(exc))
        try:
            for action in case.prefix:
                kind = live.kind(action)
                if kind is not Kind.DEFINED:
                    return result(Verdict.NOT_APPLICABLE, message=(
                        f"run {number}: after the implementation's choices the model has the "
                        f"prefix action {action} {kind.value}, so the case is not run"))
                if not live.step(action):
                    break
            if live.verdict is not Verdict.PASS:
                return result(live.verdict, trace=live.trace,
                              message=f"in the prefix (run {number}): {live.message}",
                              evidence=live.evidence)
            initial = {name: tracker.states for name, tracker in live.trackers.items()}
            # Sound in every interleaving from where the prefix really led (PropEr's rule,
            # checked against the implementation's own choices).
            plan = interleavings(case.slots, case.prefix, case.branches, pins, case.suffix,
                                 start=initial)
            if not plan.sound:
                return result(Verdict.NOT_APPLICABLE, message=(
                    f"run {number}: from the states the prefix led to, the case is not "
                    f"sound (every interleaving must keep every action defined, and no action "
                    f"that is not atomic may race), so it is not run: {plan.problem}"))
            waits = wait_times(case, plan.starts, pins)
            if require_overlap and tally is None:
                tally = OrderingTally.of(ordering_classes(case, pins, initial))
            wall_base = time.time() - time.perf_counter()
            # Each notification wait decided again from the answers before it (not with
            # `callgate run --full-waits`, which keeps every wait at its old length).
            decide = ObservedWaits(case, initial, pins).wait if runner.waits.calibrate else None
            run = execute_branches(live.session, case.branches, waits, runner.step_timeout,
                                   stagger, rng, case.suffix, runner.executor.call, run=number,
                                   gates=gates, decide=decide)
        finally:
            live.close()
        prefix_records = [replace(r, thread="prefix") for r in live.trace]
        if runner.recorder is not None:  # --record-trace: the branches' overlapping calls
            runner.recorder.branches(live.recorded, slot_machines(case.slots), run.records,
                                     wall_base, len(case.branches))
        ops, records, where = history_of(case, run, pins, wall_base, plan.starts)
        history = prefix_records + records
        if run.harness_errors:
            first = run.harness_errors[0]
            return result(Verdict.ERROR, trace=history, history=history,
                          evidence="\n".join(run.harness_errors),
                          message=f"run {number}: the harness failed on "
                                  f"{first.splitlines()[0]}")
        total_ops += len(ops)
        overlaps += overlapped(ops)
        result = partial(parallel_result, case, started=started, runs=number,
                         overlapped_runs=overlaps)
        outcome = check(ops, {s.name: MACHINES[s.machine] for s in case.slots}, initial, pins,
                        budget)
        verdict_text = outcome.verdict.value
        if outcome.verdict is Linearizability.NOT_LINEARIZABLE:
            return _failure(case, started, outcome, ops, records, where, prefix_records, plan,
                            pins, number, overlaps)
        if outcome.verdict is Linearizability.UNKNOWN:
            return result(Verdict.ERROR, trace=history, history=history,
                          linearizability=verdict_text,
                          message=f"run {number}: {outcome.summary()}")
        if run.hung:
            first_hung = run.hung[0]
            return result(Verdict.ERROR, trace=history, history=history,
                          linearizability=verdict_text, evidence=first_hung.error, message=(
                              f"run {number}: {first_hung.action} on branch "
                              f"{first_hung.branch + 1} "
                              + ("raised: " + first_hung.error.splitlines()[0]
                                 if first_hung.error
                                 else f"gave no answer within {runner.step_timeout} s")
                              + f"; the history is {outcome.summary()}"))
        if tally is not None:
            tally.add(consistent_classes(case, tally.classes, ops, where, initial, pins, budget))
            if regular(number) and not regular_end:
                regular_end = time.perf_counter()
    measured = tally.to_json(case) if tally is not None else {}
    ordering_text = f"; {tally.summary()}" if tally is not None else ""
    if require_overlap and not overlaps:
        return parallel_result(
            case, Verdict.ERROR, started, trace=history, history=history,
            linearizability=verdict_text, steps=total_ops, runs=number, overlapped_runs=0,
            orderings=measured,
            message=(f"the race was not exercised: no two branches' operations overlapped in "
                     f"{number} runs (every history was linearizable){ordering_text}"))
    return parallel_result(case, Verdict.PASS, started, history=history,
                           linearizability=verdict_text, steps=total_ops, runs=number,
                           overlapped_runs=overlaps, orderings=measured, message=(
                               f"{number} runs ({overlaps} overlapped: operations of different "
                               f"branches in flight at once), {total_ops} concurrent "
                               f"operations: every history linearizable{ordering_text}"))


def _failure(case: ParallelCase, started: float, outcome: LinearizabilityResult,
             ops: list[HistoryOp], records: list[StepRecord], where: list[tuple[int, int]],
             prefix_records: list[StepRecord], plan: Interleavings, pins: Pins, number: int,
             overlaps: int) -> CaseResult:
    """A non-linearizable run: the culprit marked with what the model allowed, and the trace cut
    to the shortest non-linearizable sub-history."""
    failing = outcome.failing()
    assert failing is not None
    machines = slot_machines(case.slots)
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
    return parallel_result(case, Verdict.FAIL, started, trace=trace, history=history,
                           linearizability=outcome.verdict.value, runs=number,
                           overlapped_runs=overlaps,
                           message=f"run {number}: "
                                   f"{outcome.summary(lambda slot, code: code_name(code, machines[slot]))}")


def parallel_result(case: ParallelCase, verdict: Verdict, started: float, *,
                    trace: Sequence[StepRecord] = (), history: Sequence[StepRecord] = (),
                    message: str = "", evidence: str = "", linearizability: str = "",
                    steps: int | None = None, runs: int = 0, overlapped_runs: int = 0,
                    orderings: dict[str, Any] | None = None) -> CaseResult:
    """A parallel case's result; its trace is kept only when it failed or erred."""
    keep_trace = verdict in (Verdict.FAIL, Verdict.ERROR)
    failed = list(trace[-1].rules) if trace and verdict is Verdict.FAIL else []
    return CaseResult(
        id=case.id, kind=case.kind, description=case.description, rules=list(case.rules),
        verdict=verdict, steps=len(history) if steps is None else steps,
        seconds=time.perf_counter() - started, message=message, evidence=evidence[-4000:],
        trace=list(trace) if keep_trace else [], slots=slot_machines(case.slots),
        failed_rules=failed, replay=case.replay(), history=list(history),
        linearizability=linearizability, runs=runs, overlapped_runs=overlapped_runs,
        orderings=dict(orderings or {}))

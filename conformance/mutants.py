"""Seeded-fault mutants: the catalogue's judgement, the kill run, and the suite's figures.

A mutant is the reference implementation built with one seeded fault (`host.FAULTS`: its name,
the rule it breaks, what it does instead). `run_mutants` runs the gate against every mutant and
records, per mutant, whether a case failed (killed) and, for a kill:

* `seconds_to_kill`: from the start of the gate run to the moment the first failing case was
  recorded (every failing case is shrunk before it is recorded: `callgate.conformance.judge.shrink`);
* `counterexample_length`: steps of that case's failing trace after shrinking, and
  `length_before` its length before;
* `transition`: the *faulty transition*: where the seeded fault acted, read from the fault's
  own code (`callgate.conformance.mutants_minimal.fault_site`), or when that cannot be told a
  step of the trace whose model row cites the rule the fault breaks (see `faulty_transition`);
  `shortest_path`: the length of a shortest path in the state graph (`callgate.model.explorer`)
  from an initial state to the state it starts from (at the fault site: to the state before
  the cut, see there); `observing_steps`: the steps of the trace after it (a fault that
  corrupts the next state shows only at a later step);
* `minimal`: the counterexample is no longer than `shortest_path + needed_steps` (with
  `needed_steps` `1 + observing_steps`, or as found at the fault site) and its shrinking
  showed that no single step can be removed (`one_minimal`). For a multi-object case
  `shortest_path` also counts, for each other object with steps before the faulty transition,
  a shortest path to the state that object was in then (a cross-object fault needs it there).

A kill among a parallel case's concurrent branches is judged on its program (prefix, branches,
suffix; see `race_program`): `counterexample_length` is the program's steps, `shortest_path` the
shortest way to the states its prefix leads to (summed over its slots), `concurrent_steps` its
branch steps (the concurrent steps the race needs: each was shown needed by the shrinking) and
`observing_steps` its suffix. It is minimal when its shrinking showed it 1-minimal, which for a
race is a probabilistic claim (every single-step removal run N times without failing the same
way, `callgate.conformance.judge.race_shrink`), and it is no longer than
`shortest_path + concurrent_steps + observing_steps`: the prefix is a shortest way to where the
race starts.

A run stops at the first failing case (that is the kill); a survivor runs the whole budget. An
`error` (a step that did not answer, an adapter fault) is a kill only when it is the fault's
doing (`error_not_the_faults`): the same case, run again, passes against the correct reference
and goes wrong again against the mutant; any other error is noted in the survivor's reason and
the run goes on.
Equivalent mutants (`EQUIVALENT`, no observable difference) are expected to survive and are
reported with their reason; any other survivor is a blind spot of the suite.
"""

from __future__ import annotations

import multiprocessing
import os
import re
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from callgate.conformance import mutants_schedule, units
from callgate.conformance.budgets import BUDGETS, Budget
from callgate.conformance.cases import multi, sequences, walk
from callgate.conformance.cases.values import replayed
from callgate.conformance.gate import RunOptions, StopRun, Tick, run_gate
from callgate.conformance.implementations.reference.adapter import ReferenceAdapter
from callgate.conformance.implementations.reference.host import FAULTS, Fault
from callgate.conformance.jobs import can_fork
from callgate.conformance.mutants_minimal import (
    FAULT_SITE,
    MODEL_ROWS,
    RACE,
    fault_site,
    summed_shortest,
)
from callgate.conformance.protocol.adapter import Capabilities
from callgate.conformance.results import CaseResult, Verdict
from callgate.model import explorer
from callgate.model.families import MACHINES
from callgate.model.rules import Level, catalogue
from callgate.model.transitions import Args, Machine, ModelError, State, Tracker

# Mutants no test can tell from the reference implementation, each with the reason. They are
# listed as survivors with that reason; `killed == total - len(EQUIVALENT)` on a healthy suite.
EQUIVALENT: dict[str, str] = {
    "wait_multiple_last_member":
        "it differs only when two members are signalled, and then COM-CONT-03 lets WaitMultiple "
        "return either of them",
    "polled_status_stale":
        "with RpcNotificationTypeNone nothing bounds when the reply reaches the client: a status "
        "that stays RPC_S_ASYNC_CALL_PENDING until RpcAsyncCompleteCall is a slow reply, which "
        "the documentation allows",
    "handle_reuse_in_flight":
        "a second call on a handle whose call is in flight is UNDEFINED (RPC-INIT-06 is the "
        "client's duty), so a conformance run never makes one and any behaviour there conforms",
    "cancellation_not_fixed_at_start":
        "it re-reads a registered synchronous call's cancellability at each enable and disable "
        "on its thread, but the thread is blocked in that call while it is registered, and the "
        "call leaves the registrations when the thread returns from it: no enable or disable "
        "ever runs while it is registered (race-thread-cancel-fixed-at-start drives the window "
        "that is left: cancel, then disable, then cancel again)",
}

# Mutants whose fault shows only when two threads interleave: killed by the parallel cases
# alone (a sequential case never opens the window).
CONCURRENCY: frozenset[str] = frozenset({"begin_check_then_set_race", "wait_lost_wakeup"})

# In-scope MUST rules that no test through the adapter protocol can observe, each with the
# reason; every other in-scope MUST rule has at least one mutant.
UNOBSERVABLE: dict[str, str] = {
    "RPC-MISC-01": "RpcAsyncRegisterInfo is obsolete and documents no result (D-15): its row "
                   "admits any return and no state of the binding depends on it",
    "RPC-MISC-04": "a statement of design (COM's Async interfaces carry asynchronous RPC): the "
                   "Begin_ row that cites it is checked by the COM-BEGIN mutants",
    "RPC-INIT-07": "the client's duty to keep the handle and buffers alive: only UNDEFINED rows "
                   "cite it (a conformance run never frees them early)",
    "RPC-DECL-01": "MIDL adds the async-handle parameter at compile time and the wire format is "
                   "the same: nothing a run can see",
    "COM-SRV-04": "synchronous and asynchronous proxies produce identical wire requests: the "
                  "adapter protocol shows results, not packets",
    "COM-CONT-07": "WaitMultiple runs the modal loop on an STA thread: the harness probes message "
                   "pumping only through a call object's Wait (probe_sta_wait), never through "
                   "the container",
    "COM-CCAN-01": "that the thread-level functions leave asynchronous calls alone: the "
                   "thread_cancel machine has no asynchronous call on the same thread, so no "
                   "case puts one where CoCancelCall could wrongly reach it",
    "RPC-SRV-COMPLETE-06": "the runtime freeing the server's parameters after RpcAsyncCompleteCall "
                           "has no effect the test server or the client can see (the manager "
                           "routine never touches them again)",
}

# The classes of fault issue 16 found the suite missing, each with its mutants: the report gives
# per class how many were killed, with a minimal counterexample, and by which kind of case.
CLASSES: dict[str, tuple[str, ...]] = {
    "cross-object": ("finish_out_of_last_signal", "cancel_most_recent_call",
                     "release_abandons_server_calls", "event_kernel_handle_shared",
                     "rpc_reply_per_binding", "rpc_cancel_last_dispatched"),
    "argument-value": ("call_wait_signed_timeout", "event_wait_deadline_wraps",
                       "finish_out_byte", "complete_reply_16bit", "abort_code_sign_lost",
                       "cancel_seconds_signed"),
    "race": ("notify_after_abort_cancel", "abort_during_complete_no_notify",
             "status_final_before_reply", "soft_cancel_lost_while_testing",
             "cancel_lost_after_test"),
    "forgotten-state": ("status_poll_drops_soft_cancel", "reset_forgets_manual_reset",
                        "rewait_loses_out", "failed_call_forgets_init",
                        "client_test_cancel_consumes"),
}

# Case kinds a mutant run can switch on or off. `identify` is the state identification that
# follows each machine's walk; it runs only with `directed` (its cases are directed cases).
KINDS = ("directed", "stateful", "parallel", "multi", "identify")


@dataclass(frozen=True)
class MutantResult:
    """The gate's judgement of one mutant."""

    name: str
    rule: str
    effect: str
    killed: bool
    seconds: float
    cases: int
    verdict: str = ""                 # of the killing case: fail or error
    killed_by: str = ""               # case id
    kind: str = ""                    # directed, stateful or parallel
    seconds_to_kill: float | None = None
    counterexample_length: int | None = None
    shortest_path: int | None = None
    transition: str = ""              # machine: state / operation of the faulty transition
    # How the faulty transition was found: "fault-site" (where the seeded fault acted,
    # callgate.conformance.mutants_minimal), "model-rows" (guessed from the rows, the fallback)
    # or "race" (a race's program); `fault_steps`: the steps (0-based) where the fault acted.
    transition_source: str = ""
    fault_steps: list[int] = field(default_factory=list)
    # The steps after the shortest way (`shortest_path`) the bound counts: the transition and
    # the steps that observe it, or at the fault site the steps from the cut on that no
    # shortest way could replace (callgate.conformance.mutants_minimal); a race's program:
    # its branch and suffix steps.
    needed_steps: int | None = None
    observing_steps: int | None = None  # steps after the faulty transition (they show the fault)
    concurrent_steps: int | None = None  # a race: the branch steps of its program
    minimal: bool | None = None
    length_before: int | None = None  # the killing case's length before shrinking
    one_minimal: bool | None = None   # the shrinker showed no single step can be removed
    shrink_reruns: int = 0
    failed_rules: list[str] = field(default_factory=list)
    message: str = ""
    reason: str = ""                  # why it survived (equivalent, concurrency, or blind spot)
    # Seconds spent after the kill placing the faulty transition and judging minimality
    # (`fault_site`'s reruns; not part of `seconds` or `seconds_to_kill`).
    locate_seconds: float = 0.0
    # Of `seconds_to_kill`, the seconds the killing case's shrinking took (its reruns, and for
    # a race the runs that measure its reproduction rate).
    shrink_seconds: float = 0.0
    # The CPU seconds (user and system, every thread) of the process while it ran this mutant:
    # its units, the shrinking and the locating (a run waits much of its wall time).
    cpu_seconds: float = 0.0
    jobs: list[dict[str, Any]] = field(default_factory=list)  # the jobs that ran, in order
    ran: bool = True                  # False: an equivalent mutant the run left out (its reason)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class MutantsReport:
    """Every mutant's result and the totals."""

    budget: str
    seed: int
    kinds: tuple[str, ...]
    results: tuple[MutantResult, ...]
    seconds: float
    command: str = ""

    @property
    def killed(self) -> list[MutantResult]:
        return [r for r in self.results if r.killed]

    @property
    def survivors(self) -> list[MutantResult]:
        return [r for r in self.results if not r.killed]

    @property
    def kill_rate(self) -> float:
        return len(self.killed) / len(self.results) if self.results else 0.0

    @property
    def median_seconds_to_kill(self) -> float | None:
        times = [r.seconds_to_kill for r in self.killed if r.seconds_to_kill is not None]
        return round(statistics.median(times), 3) if times else None

    @property
    def minimal_counterexamples(self) -> int:
        return sum(1 for r in self.killed if r.minimal)

    @property
    def unexpected_survivors(self) -> list[MutantResult]:
        """Survivors that are not documented as equivalent: blind spots of the suite."""
        return [r for r in self.survivors if r.name not in EQUIVALENT]

    def to_json(self) -> dict[str, Any]:
        return {
            "total": len(self.results),
            "killed": len(self.killed),
            "survivors": [{"name": r.name, "rule": r.rule, "reason": r.reason}
                          for r in self.survivors],
            "equivalent": sorted(EQUIVALENT),
            "not_run": [r.name for r in self.results if not r.ran],
            "kill_rate": round(self.kill_rate, 4),
            "median_seconds_to_kill": self.median_seconds_to_kill,
            "minimal_counterexamples": self.minimal_counterexamples,
            "by_kind": tally_kinds(self.killed),
            "by_class": {name: summary(r for r in self.results if r.name in members)
                         for name, members in CLASSES.items()},
            "budget": self.budget, "seed": self.seed, "kinds": list(self.kinds),
            "seconds": round(self.seconds, 2), "command": self.command,
            "mutants": [r.to_json() for r in self.results],
        }


def tally_kinds(killed: Iterable[MutantResult]) -> dict[str, int]:
    """How many of these kills each kind of case made (the kind of the first failing case)."""
    found: dict[str, int] = {}
    for result in killed:
        found[result.kind] = found.get(result.kind, 0) + 1
    return dict(sorted(found.items()))


def summary(results: Iterable[MutantResult]) -> dict[str, Any]:
    """A group of mutants' figures: how many ran, were killed, had a minimal counterexample,
    and which kinds of case made the kills; the survivors by name."""
    chosen = list(results)
    killed = [r for r in chosen if r.killed]
    return {"total": len(chosen), "killed": len(killed),
            "minimal_counterexamples": sum(1 for r in killed if r.minimal),
            "by_kind": tally_kinds(killed),
            "survivors": sorted(r.name for r in chosen if not r.killed)}


def survivor_reason(name: str, kinds: Iterable[str]) -> str:
    """Why a mutant that no case killed survived."""
    if name in EQUIVALENT:
        return f"equivalent: {EQUIVALENT[name]}"
    if name in CONCURRENCY and "parallel" not in set(kinds):
        return "concurrency fault: only parallel cases can see it, and none ran"
    if name in CONCURRENCY:
        return "concurrency fault not caught: the parallel cases never hit the window (blind spot)"
    return "no case failed: a blind spot of the suite (improve the generation to kill it)"


# --- the faulty transition and its shortest path ------------------------------------------------


def _args(machine: Machine, op: str, values: Mapping[str, object]) -> Args:
    return tuple((p.name, values[p.name]) for p in machine.operation(op).params)  # type: ignore[misc]


def faulty_transition(result: CaseResult, plan: sequences.Plan, rule: str = "",
                      needed: bool = False) -> tuple[str, int | None, int | None]:
    """The faulty transition of a failing case: its state and operation (as text), the length of
    a shortest path in the machine's state graph from an initial state to that state, and how
    many steps of the trace come after it (the steps that observe the fault). Unknown parts are
    "" or None.

    The faulty transition is a step on the failing slot whose model row cites `rule` (the rule
    the fault breaks): the latest one whose earlier steps are no more than a shortest path to
    the state it starts from, else the latest one. A fault that shows at once is the failing
    step itself (no observing steps); a fault that corrupts the next state is an earlier step,
    and the steps after it are what brings the corruption to light. In a multi-object case,
    when no such step of the failing slot is reached by a shortest path, a step of another
    object citing `rule` is taken the same way (the fault acts on one object and shows on
    another; the text then names that object's slot). When no step cites `rule` (or none is
    given), the failing step is taken. With several objects (a multi-object
    case), the shortest path is summed over the objects driven before the faulty transition.

    `needed`: the shrinking showed that no single step of the trace can be removed. Then a step
    the model says changes nothing (its slot's state is the same before and after it) is where
    the implementation departed from the model: without it the rest of the trace expects the
    same outcomes, yet the failure is lost, so the step changed a state the model does not
    have. When no step citing `rule` is reached by a shortest path, the latest such step that
    is is taken as the faulty transition (the fault acts there and shows later)."""
    if not result.trace:
        return "", None, None
    last = result.trace[-1]
    machine_name = result.slots.get(last.slot, "")
    if machine_name not in MACHINES:
        return "", None, None
    configs = {s.get("name"): s.get("config", {}) for s in result.replay.get("slots", [])}
    if last.slot not in configs:
        return "", None, None
    # Every slot's state before each step: a fault between objects needs the other objects'
    # steps too, so the bound counts a shortest path for each object the trace drives.
    trackers: dict[str, Tracker] = {}
    for name, config in configs.items():
        slot_machine = MACHINES.get(result.slots.get(name, ""))
        if slot_machine is not None:
            trackers[name] = Tracker(slot_machine, plan.capabilities.pins,
                                     [slot_machine.make(**dict(config))])
    binding = replayed(result.replay.get("values"))
    before: dict[int, dict[str, frozenset[State]]] = {}
    for index, record in enumerate(result.trace):
        before[index] = {name: t.states for name, t in trackers.items()}
        if index == len(result.trace) - 1:
            break
        tracker = trackers.get(record.slot)
        if tracker is None or record.code is None:
            return "", None, None
        code, outputs = binding.observed(tracker.machine.name, record.op, record.code,
                                         record.outputs)
        if not tracker.observe(record.op, _args(tracker.machine, record.op, record.args), code,
                               outputs).ok:
            return "", None, None
    citing = [i for i, r in enumerate(result.trace) if r.slot == last.slot and rule
              and rule in r.rules]
    # A fault between objects acts on one object and shows on another (a cancel of one call
    # that reaches the server of another): steps of the other objects that cite the rule.
    elsewhere = [i for i, r in enumerate(result.trace) if r.slot != last.slot and rule
                 and rule in r.rules and r.slot in trackers]

    def shortest(index: int) -> int | None:
        """Shortest paths, summed over the objects driven before `index`, to their states."""
        driven = {r.slot for r in result.trace[:index]} | {last.slot, result.trace[index].slot}
        return summed_shortest(plan, result.slots,
                               {name: before[index].get(name) for name in driven})

    def reached_shortest(indices: Iterable[int]) -> int | None:
        for index in sorted(indices, reverse=True):
            found = shortest(index)
            if found is not None and index <= found:
                return index
        return None

    # Steps that change nothing in the model, shown needed (see the docstring).
    unchanged = [i for i in range(len(result.trace) - 1) if needed
                 and result.trace[i].slot == last.slot
                 and len(before[i][last.slot]) == 1 and before[i][last.slot] == before[i + 1][last.slot]]
    chosen = reached_shortest(citing)
    if chosen is None:
        chosen = reached_shortest(elsewhere)
    if chosen is None:
        chosen = reached_shortest(unchanged)
    if chosen is None:
        chosen = max(citing, default=len(result.trace) - 1)
    step = result.trace[chosen]
    states = before[chosen][step.slot]
    if len(states) != 1:
        return "", None, None
    args = ", ".join(f"{k}={v}" for k, v in step.args.items())
    where = trackers[step.slot].machine
    slot = f" {step.slot}" if step.slot != last.slot else ""
    text = f"{where.name}{slot}: {where.describe(next(iter(states)))} / {step.op}({args})"
    return text, shortest(chosen), len(result.trace) - 1 - chosen


# --- running one mutant -------------------------------------------------------------------------

_PLANS: dict[tuple[frozenset[str], tuple[tuple[str, str], ...]], sequences.Plan] = {}


def plan_for(caps: Capabilities) -> sequences.Plan:
    """The directed plan for these capabilities, built once per process (every mutant of the
    reference declares the same features and pins)."""
    key = (frozenset(caps.features), tuple(sorted(caps.pins.items())))
    if key not in _PLANS:
        _PLANS[key] = sequences.plan(caps)
    return _PLANS[key]


def case_kind(result: CaseResult) -> str:
    """The kind of case that killed: an identifying session (`<machine>-ident-NNNNN`) is a
    directed case, reported as `identify`."""
    if result.kind in ("", "directed") and "-ident-" in result.id:
        return "identify"
    return result.kind if result.kind in KINDS else result.kind or "directed"


def error_not_the_faults(result: CaseResult, mutant: Any, step_timeout: float) -> str:
    """Why an `error` against a mutant is not a kill ("" if it is one): the same case, run
    again, must pass against the correct reference and go wrong again against the mutant. An
    error the reference shares (a step timeout on a loaded machine, an adapter limit) or one the
    mutant does not repeat is not the fault's doing."""
    from callgate.conformance.judge.rerun import NotReplayable, rerun

    if not result.replay:
        return ""  # nothing to run again: the error stands (it is reported with verdict error)
    reference = ReferenceAdapter()
    try:
        again = rerun(reference, result.id, result.replay, step_timeout)
    except NotReplayable as exc:
        return f"the case cannot be run again to confirm the error ({exc})"
    finally:
        reference.shutdown()
    if again.verdict is not Verdict.PASS:
        return (f"the correct reference gives {again.verdict.value} on the same case too "
                f"({again.message[:160]})")
    try:
        repeated = rerun(mutant, result.id, result.replay, step_timeout)
    except NotReplayable as exc:
        return f"the case cannot be run again to confirm the error ({exc})"
    if repeated.verdict not in (Verdict.FAIL, Verdict.ERROR):
        return f"the error did not repeat against the mutant ({repeated.verdict.value})"
    return ""


# --- the jobs of one mutant ---------------------------------------------------------------------

# The name of the job that runs the stateful and parallel cases.
LAST_JOB = "stateful+parallel"


@dataclass(frozen=True)
class Job:
    """One part of a mutant's gate run: the directed walk, state identification and multi-object
    cases of one machine, or (`machine` empty) the stateful and parallel cases."""

    name: str
    machine: str = ""
    # One unit of the gate (`callgate.conformance.units`) run alone: the way `run_mutant` splits
    # a run (`callgate.conformance.mutants_schedule` orders them); `machine` is then empty.
    unit: str = ""


def machines_of(rule: str) -> list[str]:
    """The machines whose rows cite `rule`, the one with the most citing rows first (ties in the
    registry's order): where a fault that breaks the rule shows first."""
    counts = {name: m.cited_rules().get(rule, 0) for name, m in MACHINES.items()}
    order = list(MACHINES)
    return sorted((n for n, c in counts.items() if c), key=lambda n: (-counts[n], order.index(n)))


def jobs_for(rule: str, machines: Sequence[str], kinds: Sequence[str],
             sizes: Mapping[str, int] | None = None) -> list[Job]:
    """A mutant's jobs in the order they run: the machines whose rows cite the rule it breaks
    first, then the stateful and parallel cases, then the other machines. With `sizes` (each
    machine's transitions), the smaller machine goes first within each group: its walk is the
    cheaper, so a kill there comes sooner and a miss costs less (else the plan's order). The
    stateful and parallel cases (about 18 s against the reference) come before the other
    machines (about 60 s): a fault the walk of its own machine misses is more often a race than
    a fault another machine's walk shows."""
    chosen = set(kinds)
    jobs: list[Job] = []
    order = list(machines)

    def cheap_first(names: Iterable[str]) -> list[str]:
        return sorted(names, key=lambda n: ((sizes or {}).get(n, 0), order.index(n)))

    walks = bool(chosen & {"directed", "multi"})
    first = cheap_first(m for m in machines_of(rule) if m in machines) if walks else []
    rest = cheap_first(m for m in machines if m not in first) if walks else []
    jobs += [Job(m, m) for m in first]
    if chosen & {"stateful", "parallel"}:
        jobs.append(Job(LAST_JOB))
    jobs += [Job(m, m) for m in rest]
    return jobs


@dataclass
class JobOutcome:
    """What one job did: its seconds and cases, and the failing case (with the seconds into the
    job at which it was recorded) when it killed."""

    job: Job
    seconds: float = 0.0
    cases: int = 0
    kill: tuple[CaseResult, float] | None = None

    def to_json(self) -> dict[str, Any]:
        return {"job": self.job.name, "seconds": round(self.seconds, 3), "cases": self.cases,
                "killed": self.kill is not None}


def schedule(jobs: Sequence[Job], run_job: Callable[[Job], JobOutcome]
             ) -> tuple[list[JobOutcome], tuple[CaseResult, float] | None]:
    """Run `jobs` in order until one kills; the outcomes of the jobs that ran, and the kill with
    its honest time: every earlier job's seconds plus the seconds into the killing job. No
    kill means every job ran to its end."""
    ran: list[JobOutcome] = []
    spent = 0.0
    for job in jobs:
        outcome = run_job(job)
        ran.append(outcome)
        if outcome.kill is not None:
            result, at = outcome.kill
            return ran, (result, spent + at)
        spent += outcome.seconds
    return ran, None


def run_units(adapter: Any, jobs: Sequence[Job], options: RunOptions,
              kill_of: Callable[[Tick], CaseResult | None]
              ) -> tuple[list[JobOutcome], tuple[CaseResult, float] | None]:
    """Run the unit jobs `jobs` in their order as one gate run against `adapter` (so the units
    share one case runner, as in a plain run: its wait calibration is made once), stopping at
    the first result `kill_of` says is a kill. Like `schedule`: the outcome of each unit that
    ran (its seconds from the end of the one before, the run's start for the first) and the
    kill with the seconds from the run's start to the moment it was recorded."""
    ran: list[JobOutcome] = []
    mark = {"at": 0.0, "cases": 0}
    kill: list[tuple[CaseResult, float]] = []

    def outcome(index: int) -> JobOutcome:
        while len(ran) <= index:
            ran.append(JobOutcome(jobs[len(ran)]))
        return ran[index]

    def progress(tick: Tick) -> None:
        now = time.perf_counter() - started
        if tick.result is None:
            index = tick.units_done - 1
            if len(ran) <= index < len(jobs) and tick.label == jobs[index].unit:
                # A unit ended: its seconds and cases since the previous one ended.
                done = outcome(index)
                done.seconds, done.cases = now - mark["at"], tick.cases - int(mark["cases"])
                mark["at"], mark["cases"] = now, tick.cases
            return  # a unit ended, or a long piece of work said where it is
        result = kill_of(tick)
        if result is not None:
            killing = outcome(tick.units_done)
            killing.seconds, killing.cases = now - mark["at"], tick.cases - int(mark["cases"])
            killing.kill = (result, now - mark["at"])
            kill.append((result, now))
            raise StopRun

    with tempfile.TemporaryDirectory(prefix="callgate-mutant-") as out:
        started = time.perf_counter()
        run_gate(adapter, replace(options, out=Path(out), units=tuple(j.unit for j in jobs)),
                 progress)
    return ran, (kill[0] if kill else None)


_SUBPLANS: dict[tuple[int, str], sequences.Plan] = {}


def machine_plan(plan: sequences.Plan, machine: str) -> sequences.Plan:
    """`plan` cut down to one machine (built once per plan and machine)."""
    key = (id(plan), machine)
    if key not in _SUBPLANS:
        _SUBPLANS[key] = sequences.Plan(plan.capabilities, {machine: plan.machines[machine]})
    return _SUBPLANS[key]


def _unit_options(name: str, budget: Budget, seed: int, out: Path, step_timeout: float,
                  kinds: Sequence[str], plan: sequences.Plan) -> RunOptions:
    """The options of a whole gate run against mutant `name` with these kinds of case (a unit
    job runs one of its units)."""
    return RunOptions(f"reference+{name}", budget, seed, out, step_timeout,
                      directed="directed" in kinds, stateful="stateful" in kinds, plan=plan,
                      multi="multi" in kinds, identify="identify" in kinds, reports=False,
                      **_parallel_option(kinds))


def unit_jobs(rule: str, plan: sequences.Plan, caps: Capabilities, budget: Budget, seed: int,
              kinds: Sequence[str]) -> list[Job]:
    """A mutant's jobs: one per unit of the gate run with these kinds of case, in the order of
    `mutants_schedule.order_units` for the rule it breaks (the units citing it first)."""
    options = _unit_options("", budget, seed, Path("."), 10.0, kinds, plan)
    every = units.plan_units(plan, caps, options)
    return [Job(s.unit.id, unit=s.unit.id) for s in mutants_schedule.order_units(
        rule, every, frozenset(caps.features), plan.totals(), budget.stateful_coupled,
        parts_citing=mutants_schedule.part_citing(rule, every, plan))]


def run_mutant(name: str, budget: Budget, seed: int, kinds: Sequence[str] = KINDS,
               step_timeout: float = 10.0,
               adapter_factory: Callable[[str], Any] | None = None,
               machines: Sequence[str] | None = None) -> MutantResult:
    """Run the gate against mutant `name`, one unit of the gate after another in one gate run
    (`unit_jobs`: the units citing the rule it breaks first; `run_units`), until its first
    failing case, or every unit to its end. `machines` instead runs these machines' directed
    jobs, in this order, each a gate run of its own, then the stateful and parallel cases (a
    test's way to choose the order)."""
    fault: Fault = FAULTS[name]
    cpu = time.process_time()
    adapter = (adapter_factory or (lambda n: ReferenceAdapter(faults={n})))(name)
    unconfirmed: list[str] = []
    try:
        caps = adapter.capabilities()
        plan = plan_for(caps)
        if machines is None:
            jobs = unit_jobs(fault.rule, plan, caps, budget, seed, kinds)
        else:
            jobs = [Job(m, m) for m in machines if m in plan.machines]
            jobs += [j for j in jobs_for(fault.rule, [], kinds) if not j.machine]
        def kill_of(tick: Tick) -> CaseResult | None:
            """The tick's result when it is a kill (an error only when it is the fault's)."""
            result = tick.result
            if result is None or result.verdict not in (Verdict.FAIL, Verdict.ERROR):
                return None
            if result.verdict is Verdict.ERROR:
                why = error_not_the_faults(result, adapter, step_timeout)
                if why:
                    unconfirmed.append(f"{result.id}: {why}")
                    return None  # not a kill: the run goes on to look for one
            return result

        def run_job(job: Job) -> JobOutcome:
            outcome = JobOutcome(job)

            def progress(tick: Tick) -> None:
                outcome.cases = tick.cases
                result = kill_of(tick)
                if result is not None:
                    outcome.kill = (result, time.perf_counter() - started)
                    raise StopRun

            directed = bool(job.machine)
            with tempfile.TemporaryDirectory(prefix=f"callgate-mutant-{name}-") as out:
                started = time.perf_counter()
                run_gate(adapter, RunOptions(
                    f"reference+{name}", budget, seed, Path(out), step_timeout,
                    directed=directed and "directed" in kinds,
                    stateful=not directed and "stateful" in kinds,
                    plan=machine_plan(plan, job.machine) if directed else plan,
                    multi=directed and "multi" in kinds,
                    identify=directed and "identify" in kinds,
                    reports=False, **_parallel_option(kinds, not directed)), progress)
            outcome.seconds = time.perf_counter() - started
            return outcome

        if machines is None:
            ran, kill = run_units(adapter, jobs, _unit_options(
                name, budget, seed, Path("."), step_timeout, kinds, plan), kill_of)
        else:
            ran, kill = schedule(jobs, run_job)
    finally:
        adapter.shutdown()
    seconds = sum(o.seconds for o in ran)
    count = sum(o.cases for o in ran)
    ran_json = [o.to_json() for o in ran]
    if kill is None:
        reason = survivor_reason(name, kinds)
        if unconfirmed:
            reason += ("; errors not counted as kills (not the fault's doing): "
                       + "; ".join(unconfirmed[:3]))
        return MutantResult(name, fault.rule, fault.effect, False, round(seconds, 3), count,
                            reason=reason, jobs=ran_json,
                            cpu_seconds=round(time.process_time() - cpu, 3))
    result, at = kill
    locating = time.perf_counter()
    one_minimal = result.shrink.get("one_minimal") if result.shrink else None
    race = race_program(result, plan)
    concurrent: int | None = None
    shortest: int | None
    observing: int | None
    acted: list[int] = []
    needed: int | None = None
    if race is not None:
        transition, shortest, concurrent, observing = race
        length = result.length_after or len(result.trace)
        minimal = is_minimal(length, shortest, observing, one_minimal, concurrent)
        needed = None if observing is None else concurrent + observing
        source = RACE
    else:
        located = fault_site(result, plan, name, step_timeout, adapter_factory)
        if located is not None:
            transition, shortest, observing = (located.transition, located.shortest_path,
                                               located.observing_steps)
            source, acted, needed = FAULT_SITE, list(located.acted), located.needed_steps
        else:
            transition, shortest, observing = faulty_transition(result, plan, fault.rule,
                                                                needed=bool(one_minimal))
            source = MODEL_ROWS
            needed = None if observing is None else 1 + observing
        length = len(result.trace)
        minimal = is_minimal(length, shortest, 0, one_minimal, needed)
    return MutantResult(
        name, fault.rule, fault.effect, True, round(seconds, 3), count,
        verdict=result.verdict.value, killed_by=result.id, kind=case_kind(result),
        seconds_to_kill=round(at, 3), counterexample_length=length, shortest_path=shortest,
        transition=transition, observing_steps=observing, concurrent_steps=concurrent,
        minimal=minimal, transition_source=source, fault_steps=acted, needed_steps=needed,
        locate_seconds=round(time.perf_counter() - locating, 3),
        length_before=result.length_before or length, one_minimal=one_minimal,
        shrink_reruns=int(result.shrink.get("reruns", 0)) if result.shrink else 0,
        shrink_seconds=float(result.shrink.get("seconds", 0.0)) if result.shrink else 0.0,
        cpu_seconds=round(time.process_time() - cpu, 3),
        failed_rules=list(result.failed_rules), message=result.message[:300], jobs=ran_json)


def is_minimal(length: int, shortest: int | None, observing: int | None,
               one_minimal: bool | None, transition_steps: int | None = 1) -> bool | None:
    """A counterexample is minimal when it is no longer than the shortest path to the faulty
    transition, the transition (`transition_steps`: 1, or a race's concurrent steps), and the
    steps after it that observe the fault, and when its shrinking showed that no single step
    can be removed. None when the faulty transition is unknown."""
    if shortest is None or observing is None or transition_steps is None:
        return None
    return bool(one_minimal) and length <= shortest + transition_steps + observing


def race_program(result: CaseResult, plan: sequences.Plan
                 ) -> tuple[str, int | None, int, int] | None:
    """For a kill among a parallel case's concurrent branches: the race as text, the length of a
    shortest way to the states its prefix leads to (summed over its slots; None when a slot's
    state is not one state or not in the graph), its branch steps and its suffix steps. None
    for any other kill (a sequential case, or a parallel case that failed in its prefix)."""
    from callgate.conformance.cases.parallel.case import prefix_states
    from callgate.conformance.judge.race_shrink import program_of

    if not result.history or all(t.thread == "prefix" for t in result.trace):
        return None
    read = program_of(result)
    if read is None:
        return None
    slots, (prefix, branches, suffix) = read
    states, problem, _ = prefix_states(slots, prefix, plan.capabilities.pins)
    shortest: int | None = 0
    where = []
    for slot in slots:
        graph_plan = plan.machines.get(slot.machine)
        found = states.get(slot.name, frozenset())
        if problem or graph_plan is None or len(found) != 1 or shortest is None:
            shortest = None
            continue
        (state,) = found
        where.append(f"{slot.name}: {MACHINES[slot.machine].describe(state)}")
        try:
            shortest += len(explorer.shortest_path(graph_plan.graph, graph_plan.initial, state))
        except ModelError:
            shortest = None
    race = " || ".join("; ".join(f"{x.slot}.{x.op}" for x in b) for b in branches)
    text = f"race from {', '.join(where) or 'unknown states'}: {race}"
    return text, shortest, sum(len(b) for b in branches), len(suffix)


def _parallel_option(kinds: Sequence[str], wanted: bool = True) -> dict[str, Any]:
    """`parallel=` for RunOptions when the gate has parallel cases (an option named parallel)."""
    if "parallel" in RunOptions.__dataclass_fields__:
        return {"parallel": wanted and "parallel" in kinds}
    return {}


def _work(name: str, budget_name: str, seed: int, kinds: tuple[str, ...],
          step_timeout: float) -> MutantResult:
    return run_mutant(name, BUDGETS[budget_name], seed, kinds, step_timeout)


# The budgets that run the equivalent mutants unless told otherwise (`runs_equivalent`).
EQUIVALENT_BUDGETS = frozenset({"deep"})


def runs_equivalent(budget: str, include: bool | None = None) -> bool:
    """Whether a run with `budget` runs the equivalent mutants: `include` when given
    (`--include-equivalent`, `--no-include-equivalent`), else only the deep budget does. Each
    one runs every unit (about 70 s) to show that the suite does not fail an implementation
    that behaves as the reference; a run that leaves them out reports them as not run."""
    return include if include is not None else budget in EQUIVALENT_BUDGETS


def not_run(name: str, budget: str) -> MutantResult:
    """An equivalent mutant the run left out, reported as such (never as run)."""
    if name not in EQUIVALENT:
        raise ValueError(f"{name} is not an equivalent mutant: a run never leaves it out")
    fault = FAULTS[name]
    return MutantResult(name, fault.rule, fault.effect, False, 0.0, 0, ran=False, reason=(
        f"equivalent, not run (budget {budget}; run it with --include-equivalent or "
        f"--budget deep): {EQUIVALENT[name]}"))


def auto_workers(cpus: int | None = None, load: float | None = None) -> int:
    """The mutant processes to run at once on this machine: three per CPU, less one for each
    process's worth of work already running (the one-minute load average), at least 2. A mutant
    run mostly waits (its shrinking waits for notifications, the reference's threads), so on an
    idle 2-CPU machine the standard catalogue took 168 s with 2 processes, 93 s with 4, 77 s with
    6 and 71 s with 8, every mutant killed with a minimal counterexample each time (the slowest
    mutant 24 s up to 6, 34 s at 8, where the processes start to compete for the CPUs). With
    other work on the machine the runs compete for the CPUs instead, hence less the load
    (benchmarks/README.md, "Mutant workers")."""
    count = cpus if cpus is not None else (os.cpu_count() or 1)
    if load is None:
        try:
            load = os.getloadavg()[0]
        except OSError:  # no load average on this system
            load = 0.0
    return max(2, 3 * count - round(load))


def reference_plan() -> tuple[Capabilities, sequences.Plan]:
    """The reference's capabilities and plan (`plan_for`), its adapter shut down again."""
    adapter = ReferenceAdapter()
    try:
        caps = adapter.capabilities()
        return caps, plan_for(caps)
    finally:
        adapter.shutdown()


def warm(plan: sequences.Plan, caps: Capabilities, budget: Budget, seed: int,
         kinds: Sequence[str]) -> None:
    """Build what every mutant run of this process would build on its first use, before the
    worker processes are forked from it (`jobs.can_fork`), so that each starts with them:
    each machine's walk index, parts and state check, the units and the rules their
    transitions cite, the pairs a gate run's start records. Nothing here runs a case, so the
    caches hold the same as when a worker builds them itself."""
    for machine_plan in plan.machines.values():
        walk.walk_parts(machine_plan, units.walk_part_count(len(machine_plan.transitions)))
        walk.StateCheck.of(machine_plan, caps.pins)
    options = _unit_options("", budget, seed, Path("."), 10.0, kinds, plan)
    every = units.plan_units(plan, caps, options)
    mutants_schedule.part_citing("", every, plan)
    for composition in units.compositions(options, plan):
        multi.pair_universe(plan.machines[composition.machine], composition)
        multi.not_drivable(plan.machines[composition.machine], composition)


def start_order(names: Sequence[str], sizes: Mapping[str, int] | None = None) -> list[str]:
    """The order in which a pool of workers starts the mutants `names`: the mutants whose rule
    is cited by the largest machine first (`sizes`: each machine's transitions; the reference's
    plan when not given). Their runs are the longest (a large machine's units are the slow
    ones), so started first they do not end up running alone at the end of the run while the
    other workers have nothing left (longest processing time first). Ties keep the order of
    `names`; the report lists the mutants in their own order whatever this is."""
    known = sizes if sizes is not None else reference_plan()[1].totals()

    def largest(name: str) -> int:
        rule = FAULTS[name].rule
        return max((known.get(m, 0) for m in mutants_schedule.machines_citing(rule)), default=0)

    return sorted(names, key=lambda n: -largest(n))


def run_mutants(names: Sequence[str] | None = None, budget: str = "quick", seed: int = 0,
                kinds: Sequence[str] = KINDS, workers: int | None = 2,
                step_timeout: float = 10.0,
                progress: Callable[[MutantResult, int, int], None] | None = None,
                command: str = "", include_equivalent: bool | None = None) -> MutantsReport:
    """Run the gate against every mutant (or `names`), `workers` mutants at a time (None:
    `auto_workers`). The equivalent mutants run only when `runs_equivalent` says so; otherwise
    each is reported as not run, with its reason."""
    workers = auto_workers() if workers is None else workers
    chosen = list(names) if names else sorted(FAULTS)
    unknown = sorted(set(chosen) - set(FAULTS))
    if unknown:
        raise ValueError(f"unknown mutant(s) {', '.join(unknown)}; `callgate mutants --list` "
                         f"names them all")
    if budget not in BUDGETS:
        raise ValueError(f"unknown budget {budget!r}; use one of {', '.join(sorted(BUDGETS))}")
    started = time.perf_counter()
    results: dict[str, MutantResult] = {}
    kinds_t = tuple(k for k in KINDS if k in set(kinds))
    if not runs_equivalent(budget, include_equivalent):
        for name in (n for n in chosen if n in EQUIVALENT):
            results[name] = not_run(name, budget)
            if progress:
                progress(results[name], len(results), len(chosen))
    left = [n for n in chosen if n not in results]
    forking = False
    if workers > 1:
        caps, plan = reference_plan()
        left = start_order(left, plan.totals())
        # Fork only from a process with no other thread (the reference's are shut down).
        forking = can_fork() and threading.active_count() == 1
        if forking:  # built once here, each worker starts with them
            warm(plan, caps, BUDGETS[budget], seed, kinds_t)
            units.freeze_base()  # and never walks them in a collection (units.freeze_base)
    if workers <= 1:
        for name in left:
            results[name] = run_mutant(name, BUDGETS[budget], seed, kinds_t, step_timeout)
            if progress:
                progress(results[name], len(results), len(chosen))
    else:
        context = multiprocessing.get_context("fork" if forking else "spawn")
        try:
            with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
                futures = {pool.submit(_work, name, budget, seed, kinds_t, step_timeout): name
                           for name in left}
                for future in as_completed(futures):
                    result = future.result()
                    results[result.name] = result
                    if progress:
                        progress(result, len(results), len(chosen))
        finally:
            units.thaw_base()
    return MutantsReport(budget, seed, kinds_t, tuple(results[n] for n in chosen),
                         time.perf_counter() - started, command)


# --- the catalogue's own checks ------------------------------------------------------------------


def observable_must_rules(unobservable: Mapping[str, str] = UNOBSERVABLE) -> list[str]:
    """In-scope MUST rules (including split MUST tags) that a test can observe: every one of
    them needs a mutant."""
    found = []
    for rule in catalogue().values():
        levels = {rule.level, *rule.split_levels}
        if rule.in_scope and Level.MUST in levels and rule.id not in unobservable:
            found.append(rule.id)
    return sorted(found)


def catalogue_problems(faults: Mapping[str, Fault] = FAULTS, sources: Iterable[Path] = (),
                       unobservable: Mapping[str, str] = UNOBSERVABLE) -> list[str]:
    """What is wrong with the mutant catalogue: unknown rules, observable MUST rules without a
    mutant, faults no code consults, equivalents that are not faults. Empty when all is well."""
    problems: list[str] = []
    rules = catalogue()
    for fault in faults.values():
        if fault.rule not in rules:
            problems.append(f"fault {fault.name} cites unknown rule {fault.rule}")
        elif not rules[fault.rule].in_scope:
            problems.append(f"fault {fault.name} cites out-of-scope rule {fault.rule}")
    covered = {f.rule for f in faults.values()}
    for rule_id in observable_must_rules(unobservable):
        if rule_id not in covered:
            problems.append(f"in-scope MUST rule {rule_id} has no mutant (add one to FAULTS, or "
                            f"say in UNOBSERVABLE why no test can observe it)")
    for rule_id in unobservable:
        if rule_id not in rules:
            problems.append(f"UNOBSERVABLE names unknown rule {rule_id}")
        elif rule_id in covered:
            problems.append(f"{rule_id} is listed as unobservable but mutant(s) "
                            f"{', '.join(sorted(f.name for f in faults.values() if f.rule == rule_id))} "
                            f"break it: one of the two is wrong")
    for name in (*EQUIVALENT, *CONCURRENCY, *(n for m in CLASSES.values() for n in m)):
        if name not in faults:
            problems.append(f"{name} is listed as equivalent, concurrency-only or in a class "
                            f"but is not a fault in FAULTS")
    text = "\n".join(p.read_text(encoding="utf-8") for p in sources)
    if text:
        consulted = set(re.findall(r"""\bfault\(\s*["']([a-z0-9_]+)["']""", text))
        for name in faults:
            if name not in consulted:
                problems.append(f"fault {name} is not consulted by any host.fault(...) call")
    return problems


def reference_sources() -> list[Path]:
    """The reference implementation's modules, where `host.fault(...)` calls live."""
    folder = Path(__file__).parent / "implementations" / "reference"
    return sorted(p for p in folder.glob("*.py") if p.name != "host.py")


def print_progress(result: MutantResult, done: int, total: int) -> None:
    status = (f"killed in {result.seconds_to_kill:.2f} s by {result.killed_by} "
              f"({result.counterexample_length} steps, shrunk from {result.length_before})"
              if result.killed
              else f"SURVIVED ({result.reason})" if result.ran else result.reason)
    print(f"  [{done}/{total}] {result.name}: {status}", file=sys.stderr, flush=True)

"""Shrinking what the first shrinker left alone: a failure among a parallel case's concurrent
branches (a race that reproduces only sometimes), and an `error` verdict the implementation
caused at a step."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from callgate.conformance.cases.parallel import ParallelCase, run_parallel
from callgate.conformance.judge import race_shrink
from callgate.conformance.judge.race_shrink import RaceBudget, program_of, shrink_race
from callgate.conformance.judge.runner import Case, CaseRunner
from callgate.conformance.judge.shrink import (
    Reason,
    ShrinkBudget,
    actions_of,
    shrink_case,
    shrink_failure,
)
from callgate.conformance.protocol.adapter import Capabilities, Observation, Request, SlotSpec
from callgate.conformance.results import CaseResult, Verdict
from callgate.model import codes
from callgate.model.transitions import Action
from tests.fakes import EventAdapter, EventSession

E0 = (SlotSpec("e0", "event", {}),)


def a(op: str, **args: str) -> Action:
    return Action("e0", op, tuple(args.items()))


CREATE = a("CoCreateInstance", clsid="ManualResetEvent")
SIGNAL, RESET, HANDLE = a("Signal"), a("Reset"), a("GetHandle")
LOOK = a("Wait", timeout="zero")


# --- a race that needs two steps on two threads, and shows every second time -------------------


@dataclass
class RacySession(EventSession):
    """A manual-reset event that is never signalled, but whose zero Wait answers S_OK (signalled)
    when a Reset ran on another thread of the session: a race. The adapter lets the fault show
    only every second time it could (`RacyAdapter.chance`), as a race that reproduces only
    sometimes. The zero Wait gives a Reset on another thread a moment to arrive first."""

    adapter: Any = None
    reset_threads: set[int] = field(default_factory=set)
    lock: threading.Condition = field(default_factory=threading.Condition)

    def perform(self, request: Request) -> Observation:
        if request.op == "Reset":
            with self.lock:
                self.reset_threads.add(threading.get_ident())
                self.lock.notify_all()
        if request.op == "Wait" and request.args.get("timeout") == "zero":
            me = threading.get_ident()
            with self.lock:
                self.lock.wait_for(lambda: bool(self.reset_threads - {me}), timeout=0.03)
                raced = bool(self.reset_threads - {me})
            if raced and self.adapter.chance():
                return Observation(codes.S_OK.value)  # the race: a wake-up no Signal gave
        with self.lock:
            return super().perform(request)


class RacyAdapter(EventAdapter):
    def __init__(self) -> None:
        super().__init__()
        self.eligible = 0

    def capabilities(self) -> Capabilities:
        return replace(super().capabilities(), concurrent=True)

    def chance(self) -> bool:
        with self.lock:
            self.eligible += 1
            return self.eligible % 2 == 1

    def open_session(self, slots: Sequence[SlotSpec]) -> EventSession:
        super().open_session(slots)
        return RacySession("", adapter=self)


# 8 steps; only the Reset on one branch and the zero Wait on the other make the race (with the
# CoCreateInstance that every step needs first).
PREFIX = (CREATE, HANDLE)
BRANCHES = ((HANDLE, RESET, HANDLE), (HANDLE, LOOK))
SUFFIX = (HANDLE,)


def racy_failure() -> tuple[CaseRunner, CaseResult]:
    adapter = RacyAdapter()
    runner = CaseRunner(adapter, adapter.capabilities(), step_timeout=5.0)
    case = ParallelCase("race-fake", "a fake race", E0, PREFIX, BRANCHES, (), SUFFIX)
    assert case.size() == 8
    for seed in range(20):
        result = run_parallel(runner, case, runs=4, seed=seed, require_overlap=False)
        if result.verdict is Verdict.FAIL:
            return runner, result
    runner.close()
    raise AssertionError("the fake race never failed")


def test_a_race_needing_two_steps_among_eight_shrinks_to_them() -> None:
    runner, failed = racy_failure()
    try:
        assert Reason.of(failed) == Reason("event", "Wait", Reason.of(failed).rules)  # type: ignore[union-attr]
        shrunk = shrink_case(runner, failed)
    finally:
        runner.close()
    read = program_of(shrunk)
    assert read is not None
    prefix, branches, suffix = read[1]
    assert prefix == (CREATE,) and suffix == ()
    assert set(branches) == {(RESET,), (LOOK,)}
    assert (shrunk.length_before, shrunk.length_after) == (8, 3)
    info = shrunk.shrink
    assert info["one_minimal"] is True and info["note"].startswith("probabilistic")
    assert info["attempts"] == race_shrink.ATTEMPTS
    # The fault shows every second time it can: the reproduction rate says so.
    assert 0 < info["reproduced"] < info["reproduce_runs"] == race_shrink.ATTEMPTS
    assert info["rejected"].get("unsound", 0) >= 1  # removing CoCreateInstance is no case
    assert shrunk.verdict is Verdict.FAIL and shrunk.trace[-1].op == "Wait"
    assert shrunk.history and not shrunk.trace[-1].ok


def test_a_race_that_does_not_reproduce_within_n_runs_is_not_accepted() -> None:
    runner, failed = racy_failure()
    try:
        # One run per candidate: the fault shows every second time, so some removals that keep
        # both steps are lost, and the program stays longer; but never below the two steps.
        shrunk = shrink_race(runner, failed, RaceBudget(attempts=1))
    finally:
        runner.close()
    read = program_of(shrunk)
    assert read is not None
    prefix, branches, suffix = read[1]
    steps = (*prefix, *(x for b in branches for x in b), *suffix)
    assert RESET in steps and LOOK in steps and CREATE in steps
    assert shrunk.shrink["attempts"] == 1


def test_a_race_shrinking_out_of_budget_is_not_minimal() -> None:
    runner, failed = racy_failure()
    try:
        shrunk = shrink_race(runner, failed, RaceBudget(runs=3))
    finally:
        runner.close()
    assert shrunk.shrink["one_minimal"] is False
    assert "budget ran out" in shrunk.shrink["note"]
    assert shrunk.length_after <= 8


# --- an error the implementation caused at a step ----------------------------------------------


@dataclass
class BrokenSession(EventSession):
    """Once GetHandle and then Reset were called, Signal answers with no Observation (a broken
    protocol answer); with `harness`, the adapter instead makes the harness's own code fail."""

    handle: bool = False
    armed: bool = False
    hang: float = 0.0  # instead, Signal does not answer for this many seconds

    def perform(self, request: Request) -> Observation:
        if request.op == "GetHandle":
            self.handle = True
        if request.op == "Reset" and self.handle:
            self.armed = True
        if request.op == "Signal" and self.armed:
            if self.hang:
                threading.Event().wait(self.hang)
            return None  # type: ignore[return-value]
        return super().perform(request)


class BrokenAdapter(EventAdapter):
    def __init__(self, hang: float = 0.0) -> None:
        super().__init__()
        self.hang = hang

    def open_session(self, slots: Sequence[SlotSpec]) -> EventSession:
        super().open_session(slots)
        return BrokenSession("", hang=self.hang)


NOISE = [SIGNAL, LOOK, RESET, LOOK, SIGNAL, LOOK, LOOK, RESET]
LONG = [CREATE, *NOISE, *NOISE, HANDLE, LOOK, *([LOOK] * 4), RESET, *([LOOK, HANDLE] * 7), SIGNAL]


def test_an_error_the_adapter_caused_shrinks_to_the_steps_that_cause_it() -> None:
    adapter = BrokenAdapter()
    runner = CaseRunner(adapter, adapter.capabilities(), step_timeout=5.0)
    try:
        failed = runner.run(Case("t", "directed", "", E0, tuple(LONG)))
        assert failed.verdict is Verdict.ERROR and len(failed.trace) == len(LONG) == 39
        reason = Reason.of(failed)
        assert reason is not None and (reason.op, reason.error) == ("Signal", "adapter fault")
        shrunk = shrink_failure(runner, failed, E0)
    finally:
        runner.close()
    assert shrunk is not None
    assert actions_of(shrunk.result.trace) == (CREATE, HANDLE, RESET, SIGNAL)
    assert shrunk.result.verdict is Verdict.ERROR and shrunk.one_minimal
    assert Reason.of(shrunk.result) == reason


def test_a_harness_error_or_an_error_with_no_step_to_blame_is_not_shrunk() -> None:
    adapter = BrokenAdapter()
    runner = CaseRunner(adapter, adapter.capabilities(), step_timeout=5.0)
    try:
        failed = runner.run(Case("t", "directed", "", E0, (CREATE, HANDLE, RESET, SIGNAL)))
        harness = replace(failed, message="e0.Signal(): harness error: KeyError: 'x'")
        assert Reason.of(harness) is None
        assert shrink_case(runner, harness).shrink == {}
        assert Reason.of(replace(failed, trace=failed.trace[:-1])) is None
    finally:
        runner.close()


def test_a_hang_shrinks_within_a_budget_of_candidates_that_hang() -> None:
    # Signal does not answer once GetHandle and Reset were called: each candidate that hangs
    # again costs a step timeout (0.2 s here), so the shrinking stops after `hangs` of them.
    adapter = BrokenAdapter(hang=1.0)
    runner = CaseRunner(adapter, adapter.capabilities(), step_timeout=0.2)
    try:
        failed = runner.run(Case("t", "directed", "", E0, tuple(LONG)))
        reason = Reason.of(failed)
        assert reason is not None and (reason.op, reason.error) == ("Signal", "adapter hung")
        shrunk = shrink_failure(runner, failed, E0, ShrinkBudget(hangs=30))
        assert shrunk is not None and shrunk.one_minimal
        assert actions_of(shrunk.result.trace) == (CREATE, HANDLE, RESET, SIGNAL)
        assert Reason.of(shrunk.result) == reason
        # With room for two hangs only, the shrinking stops and says why.
        short = shrink_failure(runner, failed, E0, ShrinkBudget(hangs=2))
        assert short is not None and not short.one_minimal
        assert "2 candidates hung" in short.note
    finally:
        runner.close()


# --- minimal in `callgate mutants`, for a race ---------------------------------------------------


def test_a_race_kill_is_minimal_when_its_prefix_is_a_shortest_way_and_it_is_1_minimal() -> None:
    from callgate.conformance import mutants
    from callgate.conformance.cases import sequences

    runner, failed = racy_failure()
    try:
        shrunk = shrink_case(runner, failed)
        plan = sequences.plan(runner.capabilities)
    finally:
        runner.close()
    race = mutants.race_program(shrunk, plan)
    assert race is not None
    text, shortest, concurrent, observing = race
    # CoCreateInstance is the shortest way to a created event; Reset || zero Wait; no suffix.
    assert (shortest, concurrent, observing) == (1, 2, 0)
    assert text.startswith("race from e0: ") and "e0.Reset" in text
    assert mutants.is_minimal(shrunk.length_after, shortest, observing, True, concurrent)
    # A detour in the prefix (a GetHandle the race does not need) is longer than the bound.
    detour = dict(shrunk.replay, steps=[*shrunk.replay["steps"],
                                        {"slot": "e0", "op": "GetHandle", "args": {}}])
    longer = replace(shrunk, replay=detour, length_after=4)
    _, shortest, concurrent, observing = mutants.race_program(longer, plan)  # type: ignore[misc]
    assert not mutants.is_minimal(4, shortest, observing, True, concurrent)
    # Not shown 1-minimal (a budget ran out): not minimal either, whatever its length.
    assert not mutants.is_minimal(3, 1, 0, False, 2)
    # A sequential kill, or a parallel case that failed in its prefix, is not judged as a race.
    assert mutants.race_program(replace(shrunk, history=[]), plan) is None
    prefix_only = [replace(t, thread="prefix") for t in shrunk.trace]
    assert mutants.race_program(replace(shrunk, trace=prefix_only), plan) is None


def test_a_race_shrinks_with_the_races_own_budget_unless_one_is_given(monkeypatch: Any) -> None:
    # A race's candidates run N times each, so its shrinking has its own, longer default budget
    # (race_shrink.SECONDS); a budget the caller gives is kept.
    budgets: list[RaceBudget] = []

    def capture(runner: CaseRunner, failed: CaseResult, budget: RaceBudget,
                clock: Any = None) -> CaseResult:
        budgets.append(budget)
        return failed

    monkeypatch.setattr(race_shrink, "shrink_race", capture)
    runner, failed = racy_failure()
    try:
        shrink_case(runner, failed)
        shrink_case(runner, failed, budget=ShrinkBudget(reruns=5, seconds=2.0))
    finally:
        runner.close()
    assert budgets == [RaceBudget(), RaceBudget(runs=5, seconds=2.0)]
    assert RaceBudget().seconds == race_shrink.SECONDS > ShrinkBudget().seconds

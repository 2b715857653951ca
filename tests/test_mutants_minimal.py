"""The faulty transition read from where a mutant's fault acted (`mutants_minimal.fault_site`),
and the minimal judgement built on it: a counterexample padded before the faulty step is not
minimal, `call_event_never_reset`'s six steps are."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import pytest

from callgate.conformance import mutants, mutants_minimal
from callgate.conformance.cases import sequences
from callgate.conformance.implementations.reference.adapter import ReferenceAdapter
from callgate.conformance.implementations.reference.host import Host
from callgate.conformance.judge.runner import Case, CaseRunner
from callgate.conformance.protocol.adapter import SlotSpec
from callgate.conformance.results import CaseResult, Verdict
from callgate.model.transitions import Action
from tests.fakes import EventAdapter


def a(op: str, **args: object) -> Action:
    return Action("s0", op, tuple(args.items()))  # type: ignore[arg-type]


CREATE = a("CreateCall", riid="async", aggregate=False)
BEGIN = a("Begin_")
SIGNAL = a("server_signal", out=1, then_impersonate=False)
FINISH = a("Finish_")
WAIT_ZERO = a("Wait", timeout="zero")
WAIT = a("Wait", timeout="finite")

# call_event_never_reset's counterexample from the mutant run: Finish_ leaves the event
# signalled (a step the model sees as ordinary), the next Begin_ does not reset it either, and a
# zero Wait on the pending call answers S_OK (COM-WAIT-03).
NEVER_RESET = [CREATE, BEGIN, SIGNAL, FINISH, BEGIN, WAIT_ZERO]
# The same with a whole call before it: a detour before the faulty Finish_.
PADDED = [CREATE, BEGIN, SIGNAL, WAIT, FINISH, BEGIN, SIGNAL, FINISH, BEGIN, WAIT_ZERO]


@pytest.fixture(scope="module")
def plan() -> sequences.Plan:
    return sequences.plan(ReferenceAdapter().capabilities(), only={"com_call"})


def failing(name: str, steps: Sequence[Action]) -> CaseResult:
    adapter = ReferenceAdapter(faults={name})
    runner = CaseRunner(adapter, adapter.capabilities(), step_timeout=5.0)
    try:
        result = runner.run(Case("t", "directed", "test case",
                                 (SlotSpec("s0", "com_call", {}),), tuple(steps)))
    finally:
        runner.close()
        adapter.shutdown()
    assert result.verdict is Verdict.FAIL and len(result.trace) == len(steps)
    return result


def test_a_fault_in_a_step_the_model_finds_ordinary_is_located_where_it_acted(
        plan: sequences.Plan) -> None:
    result = failing("call_event_never_reset", NEVER_RESET)
    found = mutants_minimal.fault_site(result, plan, "call_event_never_reset")
    assert found is not None
    # The fault was taken at both Begin_ and at Finish_; the first Begin_ reset an event that
    # was not signalled, and switched on only from the second Begin_ it fails nothing: Finish_.
    assert found.acted == (1, 3, 4) and found.index == 3
    assert found.transition.endswith("phase=SIGNALED cancel=False out=1 held=False orphan=0 "
                                      "waited=False / Finish_()")
    assert (found.shortest_path, found.needed_steps, found.observing_steps) == (3, 3, 2)
    assert mutants.is_minimal(len(result.trace), found.shortest_path, 0, True,
                              found.needed_steps)
    # The model's rows name the failing Wait (2 + 1 + 0): the same kill, not minimal there.
    _, shortest, observing = mutants.faulty_transition(result, plan, "COM-WAIT-03", needed=True)
    assert (shortest, observing) == (2, 0)
    assert not mutants.is_minimal(len(result.trace), shortest, observing, True)


def test_a_detour_before_the_faulty_step_is_not_minimal(plan: sequences.Plan) -> None:
    result = failing("call_event_never_reset", PADDED)
    found = mutants_minimal.fault_site(result, plan, "call_event_never_reset")
    assert found is not None
    # The fault acted at the first call's Finish_ too, but switched on only from the second
    # call's Finish_ it still fails: that Finish_ is the faulty transition, and the whole first
    # call before it is a detour (3 + 1 + 2 < 10), even if the shrinker had called it 1-minimal.
    assert found.index == 7 and 4 in found.acted
    assert (found.shortest_path, found.needed_steps, found.observing_steps) == (3, 3, 2)
    assert not mutants.is_minimal(len(result.trace), found.shortest_path, 0, True,
                                  found.needed_steps)


def test_a_fault_that_shows_at_once_is_the_failing_step(plan: sequences.Plan) -> None:
    result = failing("begin_accepts_second", [CREATE, BEGIN, BEGIN])
    found = mutants_minimal.fault_site(result, plan, "begin_accepts_second")
    assert found is not None and found.index == 2 and found.observing_steps == 0
    assert (found.shortest_path, found.needed_steps) == (2, 1)
    assert found.transition.endswith("/ Begin_()")


def test_a_consulted_fault_that_changes_nothing_is_not_counted() -> None:
    host = Host(faults={"finish_out_byte"})
    assert not host.carries("std_event_no_auto_reset") and host.carries("finish_out_byte")
    assert host.acted == 0  # carries() is bookkeeping, never counted
    assert host.fault("finish_out_byte") and host.acted == 1
    host.suspended = True  # behaves as the correct reference, and counts nothing
    assert not host.fault("finish_out_byte") and host.acted == 1
    correct = Host()
    assert not correct.fault("finish_out_byte") and correct.acted == 0


def test_the_instrument_says_when_it_cannot_tell(plan: sequences.Plan) -> None:
    result = failing("call_event_never_reset", NEVER_RESET)
    # Not the in-process reference: no count to read.
    assert mutants_minimal.fault_site(result, plan, "call_event_never_reset",
                                      make_adapter=lambda n: EventAdapter()) is None
    # A build without the fault: the run passes, so it does not fail the same way.
    assert mutants_minimal.fault_site(result, plan, "call_event_never_reset",
                                      make_adapter=lambda n: ReferenceAdapter()) is None
    # Another fault that does not act on these steps.
    assert mutants_minimal.fault_site(result, plan, "finish_idle_ok") is None
    # A passing case has no failure to locate.
    assert mutants_minimal.fault_site(replace(result, verdict=Verdict.PASS), plan,
                                      "call_event_never_reset") is None


STALE = a("server_signal", out=2, then_impersonate=False)


def test_a_fault_that_needs_an_earlier_correct_step_counts_it_only_when_it_is_needed(
        plan: sequences.Plan) -> None:
    # finish_stale_out hands out the previous call's [out]: it needs an earlier call with
    # another value, which the model's state before the faulty Finish_ does not remember.
    result = failing("finish_stale_out", [CREATE, BEGIN, SIGNAL, FINISH, BEGIN, STALE, FINISH])
    found = mutants_minimal.fault_site(result, plan, "finish_stale_out")
    assert found is not None and found.acted == (6,) and found.index == 6
    # A shortest way to the state before it (CreateCall, Begin_, Signal(2)) and the Finish_ do
    # not fail: the first call's Finish_ is needed, 4 steps from it on.
    assert (found.shortest_path, found.needed_steps, found.observing_steps) == (3, 4, 0)
    assert mutants.is_minimal(len(result.trace), found.shortest_path, 0, True,
                              found.needed_steps)
    # A call more before it: shortened to the needed call it still fails, so 10 steps are not
    # minimal (the Finish_ of the second call, with the same [out], changed nothing).
    padded = failing("finish_stale_out", [CREATE, BEGIN, SIGNAL, FINISH, BEGIN, SIGNAL, FINISH,
                                          BEGIN, STALE, FINISH])
    found = mutants_minimal.fault_site(padded, plan, "finish_stale_out")
    assert found is not None and found.acted == (9,)
    assert (found.shortest_path, found.needed_steps, found.observing_steps) == (3, 4, 0)
    assert not mutants.is_minimal(len(padded.trace), found.shortest_path, 0, True,
                                  found.needed_steps)


def test_a_fault_that_acts_where_the_object_is_made_still_counts_a_detour(
        plan_event: sequences.Plan) -> None:
    # std_event_no_auto_reset makes a manual-reset event: the fault acts at CoCreateInstance,
    # long before the Wait that shows it, so the steps after it are measured too.
    adapter = ReferenceAdapter(faults={"std_event_no_auto_reset"})
    slots = (SlotSpec("s0", "event", {}),)
    create = a("CoCreateInstance", clsid="StdEvent")
    signal, reset = a("Signal"), a("Reset")

    def run(steps: Sequence[Action]) -> CaseResult:
        runner = CaseRunner(adapter, adapter.capabilities(), step_timeout=5.0)
        try:
            return runner.run(Case("t", "directed", "test case", slots, tuple(steps)))
        finally:
            runner.close()

    try:
        short = run([create, signal, WAIT, WAIT_ZERO])
        padded = run([create, signal, reset, signal, WAIT, WAIT_ZERO])
    finally:
        adapter.shutdown()
    assert short.verdict is Verdict.FAIL and padded.verdict is Verdict.FAIL
    found = mutants_minimal.fault_site(short, plan_event, "std_event_no_auto_reset")
    assert found is not None and found.index == 0 and found.acted == (0,)
    assert (found.shortest_path, found.needed_steps) == (2, 2)  # Signal's state, then 2 steps
    assert mutants.is_minimal(4, found.shortest_path, 0, True, found.needed_steps)
    found = mutants_minimal.fault_site(padded, plan_event, "std_event_no_auto_reset")
    # The signalled event before the finite Wait is 2 steps away, not 4: not minimal.
    assert found is not None and (found.shortest_path, found.needed_steps) == (2, 2)
    assert not mutants.is_minimal(6, found.shortest_path, 0, True, found.needed_steps)


@pytest.fixture(scope="module")
def plan_event() -> sequences.Plan:
    return sequences.plan(ReferenceAdapter().capabilities(), only={"event"})

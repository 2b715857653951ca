"""Notification waits of a parallel case decided again from the answers before them
(callgate.conformance.cases.parallel.observed_waits): a wait shortened only when no state a
linearization may start it in lets a notification arrive."""

from __future__ import annotations

from collections.abc import Sequence

from callgate.conformance.cases.parallel.case import ParallelCase, interleavings, prefix_states
from callgate.conformance.cases.parallel.judging import run_parallel
from callgate.conformance.cases.parallel.observed_waits import ObservedWaits
from callgate.conformance.cases.parallel.threads import wait_times
from callgate.conformance.cases.slots import default_slot
from callgate.conformance.implementations.reference.adapter import ReferenceAdapter
from callgate.conformance.judge.perform import NOTIFY_ABSENT_MS, NOTIFY_EXPECTED_MS
from callgate.conformance.judge.runner import CaseRunner
from callgate.conformance.judge.waits import WaitLengths
from callgate.conformance.protocol.adapter import (
    Capabilities,
    Observation,
    Request,
    Session,
    SlotSpec,
)
from callgate.conformance.results import Verdict
from callgate.model.transitions import Action

SLOT = default_slot("r0")
INIT = Action("r0", "RpcAsyncInitializeHandle", (("size", "exact"),))
CALL = Action("r0", "AsyncCall", (("notify", "Event"), ("binding", "good"),
                                  ("hThread", "explicit")))
WAIT = Action("r0", "wait_notification", ())
COMPLETE = Action("r0", "server_complete", (("reply", 1), ("thread", "routine")))
# What wait_notification answers: a notification (the kind that came, as the model has it), or none.
ARRIVED, NOTHING = Observation(1, {"Event": 0}), Observation(0)

# Two waits on one branch while the server completes on another: before the run, either wait
# may be the one that receives the notification, so both are planned at the full wait.
CASE = ParallelCase("two-waits", "two waits racing a completion", (SLOT,), (INIT, CALL),
                    ((WAIT, WAIT), (COMPLETE,)), suffix=(WAIT,))


def _observed() -> ObservedWaits:
    states, problem, _ = prefix_states(CASE.slots, CASE.prefix, {})
    assert not problem
    return ObservedWaits(CASE, states, {})


def test_both_waits_are_planned_in_full_before_the_run() -> None:
    plan = interleavings(CASE.slots, CASE.prefix, CASE.branches, {}, CASE.suffix)
    waits = wait_times(CASE, plan.starts, {})
    assert waits[(0, 0)] == waits[(0, 1)] == waits[(2, 0)] == NOTIFY_EXPECTED_MS


def test_the_second_wait_after_the_first_received_the_notification_is_a_look() -> None:
    assert _observed().wait((0, 1), NOTIFY_EXPECTED_MS, {(0, 0): ARRIVED}) == NOTIFY_ABSENT_MS


def test_a_wait_that_may_still_receive_keeps_its_full_wait() -> None:
    # The broken inputs: the first wait saw nothing (the completion may come later), or nothing
    # is known yet.
    observed = _observed()
    assert observed.wait((0, 1), NOTIFY_EXPECTED_MS, {(0, 0): NOTHING}) == NOTIFY_EXPECTED_MS
    assert observed.wait((0, 1), NOTIFY_EXPECTED_MS, {}) == NOTIFY_EXPECTED_MS
    assert observed.wait((0, 0), NOTIFY_EXPECTED_MS, {}) == NOTIFY_EXPECTED_MS


def test_the_suffix_hears_every_branchs_answers() -> None:
    observed = _observed()
    done = {(0, 0): ARRIVED, (0, 1): NOTHING, (1, 0): Observation(0)}
    assert observed.wait((2, 0), NOTIFY_EXPECTED_MS, done) == NOTIFY_ABSENT_MS
    # The completion answered but neither wait saw its notification: it is still due.
    due = {(0, 0): NOTHING, (0, 1): NOTHING, (1, 0): Observation(0)}
    assert observed.wait((2, 0), NOTIFY_EXPECTED_MS, due) == NOTIFY_EXPECTED_MS


def test_an_answer_the_model_does_not_allow_leaves_the_wait_as_planned() -> None:
    # The implementation is already wrong (the checker says so): nothing is inferred from it.
    assert _observed().wait((0, 1), NOTIFY_EXPECTED_MS, {(0, 0): Observation(7)}) \
        == NOTIFY_EXPECTED_MS


def test_a_wait_is_never_made_longer_and_other_operations_are_left_alone() -> None:
    observed = _observed()
    assert observed.wait((0, 1), NOTIFY_ABSENT_MS, {(0, 0): NOTHING}) == NOTIFY_ABSENT_MS
    assert observed.wait((1, 0), 50, {(0, 0): ARRIVED}) == 50


class _Recording:
    """The reference adapter, each request's wait recorded (`sent`: op, wait_ms)."""

    def __init__(self) -> None:
        self.inner = ReferenceAdapter()
        self.sent: list[tuple[str, int]] = []

    def capabilities(self) -> Capabilities:
        return self.inner.capabilities()

    def open_session(self, slots: Sequence[SlotSpec]) -> Session:
        inner, sent = self.inner.open_session(slots), self.sent

        class Recorded:
            def perform(self, request: Request) -> Observation:
                sent.append((request.op, request.wait_ms))
                return inner.perform(request)

            def close(self) -> None:
                inner.close()

        return Recorded()

    def shutdown(self) -> None:
        self.inner.shutdown()


def test_runs_against_the_reference_send_the_decided_waits_and_pass() -> None:
    adapter = _Recording()
    try:
        runner = CaseRunner(adapter, adapter.capabilities(), step_timeout=10.0)
        result = run_parallel(runner, CASE, 4, 0.001, 0, require_overlap=False)
        assert result.verdict is Verdict.PASS, result.message
        waits = [ms for op, ms in adapter.sent if op == "wait_notification"]
        assert len(waits) == 12 and NOTIFY_ABSENT_MS in waits
        # `--full-waits` keeps the old lengths: every wait is sent in full.
        adapter.sent.clear()
        full = CaseRunner(adapter, adapter.capabilities(), step_timeout=10.0,
                          waits=WaitLengths(calibrate=False))
        assert run_parallel(full, CASE, 1, 0.001, 0, require_overlap=False).verdict \
            is Verdict.PASS
        assert {ms for op, ms in adapter.sent if op == "wait_notification"} \
            == {NOTIFY_EXPECTED_MS}
    finally:
        adapter.shutdown()

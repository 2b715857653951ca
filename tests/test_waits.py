"""Wait lengths from the model and the adapter (callgate.conformance.judge.waits): which waits
become a calibrated look, how the look is calibrated, and that a wait where something may arrive
keeps its full length."""

from __future__ import annotations

from typing import Any

import pytest

from callgate.conformance.judge.perform import NOTIFY_ABSENT_MS, NOTIFY_EXPECTED_MS
from callgate.conformance.judge.waits import (
    CALIBRATION_STEPS,
    LOOK_FLOOR_MS,
    WaitLengths,
    nothing_can_arrive,
)
from callgate.conformance.protocol.adapter import FINITE_WAIT_MS
from callgate.model.families import MACHINES
from callgate.model.transitions import Action, Tracker

RPC = MACHINES["rpc_call"]


def _tracker(machine: str = "rpc_call", **fields: object) -> Tracker:
    return Tracker(MACHINES[machine], {}, [MACHINES[machine].make(**fields)])  # type: ignore[arg-type]


def _held(cancel: str, seen: bool = False) -> Tracker:
    return _tracker(phase="SENT", notify="Event", server="held", cancel=cancel, seen=seen)


def _decide(machine: str, action: Action, tracker: Tracker) -> bool:
    return nothing_can_arrive(machine, action, tracker, tracker.expected(action.op, action.args))


POLL = Action("r0", "server_test_cancel", (("timeout", "finite"),))
NOTIFY = Action("r0", "wait_notification", ())


def test_a_poll_for_a_cancel_nobody_sent_is_a_look() -> None:
    assert _decide("rpc_call", POLL, _held("no"))


def test_a_poll_for_a_cancel_on_its_way_keeps_its_full_wait() -> None:
    # The broken input: a cancel was sent, so the poll must wait for it to arrive.
    assert not _decide("rpc_call", POLL, _held("soft"))
    assert not _decide("rpc_call", POLL, _held("abort"))


def test_a_poll_that_may_be_in_either_state_keeps_its_full_wait() -> None:
    states = [*_held("no").states, *_held("soft").states]
    tracker = Tracker(RPC, {}, states)
    assert not nothing_can_arrive("rpc_call", POLL, tracker, tracker.expected(POLL.op, POLL.args))


def test_a_look_for_a_second_notification_is_a_look_and_a_due_one_is_waited_for() -> None:
    after_one = _tracker(phase="READY", notify="Event", notes=1, server="gone", result="ok")
    assert _decide("rpc_call", NOTIFY, after_one)
    due = _tracker(phase="READY", notify="Event", notes=0, server="gone", result="ok")
    assert not _decide("rpc_call", NOTIFY, due)


def test_a_wait_whose_value_the_case_chose_is_never_shortened() -> None:
    pending = _tracker("com_call", phase="PENDING")
    wait = Action("c0", "Wait", (("timeout", "finite"),))
    allowed = pending.expected(wait.op, wait.args)
    assert not nothing_can_arrive("com_call", wait, pending, allowed)


def test_operations_that_do_not_wait_are_never_a_look() -> None:
    tracker = _held("no")
    action = Action("r0", "RpcAsyncGetCallStatus", ())
    assert not _decide("rpc_call", action, tracker)


def _calibrated(seconds: float, steps: int = CALIBRATION_STEPS) -> WaitLengths:
    waits = WaitLengths()
    for _ in range(steps):
        waits.observe("rpc_call", "RpcAsyncGetCallStatus", seconds)
    return waits


def test_the_look_follows_the_adapters_median_step_with_a_floor() -> None:
    assert _calibrated(0.0005).look_ms == 10  # 20 x 0.5 ms
    assert _calibrated(0.004).look_ms == 80  # a slow adapter gets a longer look than the old 20 ms
    assert _calibrated(0.000001).look_ms == LOOK_FLOOR_MS
    assert _calibrated(0.0005, CALIBRATION_STEPS - 1).look_ms is None


def test_waiting_steps_do_not_calibrate_and_full_waits_never_calibrate() -> None:
    waits = WaitLengths()
    for _ in range(CALIBRATION_STEPS):
        waits.observe("rpc_call", "wait_notification", 0.05)
    assert waits.look_ms is None and not waits.samples
    off = WaitLengths(calibrate=False)
    for _ in range(CALIBRATION_STEPS):
        off.observe("rpc_call", "RpcAsyncGetCallStatus", 0.0005)
    assert off.look_ms is None


@pytest.mark.parametrize("calibrated", [False, True])
def test_wait_lengths(calibrated: bool) -> None:
    waits = _calibrated(0.0005) if calibrated else WaitLengths()
    look = 10 if calibrated else None
    no_cancel, soft = _held("no"), _held("soft")
    after_one = _tracker(phase="READY", notify="Event", notes=1, server="gone", result="ok")
    due = _tracker(phase="READY", notify="Event", notes=0, server="gone", result="ok")

    def ms(action: Action, tracker: Tracker) -> int:
        return waits.wait_ms("rpc_call", action, tracker, tracker.expected(action.op, action.args))

    assert ms(POLL, no_cancel) == (look or FINITE_WAIT_MS)
    assert ms(POLL, soft) == FINITE_WAIT_MS
    assert ms(NOTIFY, after_one) == (look or NOTIFY_ABSENT_MS)
    assert ms(NOTIFY, due) == NOTIFY_EXPECTED_MS
    assert waits.shortened == (2 if calibrated else 0)
    assert waits.summary()["look_ms"] == look


def test_a_slow_adapter_waits_at_least_a_look_where_something_may_arrive() -> None:
    waits = _calibrated(0.004)  # a look of 80 ms, longer than the 50 ms poll
    soft = _held("soft")
    assert waits.wait_ms("rpc_call", POLL, soft, soft.expected(POLL.op, POLL.args)) == 80
    status = Action("r0", "RpcAsyncGetCallStatus", ())  # does not wait: its wait_ms as before
    assert waits.wait_ms("rpc_call", status, soft, soft.expected(status.op, ())) == FINITE_WAIT_MS


_PLANS: dict[str, Any] = {}


def _walk_verdicts(fault: str | None, calibrate: bool) -> tuple[list[tuple[str, str, list[str]]], int]:
    from callgate.conformance.cases import sequences
    from callgate.conformance.cases.walk import WalkBudget, walk_machine
    from callgate.conformance.implementations.reference.adapter import ReferenceAdapter
    from callgate.conformance.judge.runner import CaseRunner

    adapter = ReferenceAdapter(faults={fault} if fault else set())
    caps = adapter.capabilities()
    key = repr(caps)  # the six runs share one plan (building it is most of their time)
    if key not in _PLANS:
        _PLANS[key] = sequences.plan(caps).machines["rpc_call"]
    plan = _PLANS[key]
    # A long step timeout: on a loaded machine a 5 s one turned a slow answer into a hang.
    runner = CaseRunner(adapter, caps, step_timeout=30.0, waits=WaitLengths(calibrate=calibrate))
    try:
        verdicts = [(case.id, result.verdict.value, sorted(result.failed_rules))
                    for case, result in walk_machine(runner, plan, set(plan.transitions),
                                                     WalkBudget(case_steps=300, cases=6))]
        return verdicts, runner.waits.shortened
    finally:
        runner.close()
        adapter.shutdown()


@pytest.mark.slow
@pytest.mark.parametrize("fault", [None, "notification_twice", "server_test_cancel_consumes"])
def test_calibrated_looks_give_the_verdicts_of_the_full_waits(fault: str | None) -> None:
    """The first six cases of the RPC machine's coverage walk, with the calibrated looks and with
    every wait at its fixed length: the same cases and verdicts for the reference and for two
    seeded faults that a shortened look could hide (a second notification, a cancel a second
    poll misses). (The whole walk, 60 cases, agreed too: 13 min on a loaded machine.)"""
    looked, shortened = _walk_verdicts(fault, calibrate=True)
    full, none = _walk_verdicts(fault, calibrate=False)
    assert shortened > 0 and none == 0
    assert looked == full
    assert any(v == "fail" for _, v, _ in looked) == (fault is not None)

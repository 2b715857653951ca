"""The look is set again from every further CALIBRATION_STEPS timed steps
(callgate.conformance.judge.waits): a look calibrated while the machine was busy comes down,
and an adapter that slows down gets a longer one."""

from __future__ import annotations

from callgate.conformance.judge.waits import CALIBRATION_STEPS, WaitLengths


def _steps(waits: WaitLengths, seconds: float, count: int = CALIBRATION_STEPS) -> WaitLengths:
    for _ in range(count):
        waits.observe("rpc_call", "RpcAsyncGetCallStatus", seconds)
    return waits


def test_a_look_calibrated_on_slow_steps_comes_down_on_fast_ones() -> None:
    waits = _steps(WaitLengths(), 0.004)  # the first steps at a busy moment
    assert waits.look_ms == 80
    _steps(waits, 0.0005, CALIBRATION_STEPS - 1)
    assert waits.look_ms == 80  # not before a whole window of steps
    _steps(waits, 0.0005, 1)
    assert waits.look_ms == 10
    assert waits.summary()["calibration_steps"] == 2 * CALIBRATION_STEPS
    assert waits.summary()["looks_ms"] == [10, 80]


def test_an_adapter_that_slows_down_gets_a_longer_look() -> None:
    waits = _steps(_steps(WaitLengths(), 0.0005), 0.004)
    assert waits.look_ms == 80
    assert waits.summary()["looks_ms"] == [10, 80]


def test_waiting_steps_never_set_the_look_again() -> None:
    waits = _steps(WaitLengths(), 0.0005)
    for _ in range(3 * CALIBRATION_STEPS):
        waits.observe("rpc_call", "wait_notification", 0.5)
    assert waits.look_ms == 10 and waits.summary()["calibration_steps"] == CALIBRATION_STEPS
